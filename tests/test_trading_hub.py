"""TradingHub: the seed's in-process API, against the suite's real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis
import uvloop

from agents import QuoteManager, Spotter
from agents.base import TradingAgent
from agents.events import Event
from cache import DataCache
from core.errors import ConfigError
from core.keys import Keys
from hub import TradingHub
from tests.helpers import eventually_async

KEYS = Keys()


def spotter(cache: DataCache, symbols: list[str]) -> Spotter:
    return Spotter(config={"instruments": symbols, "throttle": "50ms"}, data_cache=cache)


@pytest.fixture
async def reader(redis_url: str) -> AsyncIterator[DataCache]:
    """A cache of the test's own (the agents' cache is bound to the hub's connection while it runs)."""
    cache = DataCache(redis_url)
    yield cache
    await cache.aclose()


async def test_agents_and_sim_source_run_in_process(redis_url: str, aredis: aioredis.Redis,
                                                    reader: DataCache) -> None:
    cache = DataCache(redis_url)
    hub = TradingHub(cache=cache, source="sim", symbols=["AAPL"], source_settings={"sim_rate": 200})
    hub.add_agent(spotter(cache, ["AAPL", "MSFT"]))
    await hub.start(block=False)
    assert hub.running
    # MSFT is not configured on the source: the agent's demand adds it
    for symbol in ("AAPL", "MSFT"):
        await eventually_async(lambda s=symbol: reader.get_float(s, "fair_price"), message=f"{symbol} fair_price")
    assert await aredis.exists(KEYS.agent("spotter"), KEYS.hub("hub")) == 2
    await hub.stop()
    assert not hub.running
    assert await aredis.exists(KEYS.agent("spotter"), KEYS.hub("hub")) == 0  # heartbeats released


async def test_start_blocks_until_request_stop(redis_url: str, reader: DataCache) -> None:
    cache = DataCache(redis_url)
    hub = TradingHub(cache=cache, source="sim", symbols=["AAPL"])
    hub.add_agent(spotter(cache, ["AAPL"]))

    async def stop_when_priced() -> None:
        await eventually_async(lambda: reader.get_float("AAPL", "fair_price"))
        hub.stop_event.set()

    stopper = asyncio.create_task(stop_when_priced())
    await asyncio.wait_for(hub.start(), 20)
    await stopper
    assert not hub.running


async def test_context_manager_and_agents_only(redis_url: str, aredis: aioredis.Redis, reader: DataCache) -> None:
    await aredis.hset(KEYS.latest_quote("AAPL"), mapping={"bid": "10.0", "bid_size": "1.0", "ask": "10.2",
                                                          "ask_size": "1.0", "ts_ns": "1"})
    cache = DataCache(redis_url)
    hub = TradingHub(cache=cache)  # no source: another process streams (here: the primed latest quote)
    hub.add_agent(spotter(cache, ["AAPL"]))
    async with hub:
        assert await eventually_async(lambda: reader.get_float("AAPL", "fair_price")) == pytest.approx(10.1)
    assert not hub.running


def test_runs_under_uvloop(redis_url: str) -> None:
    async def scenario() -> float | None:
        cache, reader = DataCache(redis_url), DataCache(redis_url)
        hub = TradingHub(cache=cache, source="sim", symbols=["SPY"])
        hub.add_agent(spotter(cache, ["SPY"]))
        try:
            async with hub:
                return await eventually_async(lambda: reader.get_float("SPY", "fair_price"))
        finally:
            await reader.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert (runner.run(scenario()) or 0) > 0


async def test_a_hub_without_agents_streams_until_stopped(redis_url: str, aredis: aioredis.Redis) -> None:
    async with TradingHub(DataCache(redis_url), source="sim", symbols=["SPY"]) as hub:
        await eventually_async(lambda: aredis.exists(KEYS.latest_quote("SPY")))
        assert hub.running


