"""Order rules in the gateway: reused ids, ownership and the operator, the persistent rate bucket,
Alpaca's fractional-share and price-grid rules."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from agents.trading import TradingClient
from core.errors import OrderRejected
from core.intents import encode_intent
from core.orders import EXTERNAL_AGENT, Intent, Order
from core.ratelimit import RedisTokenBucket
from hub.execution.brokers.base import BrokerUnavailable
from hub.execution.brokers.sim import SimBrokerSettings
from tests.execution_helpers import KEYS, SimStack, sim_stack
from tests.helpers import ProcessGroup
from tests.test_gateway import set_quote, submit_fields, wait_all_handled

# reused client_order_id ------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [{"side": "sell"}, {"qty": 5}, {"limit_price": "98"}, {"symbol": "MSFT"},
                                    {"market": True}])
async def test_a_reused_id_with_other_parameters_is_refused_and_an_exact_resend_is_not(
        redis_url: str, change: dict[str, Any]) -> None:
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        await stack.quote("MSFT", 99.99, 100, 100.01, 100)
        first, second = stack.trading(), stack.trading()
        await first.submit_limit("AAPL", "buy", 10, "99", client_order_id="dup-1")
        assert (await first.wait_for("dup-1", {"new"})).qty == 10
        if change.get("market"):
            await second.submit_market("AAPL", "buy", 10, client_order_id="dup-1")
        else:
            args = {"symbol": "AAPL", "side": "buy", "qty": 10, "limit_price": "99", **change}
            await second.submit_limit(args["symbol"], args["side"], args["qty"], args["limit_price"],
                                      client_order_id="dup-1")
        with pytest.raises(OrderRejected, match="already used for a different order"):
            await second.wait_for("dup-1", {"new", "rejected"})
        assert "already used" in (second.rejection("dup-1") or "")

        await first.submit_limit("AAPL", "buy", 10, "99", client_order_id="dup-1")  # the same again: a resend
        order = await first.wait_for("dup-1", {"new"})
        assert (order.qty, order.side, order.symbol) == (10, "buy", "AAPL")
        assert stack.gateway.stats.reused_ids == 1
        await _eventually_async(lambda: stack.gateway.stats.duplicates == 1)
        news = [f for _, f in await stack.client.xrange(KEYS.order_events()) if f.get("event") == "new"]
        assert [f["client_order_id"] for f in news] == ["dup-1"]


async def test_a_replayed_intent_claims_its_restored_order_but_not_one_placed_by_hand(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        restored = {"agent": EXTERNAL_AGENT, "symbol": "AAPL", "side": "buy", "order_type": "limit",
                    "qty": Decimal(10), "limit_price": Decimal("99"), "status": "new"}
        # what a reconcile writes
        await stack.store.record(Order(client_order_id="tester-0a1b2c3d-1", **restored), "new")
        await stack.store.record(Order(client_order_id="by-hand-1", **restored), "new")
        trading = stack.trading()
        await trading.submit_limit("AAPL", "buy", 10, "99", client_order_id="tester-0a1b2c3d-1")
        await _eventually_async(lambda: stack.gateway.stats.adopted == 1)
        order = await trading.wait_for("tester-0a1b2c3d-1", {"new"})
        assert order.agent == "tester" and trading.rejection("tester-0a1b2c3d-1") is None
        await trading.submit_limit("AAPL", "buy", 10, "99", client_order_id="by-hand-1")
        with pytest.raises(OrderRejected, match="already used for a different order"):
            await trading.wait_for("by-hand-1", {"new", "rejected"})
        assert (await stack.store.get("by-hand-1")).agent == EXTERNAL_AGENT  # type: ignore[union-attr]
        events = [f["event"] for _, f in await stack.client.xrange(KEYS.order_events())]
        assert events.count("adopted") == 1 and events.count("new") == 2  # no order was made


# ownership and the operator --------------------------------------------------------------------------


async def _alices_order_mallory_cannot_cancel(stack: SimStack) -> tuple[TradingClient, TradingClient, str]:
    await stack.quote("AAPL", 99.99, 100, 100.01, 100)
    alice, mallory = stack.trading("alice"), stack.trading("mallory")
    coid = await alice.submit_limit("AAPL", "buy", 1, "99")
    await alice.wait_for(coid, {"new"})
    await mallory.cancel(coid)
    with pytest.raises(OrderRejected, match="belongs to agent alice"):
        await mallory.wait_for(coid, {"canceled"})
    return alice, mallory, coid


async def test_an_agent_cannot_cancel_or_replace_another_agents_order(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        alice, mallory, coid = await _alices_order_mallory_cannot_cancel(stack)
        new_id = await mallory.replace(coid, limit_price="98")
        replaced = await mallory.wait_for(new_id)
        assert replaced.status == "rejected" and "belongs to agent alice" in replaced.reject_reason
        await mallory.cancel_all()  # mallory's own orders: none
        await mallory.cancel("nobody-1")
        with pytest.raises(OrderRejected, match="unknown order"):
            await mallory.wait_for("nobody-1")
        assert (await alice.order(coid)).status == "new"  # type: ignore[union-attr]
        assert stack.gateway.stats.refused == 2

        await alice.cancel(coid)  # its owner may
        assert (await alice.wait_for(coid)).status == "canceled"


async def test_a_refused_cancel_is_news_about_the_cancel_not_the_order(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        _, mallory, coid = await _alices_order_mallory_cannot_cancel(stack)
        assert "belongs to agent alice" in (mallory.rejection(coid, cancel=True) or "")
        assert mallory.rejection(coid) is None  # the order itself was not refused
        await stack.quote("AAPL", 98.50, 100, 98.90, 100)  # the ask trades through alice's bid
        assert (await mallory.wait_for(coid, {"filled"})).status == "filled"


async def test_only_the_operator_stream_cancels_everyones_orders(redis_url: str, processes: ProcessGroup) -> None:
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        await stack.quote("MSFT", 99.99, 100, 100.01, 100)
        ids = []
        for agent in ("alice", "bob"):
            for symbol in ("AAPL", "MSFT"):
                trading = stack.trading(agent)
                ids.append(await trading.submit_limit(symbol, "buy", 1, "99"))
                await trading.wait_for(ids[-1], {"new"})

        # the reserved name on the agents' stream, and a forged operator sender on the operator stream
        await stack.trading("operator").cancel_all()
        await stack.client.xadd(KEYS.operator_intents(), encode_intent(Intent("cancel_all", "mallory")))
        await _eventually_async(lambda: stack.gateway.stats.bad_intents == 2)
        assert await stack.client.scard(KEYS.open_orders()) == 4
        reasons = [f["reason"] for _, f in await stack.client.xrange(KEYS.order_events())
                   if f.get("event") == "intent_rejected"]
        assert any("reserved for the operator stream" in r for r in reasons)
        assert any("takes only sender 'operator'" in r for r in reasons)

        result = await asyncio.to_thread(processes.run, "-m", "hub.execution.cancel_all", "--symbol", "AAPL")
        assert result.returncode == 0, result.stderr
        await _eventually_async(lambda: _count_open(stack.client, 2))
        result = await asyncio.to_thread(processes.run, "-m", "hub.execution.cancel_all")
        assert result.returncode == 0, result.stderr
        await _eventually_async(lambda: _count_open(stack.client, 0))


async def _count_open(client: aioredis.Redis, expected: int) -> bool:
    return int(await client.scard(KEYS.open_orders())) == expected


# the order-rate bucket ---------------------------------------------------------------------------------


def test_a_restart_does_not_refill_the_order_rate_bucket(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    """Before: the bucket was in memory, so every restart began with a full burst (5 more orders here)."""
    set_quote(sync_redis)
    args = ("-m", "hub.execution", "--broker", "sim", "--order-rate", "0.01", "--order-burst", "5",
            "--max-open-orders", "1000")
    gateway = processes.start(*args)
    for i in range(8):
        sync_redis.xadd("tf:orders:intents", submit_fields(f"first-{i}", price="99"))
    wait_all_handled(sync_redis, 8)
    assert _statuses(sync_redis, "first", 8) == ["new"] * 5 + ["rejected"] * 3
    assert float(sync_redis.hget("tf:risk:order_bucket", "tokens") or 9) < 1
    assert "rate limit" in sync_redis.hget("tf:order:first-7", "reject_reason")

    gateway.terminate()
    gateway.wait(10)
    gateway = processes.start(*args)
    for i in range(5):
        sync_redis.xadd("tf:orders:intents", submit_fields(f"second-{i}", price="99"))
    wait_all_handled(sync_redis, 13)
    assert _statuses(sync_redis, "second", 5) == ["rejected"] * 5

    os.kill(gateway.pid, signal.SIGKILL)  # a crash loop's restarts do not refill it either
    gateway.wait(10)
    processes.start(*args)
    for i in range(3):
        sync_redis.xadd("tf:orders:intents", submit_fields(f"third-{i}", price="99"))
    wait_all_handled(sync_redis, 16)
    assert _statuses(sync_redis, "third", 3) == ["rejected"] * 3


def _statuses(client: redis.Redis, prefix: str, count: int) -> list[str]:
    return [client.hget(f"tf:order:{prefix}-{i}", "status") or "" for i in range(count)]


async def test_the_redis_bucket_is_atomic_across_clients_and_refills_at_its_rate(redis_url: str) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    try:
        buckets = [RedisTokenBucket(c, "tf:risk:test_bucket", rate_per_s=0.001, burst=10) for c in clients]
        taken = await asyncio.gather(*(b.take() for b in buckets for _ in range(20)))
        assert sum(taken) == 10
        batch = RedisTokenBucket(clients[0], "tf:risk:batch_bucket", rate_per_s=0.001, burst=3)
        assert await batch.take(5) == 3  # a batch's reservation: what is there
        await batch.give_back(2)  # the batch used one
        assert await batch.take(5) == 2 and await batch.take() == 0
        fast = RedisTokenBucket(clients[0], "tf:risk:fast_bucket", rate_per_s=50.0, burst=1)
        assert await fast.take() and not await fast.take()
        started = time.monotonic()
        await _eventually_async(fast.take, timeout_s=2)
        assert time.monotonic() - started < 1.0  # 50/s: a token within ~20 ms
        assert 0 < await clients[0].pttl("tf:risk:fast_bucket") <= 1020
    finally:
        for client in clients:
            await client.aclose()


# fractional shares and the price grid ----------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "kind", "qty", "words"), [
    ("AAPL", "market", "0.5", None),
    ("AAPL", "market", "1.000000001", None),
    ("AAPL", "limit", "0.5", "only in market day orders"),
    ("AAPL", "market-gtc", "0.5", "only in market day orders"),
    ("AAPL", "market", "0.0000001", "below Alpaca's $1 minimum"),
    ("AAPL", "market", "0.0000000001", "more than 9 decimals"),
    ("WHOLE", "market", "0.5", "not fractionable"),
    ("WHOLE", "market", "2", None),
    ("NOQUOTE", "market", "0.5", "no quote"),
])
async def test_fractional_quantities_follow_alpacas_rules(redis_url: str, symbol: str, kind: str, qty: str,
                                                          words: str | None) -> None:
    async with sim_stack(redis_url, sim=SimBrokerSettings(sim_whole_shares=("WHOLE",))) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        await stack.quote("WHOLE", 99.99, 100, 100.01, 100)
        trading = stack.trading()
        if kind == "limit":
            coid = await trading.submit_limit(symbol, "buy", qty, "99")
        elif kind == "market":
            coid = await trading.submit_market(symbol, "buy", qty)
        else:
            coid = "gtc-1"
            await stack.client.xadd(KEYS.order_intents(), encode_intent(Intent(
                "submit", "tester", client_order_id=coid, symbol=symbol, side="buy", order_type="market",
                qty=Decimal(qty), time_in_force="gtc")))
        order = await trading.wait_for(coid)
        if words is None:
            assert order.status == "filled" and order.filled_qty == Decimal(qty)
        else:
            assert order.status == "rejected" and words in order.reject_reason, order.reject_reason


async def test_a_halted_gateway_rejects_a_fractional_order_without_asking_the_broker(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)

        async def unreachable(symbol: str) -> bool:
            raise BrokerUnavailable("the broker is down")

        stack.broker.fractionable = unreachable  # type: ignore[method-assign]
        stack.gateway.halted = True
        await stack.client.set(KEYS.risk_halt(), "1")
        trading = stack.trading()
        coid = await trading.submit_market("AAPL", "buy", "0.5")
        order = await trading.wait_for(coid, timeout_s=5)
        assert order.status == "rejected" and "halt" in order.reject_reason, order.reject_reason


async def _eventually_async(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s")
        await asyncio.sleep(0.01)
