"""Data quality: latest-usable conflation, decode bounds, the name rule, unknown flags, portfolio key."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import msgpack
import pytest
import redis.asyncio as aioredis

from agents.base import TradingAgent
from agents.config import AgentSettings
from agents.events import Event
from agents.pnl import PnL
from agents.quote_checks import TWO_SIDED
from agents.runtime import AgentRuntime
from agents.spotter import Spotter, micro_price
from cache import DataCache
from core import names
from core.clock import SystemClock
from core.codec import (
    MAX_PRICE,
    MAX_SIZE,
    MAX_TS_NS,
    Quote,
    decode_latest_row,
    decode_latest_usable_row,
    decode_quotes,
    encode_cache_change,
    encode_quote_rows,
    quote_from_hash,
)
from core.connection import ProcessSettings, redis_client
from core.errors import ConfigError, DecodeError, DuplicateInstanceError
from core.heartbeat import Heartbeat
from core.intents import IntentError, decode_intent
from core.keys import LEGACY_PORTFOLIO, PORTFOLIO, Keys
from core.settings import build, gather
from hub.marketdata.demand import DEMAND_GRACE_NS, SymbolDemand
from tests.fake_trading import FakeTrading
from tests.helpers import eventually_async

KEYS = Keys()
TS = 1_381_150_000_000_000_000
# the CSV: two usable quotes, then a crossed one with the same timestamp as the second
ROW1 = [TS, TS, 182.00, 100.0, 182.10, 300.0]
ROW2 = [TS + 1_000_000, TS, 182.01, 200.0, 182.09, 100.0]
ROW3 = [TS + 1_000_000, TS, 182.20, 100.0, 182.05, 100.0]
ONE_SIDED = [TS + 2_000_000, TS, 0.0, 0.0, 182.05, 100.0]
EXPECTED_FAIR = (182.01 * 100.0 + 182.09 * 200.0) / 300.0  # the micro-price of ROW2


def message(*rows: list[float]) -> bytes:
    return encode_quote_rows("IBM", [tuple(r) for r in rows])  # type: ignore[misc]


# latest-usable conflation ------------------------------------------------------------------

def test_newest_usable_row_wins_and_newer_unusable_ones_are_counted() -> None:
    usable = TWO_SIDED.accepts_row
    assert usable is not None
    assert decode_latest_usable_row(message(ROW1, ROW2, ROW3), usable) == ("IBM", ROW2, 3, 1)
    assert decode_latest_usable_row(message(ROW1, ROW2), usable) == ("IBM", ROW2, 2, 0)
    assert decode_latest_usable_row(message(ROW3, ONE_SIDED), usable) == ("IBM", None, 2, 2)
    # integer prices in an older row are still accepted (and normalised to floats)
    ints = [TS, TS, 182, 100, 183, 100]
    assert decode_latest_usable_row(msgpack.packb([1, "IBM", [ints, ROW3]]), usable)[1] == [TS, TS, 182.0, 100.0,
                                                                                            183.0, 100.0]
    with pytest.raises(DecodeError):  # an invalid row reached while looking back makes the message bad
        decode_latest_usable_row(msgpack.packb([1, "IBM", [[TS, TS, math.nan, 1.0, 2.0, 1.0], ROW3]]), usable)


def test_locked_quote_is_usable_crossed_and_one_sided_are_not() -> None:
    usable = TWO_SIDED.accepts_row
    assert usable is not None
    assert usable([TS, TS, 10.0, 1.0, 10.0, 1.0]) and usable([TS, TS, 10.0, 0.0, 10.5, 0.0])
    assert not usable(ROW3) and not usable(ONE_SIDED) and not usable([TS, TS, 10.0, 1.0, 0.0, 0.0])


class Everything(TradingAgent):
    """A crossed-market detector: wants every quote (the default filter)."""

    async def run(self, data: Event) -> None:
        return None


Runner = Callable[[TradingAgent], Awaitable[AgentRuntime]]


@pytest.fixture
async def start_agent(redis_url: str) -> AsyncIterator[Runner]:
    client, raw = redis_client(redis_url), redis_client(redis_url, decode=False)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    subscribers: dict[str, int] = {}  # per channel, how many of the started agents should be on it

    async def start(agent: TradingAgent) -> AgentRuntime:
        runtime = AgentRuntime(agent, client=client, raw_client=raw, keys=KEYS)
        tasks.append(asyncio.create_task(runtime.run(stop)))
        for symbol in agent.instruments:
            subscribers[symbol] = subscribers.get(symbol, 0) + 1
        await eventually_async(lambda: _subscribed(client, subscribers), message="subscription")
        return runtime

    yield start
    stop.set()
    await asyncio.gather(*tasks)
    await client.aclose()
    await raw.aclose()


async def _subscribed(client: aioredis.Redis, subscribers: dict[str, int]) -> bool:
    """Every started agent is on its channels (a count, not > 0: a second agent on a symbol
    must not pass on the first one's subscription)."""
    counts = await client.pubsub_numsub(*(KEYS.quote_channel(s) for s in subscribers))
    return all(n >= subscribers[s] for s, (_, n) in zip(subscribers, counts, strict=True))


async def test_spotter_ends_on_last_usable_quote_when_unusable_ones_follow(start_agent: Runner, redis_url: str,
                                                                          aredis: aioredis.Redis) -> None:
    """Messages arrive while run() is blocked, so they conflate; the unusable ones must not hide ROW2."""
    spotter = Spotter({"instruments": ["IBM"], "throttle": "0s", "name": "dq_spotter"},
                      DataCache(namespace="tf"))
    detector = Everything({"instruments": ["IBM"], "throttle": "0s", "name": "dq_detector"}, DataCache())
    spot_rt, detect_rt = await start_agent(spotter), await start_agent(detector)
    raw = redis_client(redis_url, decode=False)
    try:
        async with raw.pipeline(transaction=False) as pipe:  # one write: the reader sees them back to back
            for data in (message(ROW1), message(ROW2, ROW3), message(ONE_SIDED)):
                pipe.publish(KEYS.quote_channel("IBM"), data)
            await pipe.execute()
    finally:
        await raw.aclose()
    await eventually_async(lambda: _received(spot_rt, 4), message="spotter read all four quotes")
    await eventually_async(lambda: _received(detect_rt, 4), message="detector read all four quotes")
    await eventually_async(lambda: aredis.hget("tf:cache:IBM", "fair_price"), message="fair price")
    assert await aredis.hget("tf:cache:IBM", "fair_price") == repr(EXPECTED_FAIR) == repr(micro_price(
        Quote("IBM", 182.01, 200.0, 182.09, 100.0, 0, 0)))
    assert spot_rt.stats.unusable == 2 and detect_rt.stats.unusable == 0  # ROW3, ONE_SIDED; per agent
    assert spot_rt.stats.errors == 0 and spot_rt.stats.bad_messages == 0


async def _received(runtime: AgentRuntime, count: int) -> bool:
    await asyncio.sleep(0)
    return runtime.stats.received >= count


# decode bounds -------------------------------------------------------------------------------

ABSURD = {
    "price 1e308": [TS, TS, 1e308, 1.0, 1e308, 1.0],
    "price above MAX_PRICE": [TS, TS, 100.0, 1.0, MAX_PRICE * 2, 1.0],
    "infinite ask": [TS, TS, 100.0, 1.0, math.inf, 1.0],
    "NaN bid": [TS, TS, math.nan, 1.0, 100.0, 1.0],
    "negative size": [TS, TS, 100.0, -5.0, 100.5, 1.0],
    "size above MAX_SIZE": [TS, TS, 100.0, MAX_SIZE * 10, 100.5, 1.0],
    "negative price": [TS, TS, -100.0, 1.0, 100.5, 1.0],
    "ts_ns 2**64-1": [2**64 - 1, TS, 100.0, 1.0, 100.5, 1.0],
    "ts_recv_ns past 2100": [TS, MAX_TS_NS + 1, 100.0, 1.0, 100.5, 1.0],
    "negative ts": [-1, TS, 100.0, 1.0, 100.5, 1.0],
    "huge int price": [TS, TS, 2**64 - 1, 1, 100, 1],
    "bool size": [TS, TS, 100.0, True, 100.5, 1.0],
}


@pytest.mark.parametrize("row", ABSURD.values(), ids=ABSURD.keys())
def test_absurd_values_are_rejected_at_decode(row: list[float]) -> None:
    raw = msgpack.packb([1, "IBM", [row]])
    with pytest.raises(DecodeError):
        decode_latest_row(raw)
    with pytest.raises(DecodeError):
        decode_quotes(raw)


def test_values_on_the_bounds_are_accepted() -> None:
    edge = [MAX_TS_NS, 0, MAX_PRICE, MAX_SIZE, MAX_PRICE, 0.0]
    assert decode_latest_row(message(edge))[1] == edge
    with pytest.raises(DecodeError):
        quote_from_hash("IBM", {"bid": "1e308", "bid_size": "1", "ask": "1e308", "ask_size": "1", "ts_ns": "1"})


async def test_absurd_quotes_are_counted_as_bad_messages_not_run_errors(start_agent: Runner,
                                                                        aredis: aioredis.Redis) -> None:
    spotter = Spotter({"instruments": ["IBM"], "throttle": "0s", "name": "dq_bounds"}, DataCache())
    runtime = await start_agent(spotter)
    for row in ABSURD.values():
        await aredis.publish(KEYS.quote_channel("IBM"), msgpack.packb([1, "IBM", [row]]))
    await aredis.publish(KEYS.quote_channel("IBM"), message(ROW2))
    await eventually_async(lambda: aredis.hget("tf:cache:IBM", "fair_price"), message="the good quote ran")
    assert runtime.stats.bad_messages == len(ABSURD) and runtime.stats.errors == 0 and runtime.stats.runs == 1


# the name rule -----------------------------------------------------------------------------

NAME_RULE, SYMBOL_RULE = re.escape(names.NAME_RULE), re.escape(names.SYMBOL_RULE)
BAD_NAMES = ["sp\r\nFLUSHALL", "a b", "*", "a:b", "naïve", "", "x" * 65, "a?", "[x]"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names_are_refused_everywhere_with_the_rule(bad: str) -> None:
    with pytest.raises(ConfigError, match=NAME_RULE):
        ProcessSettings(namespace=bad)
    if bad:  # an empty agent name means "the default"
        with pytest.raises(ConfigError, match=NAME_RULE):
            AgentSettings(instruments=("AAPL",), name=bad)
    with pytest.raises(IntentError, match=NAME_RULE):
        decode_intent({"v": "1", "kind": "cancel", "agent": bad, "target": "x-1"})


def test_good_names_and_symbols_pass() -> None:
    assert names.check_name("spotter_2.b-x") == "spotter_2.b-x"
    assert names.check_symbol(" brk.b ") == "BRK.B" and names.check_symbol("BTC/USD") == "BTC/USD"
    # '*' is no longer "every agent": an operator cancel-all goes through the operator stream.
    assert decode_intent({"v": "1", "kind": "cancel_all", "agent": "risk-desk"}).agent == "risk-desk"


@pytest.mark.parametrize("bad", ["BAD SYM", "*", "A" * 33, "AA\r\nPL", "ÄPPL", ""])
def test_bad_symbols_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(names.NameRuleError, match=SYMBOL_RULE):
        names.check_symbol(bad)
    if bad.strip():
        with pytest.raises(ConfigError, match=SYMBOL_RULE):
            build(AgentSettings, {"instruments": [bad]})


def test_no_symbol_can_produce_the_portfolio_key() -> None:
    assert KEYS.cache(PORTFOLIO) == "tf:cache:portfolio"
    assert KEYS.cache(names.check_symbol("portfolio")) == "tf:cache:PORTFOLIO" != KEYS.cache(PORTFOLIO)


async def test_pnl_moves_portfolio_totals_off_the_symbol_key(redis_url: str, aredis: aioredis.Redis) -> None:
    await aredis.hset(KEYS.cache(LEGACY_PORTFOLIO), mapping={"pnl_total": "1.0", "unmarked": "0"})
    cache = DataCache(redis_url)
    pnl = PnL({"name": "dq_pnl"}, cache)
    pnl.attach_trading(FakeTrading())  # type: ignore[arg-type]
    try:
        await pnl.on_start()
        assert not await aredis.exists(KEYS.cache(LEGACY_PORTFOLIO))
        await pnl.value_portfolio()
        assert await aredis.hget(KEYS.cache(PORTFOLIO), "pnl_total") == "0.0"
        # the cache of a real symbol PORTFOLIO is left alone
        await aredis.hset(KEYS.cache("PORTFOLIO"), mapping={"fair_price": "3.5"})
        await pnl.on_start()
        assert await aredis.hget(KEYS.cache("PORTFOLIO"), "fair_price") == "3.5"
    finally:
        await cache.aclose()


# unknown flags ---------------------------------------------------------------------------------

def test_unknown_flag_suggests_the_nearest_known_one() -> None:
    with pytest.raises(ConfigError, match="did you mean '--instruments'"):
        gather(["--instrument", "AAPL"], [ProcessSettings, AgentSettings], prog="t", description="", environ={})
    with pytest.raises(ConfigError, match="unknown setting") as info:
        gather(["--zzzzzz"], [ProcessSettings, AgentSettings], prog="t", description="", environ={})
    assert "did you mean" not in str(info.value)


# heartbeats across a stall ------------------------------------------------------------------------

async def test_heartbeat_takes_its_name_back_after_a_stall_but_never_from_another(aredis: aioredis.Redis) -> None:
    beat = Heartbeat(aredis, KEYS.agent("stalled"), SystemClock(), lambda: {"runs": 1})
    await beat.claim()
    await aredis.delete(KEYS.agent("stalled"))  # what a stall longer than the TTL looks like
    await beat.beat()
    assert await aredis.hget(KEYS.agent("stalled"), "instance") == beat.instance
    assert await aredis.pttl(KEYS.agent("stalled")) > 0
    await aredis.hset(KEYS.agent("stalled"), "instance", "someone-else")  # claimed during the stall
    with pytest.raises(DuplicateInstanceError, match="taken"):
        await beat.beat()
    assert await aredis.hget(KEYS.agent("stalled"), "instance") == "someone-else"


def test_keys_refuse_a_namespace_outside_the_rule() -> None:
    with pytest.raises(names.NameRuleError, match=NAME_RULE):
        Keys("tf*")
    with pytest.raises(names.NameRuleError):
        DataCache(namespace="a\r\nb")


async def test_wanted_members_lapse_after_the_grace_unless_a_live_heartbeat_wants_them(
        redis_url: str, aredis: aioredis.Redis) -> None:
    raw = redis_client(redis_url, decode=False)
    demand = SymbolDemand(raw, KEYS, ["CONF"])
    await aredis.sadd(KEYS.wanted_symbols(), "LIVE", "GONE", "CONF", "BAD SYM", "HELD")
    await aredis.hset(KEYS.agent("someone"), mapping={"wants": "LIVE,OTHER"})
    await aredis.hset(KEYS.gateway("gateway"), mapping={"wants": "HELD"})  # an order still works on HELD
    try:
        assert await demand.refresh() == ("GONE", "HELD", "LIVE") and demand.bad_members == 1
        assert await demand.expire(now_ns=0) == []  # unbacked from now on
        assert await demand.expire(now_ns=DEMAND_GRACE_NS - 1) == []
        assert await demand.expire(now_ns=DEMAND_GRACE_NS) == ["GONE", "b'BAD SYM'"]
        assert await aredis.smembers(KEYS.wanted_symbols()) == {"LIVE", "CONF", "HELD"}
        assert demand.lapsed == 2 and demand.symbols == ("CONF", "HELD", "LIVE")  # GONE no longer streamed
        assert demand.dropped == ("GONE",)  # what the source is told to drop; CONF is --symbols
    finally:
        await raw.aclose()


class OnFairPrice(TradingAgent):
    def __init__(self) -> None:
        super().__init__({"instruments": ["IBM"], "on_quotes": False, "on_cache": ["fair_price"],
                          "throttle": "0s", "name": "dq_on_cache"}, DataCache())
        self.seen: list[Event] = []

    async def run(self, data: Event) -> None:
        self.seen.append(data)


async def test_cache_notice_for_another_symbol_is_a_bad_message(redis_url: str, aredis: aioredis.Redis) -> None:
    agent = OnFairPrice()
    client, raw = redis_client(redis_url), redis_client(redis_url, decode=False)
    runtime = AgentRuntime(agent, client=client, raw_client=raw, keys=KEYS)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await eventually_async(lambda: _numsub(aredis, KEYS.cache_changed_channel("IBM")), message="subscribed")
        channel = KEYS.cache_changed_channel("IBM")
        await aredis.publish(channel, encode_cache_change("MSFT", ["fair_price"], 1))
        await aredis.publish(channel, encode_cache_change("IBM", ["fair_price"], 2))
        await eventually_async(lambda: asyncio.sleep(0, agent.seen), message="the genuine notice ran")
        assert [e.symbol for e in agent.seen] == ["IBM"] and runtime.stats.bad_messages == 1
    finally:
        stop.set()
        await task
        await client.aclose()
        await raw.aclose()


async def _numsub(client: aioredis.Redis, channel: str) -> bool:
    return bool((await client.pubsub_numsub(channel))[0][1])
