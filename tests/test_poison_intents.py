"""Poison intents against a real gateway process: every entry ends as an order or a rejection, the
gateway stays up (same pid), nothing is left pending to crash a restart, and later good intents
still become orders."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.intents import CLIENT_ORDER_ID, IntentError, decode_entry, decode_intent
from core.ticks import MAX_PRICE, MAX_QTY, decimals, on_tick_grid
from tests.execution_helpers import KEYS, sim_stack
from tests.helpers import ProcessGroup, eventually, eventually_async
from tests.test_gateway import set_quote, start_gateway

STREAM = "tf:orders:intents"
FIELDS = ("v", "kind", "agent", "client_order_id", "target", "symbol", "side", "type", "qty", "limit_price",
          "tif", "ts_ns")
NUMBERS = ("1e30", "1e-30", "-0", "0", "-1", "NaN", "sNaN", "-nan", "inf", "-Infinity", "1e999999", "9.9E+999999",
           "1" * 300, "9" * 39, "0x10", " 1", "1_000", "1,5", "", "1e-7", "0.0000000001", "100.001", "0.12345",
           "1000000.01", "1000000001", "١٢")
TEXTS = ("", " ", "x" * 10_000, "A\r\nFLUSHALL", "*", "é", "²", "-1", "operator", "\x00", "submit", "cancel",
         "replace", "cancel_all", "buy", "sell", "market", "limit", "gtc", "ioc", "1")


def good(coid: str, **changes: str) -> dict[str, str]:
    fields = {"v": "1", "kind": "submit", "agent": "fuzz", "client_order_id": coid, "symbol": "AAPL",
              "side": "buy", "type": "limit", "qty": "1", "limit_price": "99", "tif": "day", "ts_ns": "1"}
    fields.update(changes)
    return fields


def extremes() -> list[Mapping[bytes | str, bytes | str]]:
    """One good submit altered one field at a time, missing each field, wrong kinds, non-UTF-8 and size abuse."""
    entries: list[Mapping[bytes | str, bytes | str]] = []
    for name in ("qty", "limit_price"):
        entries += [good(f"num-{name}-{i}", **{name: value}) for i, value in enumerate(NUMBERS)]
    for name in FIELDS:
        if name != "client_order_id":
            entries += [good(f"txt-{name}-{i}", **{name: value}) for i, value in enumerate(TEXTS)]
        entries.append({k: v for k, v in good(f"missing-{name}").items() if k != name})
    entries += [
        good("kind-cancel", kind="cancel"), good("kind-cancel-all", kind="cancel_all", symbol="A B"),
        good("kind-replace", kind="replace", target="nobody-1", qty="", limit_price=""),
        good("market-with-price", type="market"), good("coid-long", client_order_id="c" * 129),
        {**good("utf8-value"), "symbol": b"\xff\xfe"}, {**good("utf8-key"), b"\xc3\x28": "1"},
        {**good("many-fields"), **{f"extra{i}": "1" for i in range(40)}},
        {"garbage": "yes"}, {"v": "2"},
        good("damaged-position", symbol="DAMAGED"),  # its position hash holds NaN
    ]
    return entries


def group_done(client: redis.Redis) -> bool:
    groups = {g["name"]: g for g in client.xinfo_groups(STREAM)}
    group = groups.get("gateway")
    return bool(group) and group["pending"] == 0 and group["lag"] == 0


def heartbeat(client: redis.Redis, field: str) -> int:
    return int(client.hget("tf:gateway:gateway", field) or 0)


def rejected_events(client: redis.Redis) -> list[dict[str, str]]:
    return [f for _, f in client.xrange("tf:orders:events") if f["event"] == "intent_rejected"]


def test_a_table_of_extremes_ends_in_orders_or_rejections_and_the_gateway_stays_up(
        processes: ProcessGroup, sync_redis: redis.Redis, redis_url: str) -> None:
    set_quote(sync_redis)
    set_quote(sync_redis, "DAMAGED")
    sync_redis.hset("tf:position:DAMAGED", mapping={"symbol": "DAMAGED", "qty": "NaN", "avg_price": "1"})
    gateway = start_gateway(processes)
    eventually(lambda: sync_redis.exists("tf:gateway:gateway"), message="the gateway heartbeat")
    pid = int(sync_redis.hget("tf:gateway:gateway", "pid") or 0)
    entries = extremes()
    raw = redis.Redis.from_url(redis_url)
    for entry in entries:
        raw.xadd(STREAM, entry)  # type: ignore[arg-type]
    raw.xadd(STREAM, good("after-poison"))
    eventually(lambda: group_done(sync_redis), timeout_s=30, message="every entry acknowledged")
    assert eventually(lambda: sync_redis.hget("tf:order:after-poison", "status")) == "new"
    assert gateway.poll() is None and int(sync_redis.hget("tf:gateway:gateway", "pid") or 0) == pid

    # a well-formed cancel_all is an action, not an order: it is the one entry that may leave neither
    named = [e.get("client_order_id") for e in entries if e.get("kind") != "cancel_all" or e.get("symbol") != "AAPL"]
    refused = {e["client_order_id"] for e in rejected_events(sync_redis)}
    unnamed = [e for e in rejected_events(sync_redis) if not e["client_order_id"]]
    for coid in named:
        if isinstance(coid, str) and CLIENT_ORDER_ID.match(coid):
            order = sync_redis.hgetall(f"tf:order:{coid}")
            assert order or coid in refused, coid
            if order.get("status") == "rejected":
                assert order["reject_reason"], coid
            elif order:  # accepted (and maybe cancelled by the table's own cancel_all): within every bound
                qty, price = Decimal(order["qty"]), Decimal(order["limit_price"] or 1)
                assert 0 < qty <= MAX_QTY and decimals(qty) <= 9 and 0 < price <= MAX_PRICE, coid
                assert on_tick_grid(price) and order["symbol"] == "AAPL", coid
    assert len(unnamed) == sum(1 for e in entries if not CLIENT_ORDER_ID.match(str(e.get("client_order_id", ""))))
    for name, value, words in (("limit_price", "1e30", "not a plain decimal"), ("qty", "", "missing qty"),
                               ("qty", "9" * 39, "above the largest"),
                               ("limit_price", "1000000.01", "above the largest"),
                               ("qty", "0.0000000001", "more than 9 decimals"), ("qty", "-0", "not a plain decimal"),
                               ("qty", "0", "must be > 0"), ("limit_price", "100.001", "off the tick grid"),
                               ("limit_price", "0.12345", "4 decimals below $1"), ("qty", "1" * 300, "longer than")):
        rejected = sync_redis.hgetall(f"tf:order:num-{name}-{NUMBERS.index(value)}")
        assert rejected["status"] == "rejected" and words in rejected["reject_reason"], (name, value, rejected)
    damaged = sync_redis.hgetall("tf:order:damaged-position")
    assert damaged["status"] == "rejected" and "tf:position:DAMAGED is damaged" in damaged["reject_reason"]
    eventually(lambda: heartbeat(sync_redis, "intents") == len(entries) + 1, timeout_s=5,
               message="the heartbeat to count every entry")
    assert heartbeat(sync_redis, "poison") == 0  # every hostile entry was caught by a named rule

    sync_redis.delete("tf:position:DAMAGED")  # repaired (flat): taken up without a restart
    raw.xadd(STREAM, good("after-repair", symbol="DAMAGED"))
    assert eventually(lambda: sync_redis.hget("tf:order:after-repair", "status")) == "new"

    # the kill switch still has a running gateway to act on
    sync_redis.set("tf:risk:halt", "1")
    eventually(lambda: sync_redis.scard("tf:orders:open") == 0, timeout_s=2, message="the book emptied")
    assert sync_redis.hget("tf:order:after-poison", "status") == "canceled"
    sync_redis.delete("tf:risk:halt")

    # a restart finds nothing pending: no crash loop, and new intents still become orders
    gateway.terminate()
    gateway.wait(10)
    start_gateway(processes)
    raw.xadd(STREAM, good("after-restart"))
    assert eventually(lambda: sync_redis.hget("tf:order:after-restart", "status"), timeout_s=15) == "new"
    assert heartbeat(sync_redis, "replayed") == 0
    raw.close()


def test_hypothesis_intents_never_stop_the_gateway(processes: ProcessGroup, sync_redis: redis.Redis,
                                                   redis_url: str) -> None:
    set_quote(sync_redis)
    gateway = start_gateway(processes)
    eventually(lambda: sync_redis.exists("tf:gateway:gateway"), message="the gateway heartbeat")
    raw = redis.Redis.from_url(redis_url)
    sent = [0]

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(entry_strategy())
    def one(entry: dict[bytes, bytes]) -> None:
        raw.xadd(STREAM, entry or {b"empty": b""})  # type: ignore[arg-type]
        sent[0] += 1
        eventually(lambda: group_done(sync_redis), timeout_s=10, interval_s=0.005, message="the entry handled")
        assert gateway.poll() is None

    one()
    raw.xadd(STREAM, good("after-fuzz"))
    assert eventually(lambda: sync_redis.hget("tf:order:after-fuzz", "status")) == "new"
    assert eventually(lambda: heartbeat(sync_redis, "intents") >= sent[0] + 1, timeout_s=5)
    raw.close()


def entry_strategy() -> st.SearchStrategy[dict[bytes, bytes]]:
    names = st.one_of(st.sampled_from(FIELDS).map(str.encode), st.binary(max_size=8))
    values = st.one_of(st.sampled_from(NUMBERS + TEXTS).map(str.encode), st.binary(max_size=40),
                       st.text(max_size=40).map(lambda t: t.encode(errors="surrogatepass")))
    base = st.fixed_dictionaries({k.encode(): st.just(v.encode()) for k, v in good("fuzz-1").items()})
    return st.builds(lambda b, extra, coid: {**b, **extra, b"client_order_id": coid}, base,
                     st.dictionaries(names, values, max_size=6),
                     st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20).map(str.encode))


@settings(max_examples=1000, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.sampled_from(NUMBERS + TEXTS), st.text(max_size=50)),
                       max_size=12))
def test_decode_intent_raises_only_intent_error_and_bounds_every_number(fields: dict[str, str]) -> None:
    try:
        intent = decode_intent({"v": "1", **fields})
    except IntentError:
        return
    for qty in (intent.qty,):
        assert qty is None or (0 < qty <= MAX_QTY and decimals(qty) <= 9)
    assert intent.limit_price is None or (0 < intent.limit_price <= MAX_PRICE and on_tick_grid(intent.limit_price))


@given(st.dictionaries(st.binary(max_size=300), st.binary(max_size=300), max_size=40))
def test_decode_entry_raises_only_intent_error(raw: dict[bytes, bytes]) -> None:
    with contextlib.suppress(IntentError):
        decode_entry(raw)


async def test_a_failure_after_the_order_was_recorded_leaves_that_orders_state(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)

        async def broken_arrival(order: object) -> None:
            raise RuntimeError("matching failed")

        stack.broker._on_arrival = broken_arrival  # type: ignore[method-assign, assignment]
        trading = stack.trading()
        coid = await trading.submit_limit("AAPL", "buy", 1, "99")
        assert (await trading.wait_for(coid, {"new"})).status == "new"
        await eventually_async(lambda: _true(stack.gateway.stats.poison == 1), timeout_s=5)
        assert trading.rejection(coid) is None
        events = [f["event"] for _, f in await stack.client.xrange("tf:orders:events")]
        assert "intent_rejected" not in events
        del stack.broker._on_arrival
        later = await trading.submit_limit("AAPL", "buy", 1, "99")
        assert (await trading.wait_for(later, {"new"})).status == "new"


async def _true(value: bool) -> bool:
    return value


async def _is(value: bool) -> bool:
    return value


async def test_a_quote_the_sim_cannot_price_is_skipped_and_counted(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        trading = stack.trading()
        coid = await trading.submit_limit("AAPL", "buy", 1, "99")
        await trading.wait_for(coid, {"new"})
        # Out of the codec's price bounds: refused at decode, counted, and the book keeps matching.
        stack.publisher.add_quote("AAPL", 1, 1e30, 100, 1e30, 100)
        await stack.publisher.flush()
        await eventually_async(lambda: _is(stack.broker.bad_messages == 1), timeout_s=5,
                               message="the sim broker to count the bad quote")
        await stack.quote("AAPL", 98.5, 100, 98.9, 100)  # the broker still matches: this one crosses the bid
        assert (await trading.wait_for(coid, {"filled"})).filled_avg_price == Decimal("99")


async def test_any_exception_while_handling_an_intent_rejects_it_and_the_stream_goes_on(redis_url: str) -> None:
    """The original bug's class: a check raising (decimal.InvalidOperation) on one intent's values."""
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        checks = stack.gateway._risk
        real_check = checks.check

        def explosive(order: Any, ctx: Any) -> str | None:
            if order.qty == 7:
                raise InvalidOperation([InvalidOperation])
            return real_check(order, ctx)

        checks.check = explosive  # type: ignore[method-assign]
        trading = stack.trading()
        poison = await trading.submit_limit("AAPL", "buy", 7, "99")
        later = await trading.submit_limit("AAPL", "buy", 1, "99")
        order = await trading.wait_for(poison)
        assert order.status == "rejected" and "internal error" in order.reject_reason
        assert "InvalidOperation" in order.reject_reason
        assert (await trading.wait_for(later, {"new"})).status == "new"
        assert stack.gateway.stats.poison == 1
        pending = await stack.client.xpending(KEYS.order_intents(), "gateway")
        assert pending["pending"] == 0
