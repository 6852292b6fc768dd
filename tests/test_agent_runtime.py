"""AgentRuntime in-process against a real Redis: bad input, errors, heartbeats, slow runs, cache triggers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from agents.base import TradingAgent
from agents.events import CacheUpdate, Event
from agents.runtime import AgentRuntime
from cache import DataCache
from core.codec import Quote, encode_quotes
from core.connection import redis_client
from core.errors import DuplicateInstanceError, RedisUnavailableError
from core.keys import Keys
from tests.helpers import eventually_async

KEYS = Keys()


def quote(bid: float, symbol: str = "AAPL", ts_ns: int = 1) -> Quote:
    return Quote(symbol, bid, 100.0, bid + 0.02, 100.0, ts_ns, ts_ns)


class Collector(TradingAgent):
    """Records what it was run on; can block until a gate opens, or fail on demand."""

    def __init__(self, config: dict[str, Any], gate: asyncio.Event | None = None,
                 fail_on: float | None = None) -> None:
        super().__init__(config, DataCache())
        self.seen: list[Event] = []
        self.gate = gate
        self.fail_on = fail_on

    async def run(self, data: Event) -> None:
        self.seen.append(data)
        if isinstance(data, Quote) and data.bid == self.fail_on:
            raise ValueError("boom")
        if self.gate is not None:
            await self.gate.wait()


Runner = Callable[..., Awaitable[AgentRuntime]]


@pytest.fixture
async def start_agent(redis_url: str) -> AsyncIterator[Runner]:
    client, raw = redis_client(redis_url), redis_client(redis_url, decode=False)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(agent: TradingAgent, runtime_class: type[AgentRuntime] = AgentRuntime) -> AgentRuntime:
        runtime = runtime_class(agent, client=client, raw_client=raw, keys=KEYS)
        tasks.append(asyncio.create_task(runtime.run(stop)))
        await eventually_async(lambda: client.exists(KEYS.agent(agent.name)), message="heartbeat")
        await eventually_async(lambda: _subscribed(client, agent), message="subscription")
        return runtime

    yield start
    stop.set()
    await asyncio.gather(*tasks)
    await client.aclose()
    await raw.aclose()


async def _subscribed(client: aioredis.Redis, agent: TradingAgent) -> bool:
    channel = KEYS.quote_channel if agent.settings.on_quotes else KEYS.cache_changed_channel
    counts = await client.pubsub_numsub(*(channel(s) for s in agent.instruments))
    return all(n > 0 for _, n in counts)


async def test_garbage_and_invalid_quotes_are_counted_and_skipped(start_agent: Runner, aredis: aioredis.Redis) -> None:
    agent = Collector({"instruments": ["AAPL"], "throttle": "0s"})
    runtime = await start_agent(agent)
    await aredis.publish(KEYS.quote_channel("AAPL"), b"garbage")
    nan_bid = msgpack.packb([1, "AAPL", [[1, 1, math.nan, 1.0, 1.0, 1.0]]])
    await aredis.publish(KEYS.quote_channel("AAPL"), nan_bid)
    await aredis.publish(KEYS.quote_channel("AAPL"), encode_quotes([quote(10.0, symbol="MSFT")]))
    await aredis.publish(KEYS.quote_channel("AAPL"), encode_quotes([quote(10.0)]))
    await eventually_async(lambda: _true(agent.seen), message="valid quote run")
    assert runtime.stats.bad_messages == 3
    assert agent.seen == [quote(10.0)]
    heartbeat = await eventually_async(lambda: _hb_with(aredis, agent.name, "bad_messages", "3"))
    assert heartbeat["runs"] == "1"


async def _true(value: object) -> bool:
    return bool(value)


async def _hb_with(client: aioredis.Redis, name: str, field: str, value: str) -> dict[str, str] | None:
    fields: dict[str, str] = await client.hgetall(KEYS.agent(name))
    return fields if fields.get(field) == value else None


async def test_exception_in_run_is_counted_not_fatal(start_agent: Runner, aredis: aioredis.Redis) -> None:
    agent = Collector({"instruments": ["AAPL"], "throttle": "0s"}, fail_on=1.0)
    runtime = await start_agent(agent)
    await aredis.publish(KEYS.quote_channel("AAPL"), encode_quotes([quote(1.0)]))
    await eventually_async(lambda: _true(runtime.stats.errors), message="error counted")
    await aredis.publish(KEYS.quote_channel("AAPL"), encode_quotes([quote(2.0)]))
    await eventually_async(lambda: _true(runtime.stats.runs), message="next run")
    assert [q.bid for q in agent.seen if isinstance(q, Quote)] == [1.0, 2.0]


async def test_slow_run_never_stops_the_reader(start_agent: Runner, aredis: aioredis.Redis) -> None:
    gate = asyncio.Event()
    agent = Collector({"instruments": ["AAPL"], "throttle": "0s"}, gate=gate)
    runtime = await start_agent(agent)
    for i in range(2_000):
        await aredis.publish(KEYS.quote_channel("AAPL"), encode_quotes([quote(1.0 + i)]))
    # the reader takes all of them while run() is blocked on the first
    await eventually_async(lambda: _equals(runtime.stats.received, 2_000), message="all received")
    await eventually_async(lambda: _equals(len(agent.seen), 1), message="the first run, still blocked")
    gate.set()
    await eventually_async(lambda: _equals(agent.seen[-1].bid, 2_000.0), message="trailing run on the newest quote")
    assert len(agent.seen) <= 2
    assert runtime.stats.conflated >= 1_998


async def _equals(a: object, b: object) -> bool:
    return a == b


async def _equals_async(a: Awaitable[object], b: object) -> bool:
    return await a == b


async def test_duplicate_name_is_refused(start_agent: Runner, redis_url: str) -> None:
    await start_agent(Collector({"instruments": ["AAPL"], "name": "twin"}))
    client, raw = redis_client(redis_url), redis_client(redis_url, decode=False)
    second = AgentRuntime(Collector({"instruments": ["AAPL"], "name": "twin"}), client=client, raw_client=raw,
                          keys=KEYS)
    with pytest.raises(DuplicateInstanceError, match="twin"):
        await second.run(asyncio.Event())
    await client.aclose()
    await raw.aclose()


async def test_heartbeat_is_readable_expiring_and_released(redis_url: str, aredis: aioredis.Redis) -> None:
    client, raw = redis_client(redis_url), redis_client(redis_url, decode=False)
    agent = Collector({"instruments": ["AAPL", "MSFT"], "throttle": "250ms"})
    runtime = AgentRuntime(agent, client=client, raw_client=raw, keys=KEYS)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        # the first state a reader can see is the whole heartbeat, with its TTL
        fields = await eventually_async(lambda: aredis.hgetall(KEYS.agent("collector")), interval_s=0.001,
                                        message="heartbeat")
        assert fields["instruments"] == "AAPL,MSFT" and fields["throttle"] == "250ms"
        assert {"pid", "host", "started_ns", "runs", "errors", "last_run_ns", "conflated", "lag_ms"} <= set(fields)
        assert 0 < await aredis.pttl(KEYS.agent("collector")) <= 5_000
        # demand is announced just after the heartbeat is claimed
        await eventually_async(lambda: _equals_async(aredis.smembers(KEYS.wanted_symbols()), {"AAPL", "MSFT"}),
                               message="demand announced")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
        await raw.aclose()
    assert not await aredis.exists(KEYS.agent("collector"))


async def test_agent_driven_by_cache_changes(start_agent: Runner, redis_url: str) -> None:
    agent = Collector({"instruments": ["AAPL"], "on_quotes": False, "on_cache": ["volatility"], "throttle": "0s"})
    await start_agent(agent)
    writer = DataCache(redis_url)
    await writer.set("AAPL", "fair_price", 1.0)  # not a trigger
    await writer.set("AAPL", "volatility", 0.2)
    await eventually_async(lambda: _true(agent.seen), message="cache-triggered run")
    event = agent.seen[0]
    assert isinstance(event, CacheUpdate) and event.fields == ("volatility",) and event.symbol == "AAPL"
    assert len(agent.seen) == 1
    await writer.aclose()


async def test_first_run_uses_latest_quote_already_in_redis(start_agent: Runner, aredis: aioredis.Redis) -> None:
    await aredis.hset(KEYS.latest_quote("AAPL"), mapping={"bid": "5.0", "bid_size": "1", "ask": "5.02",
                                                          "ask_size": "1", "ts_ns": "7", "ts_recv_ns": "8"})
    agent = Collector({"instruments": ["AAPL"]})
    await start_agent(agent)
    await eventually_async(lambda: _true(agent.seen), message="primed run")
    assert agent.seen[0] == Quote("AAPL", 5.0, 1.0, 5.02, 1.0, 7, 8)


class _RefusedSubscription:
    """A subscriber connection to a master that is gone (as while a failover is under way)."""

    async def subscribe(self, *channels: bytes) -> None:
        raise RedisUnavailableError("cannot connect to Redis at 127.0.0.1:1: [Errno 111] Connection refused")

    async def aclose(self) -> None:
        return None


async def test_a_subscription_refused_while_starting_is_retried(start_agent: Runner, aredis: aioredis.Redis) -> None:
    refusals = 2

    class StartsDuringFailover(AgentRuntime):
        def _subscription(self) -> Any:
            nonlocal refusals
            if refusals:
                refusals -= 1
                return _RefusedSubscription()
            return super()._subscription()

    agent = Collector({"instruments": ["AAPL"]})
    await start_agent(agent, StartsDuringFailover)  # waits for the subscription, after two refusals
    await aredis.publish(KEYS.quote_channel("AAPL"), encode_quotes([quote(3.0)]))
    await eventually_async(lambda: _true(agent.seen), message="a run on the published quote")
    assert refusals == 0