class Exploding(TradingAgent):
    async def on_start(self) -> None:
        raise RuntimeError("boom at start")

    async def run(self, data: Event) -> None:
        pass


async def test_a_failing_agent_stops_the_hub_and_is_raised(redis_url: str, aredis: aioredis.Redis) -> None:
    cache = DataCache(redis_url)
    hub = TradingHub(cache=cache, source="sim", symbols=["AAPL"])
    hub.add_agent(Exploding(config={"instruments": ["AAPL"]}, data_cache=cache))
    with pytest.raises(RuntimeError, match="boom at start"):
        await asyncio.wait_for(hub.start(), 20)
    assert await aredis.exists(KEYS.hub("hub")) == 0  # the source stopped too


def test_bad_settings_fail_before_any_io() -> None:
    cache = DataCache("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="source"):
        TradingHub(cache=cache, source="nope")
    with pytest.raises(ConfigError, match="sim_rate"):
        TradingHub(cache=cache, source="sim", source_settings={"sim_rate": -1})
    with pytest.raises(ConfigError, match="bogus"):
        TradingHub(cache=cache, source="sim", source_settings={"bogus": 1})
    with pytest.raises(ConfigError, match="broker"):
        TradingHub(cache=cache, gateway="nyse")
    with pytest.raises(ConfigError, match="need a source"):
        TradingHub(cache=cache, symbols=["AAPL"])
    hub = TradingHub(cache=cache)
    hub.add_agent(spotter(cache, ["AAPL"]))
    with pytest.raises(ConfigError, match="two agents named"):
        hub.add_agent(spotter(cache, ["MSFT"]))


def test_unreachable_redis_is_a_clear_error() -> None:
    from core.errors import RedisUnavailableError

    async def scenario() -> None:
        cache = DataCache("redis://127.0.0.1:1/0")
        hub = TradingHub(cache=cache)
        hub.process = type(hub.process)(redis_url="redis://127.0.0.1:1/0", redis_wait_ns=200_000_000)
        hub.add_agent(spotter(cache, ["AAPL"]))
        await hub.start()

    with pytest.raises(RedisUnavailableError, match="cannot reach Redis"):
        asyncio.run(scenario())


async def test_market_maker_trades_in_process_and_cancels_on_stop(redis_url: str, sync_redis: redis.Redis,
                                                                  reader: DataCache) -> None:
    cache = DataCache(redis_url)
    hub = TradingHub(cache=cache, source="sim", symbols=["AAPL"], source_settings={"sim_rate": 300},
                     gateway="sim", gateway_settings={"order_rate": 50, "order_burst": 50})
    hub.add_agent(spotter(cache, ["AAPL"]))
    hub.add_agent(QuoteManager(config={"instruments": ["AAPL"], "throttle": "50ms", "quote_size": 10,
                                       "tolerance": 0.01}, data_cache=cache))
    await hub.start(block=False)

    def open_quotes() -> list[dict[str, str]]:
        orders = [sync_redis.hgetall(KEYS.order(coid)) for coid in sync_redis.smembers(KEYS.open_orders())]
        return [o for o in orders if o.get("agent") == "quote_manager"]

    await eventually_async(lambda: asyncio.sleep(0, {o["side"] for o in open_quotes()} == {"buy", "sell"}),
                           message="a working bid and ask")
    bid = next(o for o in open_quotes() if o["side"] == "buy")
    ask = next(o for o in open_quotes() if o["side"] == "sell")
    fair = await reader.get_float("AAPL", "fair_price")
    assert fair is not None and float(bid["limit_price"]) < fair + 0.02 and float(ask["limit_price"]) > fair - 0.02
    assert float(bid["limit_price"]) < float(ask["limit_price"])
    await hub.stop()
    assert open_quotes() == []  # on_stop cancelled them and the gateway handled it before stopping
    assert sync_redis.scard(KEYS.open_orders()) == 0
