"""The sim broker through the in-process gateway and the agents' TradingClient, on real Redis."""

from __future__ import annotations

import random
import time
from decimal import Decimal

import redis.asyncio as aioredis

from core.clock import SystemClock
from core.codec import Quote
from core.keys import Keys
from core.orders import Order
from hub.execution.brokers.sim import SimBroker, SimBrokerSettings
from hub.execution.store import OrderStore
from tests.execution_helpers import KEYS, dec, sim_stack
from tests.helpers import eventually_async


async def test_marketable_order_fills_at_the_touch_up_to_displayed_size_then_rests(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading = stack.trading()
        await stack.quote("AAPL", 99.99, 100, 100.01, 300)
        coid = await trading.submit_limit("AAPL", "buy", 500, "100.05")
        order = await trading.wait_for(coid, {"partially_filled", "filled"})
        assert (order.status, order.filled_qty, order.filled_avg_price) == ("partially_filled", 300,
                                                                             Decimal("100.01"))
        assert (await trading.position("AAPL")).qty == 300

        # a later quote crossing the resting remainder fills it at its limit
        await stack.quote("AAPL", 100.00, 100, 100.03, 1000)
        order = await trading.wait_for(coid, {"filled"})
        assert order.filled_qty == 500
        assert order.filled_avg_price == (300 * Decimal("100.01") + 200 * Decimal("100.05")) / 500
        position = await trading.position("AAPL")
        assert position.qty == 500 and position.avg_price == order.filled_avg_price
        assert await trading.open_orders() == []


async def test_resting_limit_fills_only_when_the_opposite_side_crosses_it(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading = stack.trading()
        await stack.quote("MSFT", 99.90, 100, 100.00, 500)
        coid = await trading.submit_limit("MSFT", "buy", 100, 99.5)
        assert (await trading.wait_for(coid, {"new"})).filled_qty == 0
        await stack.quote("MSFT", 99.50, 100, 99.60, 500)  # not crossed yet
        assert (await trading.order(coid)).status == "new"  # type: ignore[union-attr]
        await stack.quote("MSFT", 99.40, 100, 99.50, 40)  # crossed: 40 displayed
        order = await trading.wait_for(coid, {"partially_filled"})
        assert (order.filled_qty, order.filled_avg_price) == (40, Decimal("99.5"))
        await stack.quote("MSFT", 99.30, 100, 99.45, 1000)
        order = await trading.wait_for(coid, {"filled"})
        assert order.filled_qty == 100 and order.filled_avg_price == Decimal("99.5")
        assert [o.client_order_id for o in await trading.open_orders()] == []


async def test_a_filled_resting_order_is_forgotten(redis_url: str) -> None:
    # The soak's gateway grew ~1 MB/h: each resting order that filled stayed in the broker's memory.
    async with sim_stack(redis_url) as stack:
        trading = stack.trading()
        await stack.quote("MSFT", 99.90, 100, 100.00, 500)
        coids = [await trading.submit_limit("MSFT", "buy", 10, 99.5) for _ in range(3)]
        resting = stack.broker._resting

        async def all_resting() -> bool:
            return set(coids) <= resting

        await eventually_async(all_resting, timeout_s=5, message="the three orders resting")
        await stack.quote("MSFT", 99.40, 100, 99.50, 1000)  # crosses all three
        for coid in coids:
            await trading.wait_for(coid, {"filled"})
        assert stack.broker._resting.isdisjoint(coids)


async def test_fees_are_charged_per_fill_and_realized_pnl_is_net(redis_url: str) -> None:
    settings = SimBrokerSettings(sim_fee_per_share=0.005, sim_fee_bps=1.0)
    async with sim_stack(redis_url, sim=settings) as stack:
        trading = stack.trading()
        await stack.quote("SPY", 100.00, 1000, 100.01, 1000)
        buy = await trading.submit_market("SPY", "buy", 100)
        bought = await trading.wait_for(buy, {"filled"})
        buy_fee = Decimal("0.5") + Decimal(100) * Decimal("100.01") / 10_000
        assert bought.fees == buy_fee and bought.filled_avg_price == Decimal("100.01")
        await stack.quote("SPY", 100.51, 1000, 100.52, 1000)
        sell = await trading.submit_market("SPY", "sell", 100)
        sold = await trading.wait_for(sell, {"filled"})
        sell_fee = Decimal("0.5") + Decimal(100) * Decimal("100.51") / 10_000
        assert sold.fees == sell_fee
        position = await trading.position("SPY")
        assert position.qty == 0
        assert position.realized_pnl == Decimal(100) * Decimal("0.50") - buy_fee - sell_fee
        raw = await stack.client.hgetall(KEYS.position("SPY"))
        assert raw["realized_pnl"] == "46.9948"  # readable in redis-cli


async def test_ioc_remainder_is_canceled_and_fok_fills_whole_or_not_at_all(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading = stack.trading()
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        ioc = await trading.submit_limit("AAPL", "buy", 300, 100.01, time_in_force="ioc")
        order = await trading.wait_for(ioc)
        assert (order.status, order.filled_qty) == ("canceled", 100)
        fok = await trading.submit_limit("AAPL", "buy", 300, 100.01, time_in_force="fok")
        order = await trading.wait_for(fok)
        assert (order.status, order.filled_qty) == ("canceled", 0)


async def test_latency_delays_trading_until_a_later_quote(redis_url: str) -> None:
    async with sim_stack(redis_url, sim=SimBrokerSettings(sim_latency_ns=200_000_000)) as stack:
        trading = stack.trading()
        await stack.quote("AAPL", 99.99, 100, 100.01, 500)
        coid = await trading.submit_limit("AAPL", "buy", 100, 100.02)
        order = await trading.wait_for(coid, {"new"})
        stack.publisher.add_quote("AAPL", 1, 99.99, 100, 100.01, 500, ts_recv_ns=order.created_ns + 1_000)
        await stack.publisher.flush()
        stack.publisher.add_quote("AAPL", 2, 99.98, 100, 100.00, 500, ts_recv_ns=order.created_ns + 300_000_000)
        await stack.publisher.flush()
        order = await trading.wait_for(coid, {"filled"})
        assert order.filled_avg_price == Decimal("100")  # the touch of the first quote after the latency


async def test_cancel_replace_and_cancel_all_through_the_client(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading, other = stack.trading("quoter"), stack.trading("hedger")
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        first = await trading.submit_limit("AAPL", "buy", 10, 99.0)
        second = await trading.submit_limit("AAPL", "sell", 10, 101.0)
        theirs = await other.submit_limit("AAPL", "buy", 5, 98.0)
        await trading.wait_for(second, {"new"})
        await other.wait_for(theirs, {"new"})
        replacement = await trading.replace(first, limit_price=99.5, qty=20)
        new = await trading.wait_for(replacement, {"new"})
        old = await trading.order(first)
        assert old is not None and (old.status, old.replaced_by) == ("replaced", replacement)
        assert (new.qty, new.limit_price, new.replaces) == (20, Decimal("99.5"), first)
        await trading.cancel(second)
        assert (await trading.wait_for(second)).status == "canceled"
        await trading.cancel_all()
        assert (await trading.wait_for(replacement)).status == "canceled"
        assert [o.client_order_id for o in await other.open_orders()] == [theirs]  # other agents keep theirs


async def test_update_callbacks_see_this_agents_orders_only(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        mine, theirs = stack.trading("me"), stack.trading("them")
        seen: list[Order] = []

        async def on_update(order: Order) -> None:
            seen.append(order)

        mine.on_update(on_update)
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        coid = await mine.submit_limit("AAPL", "buy", 10, 100.01)
        other = await theirs.submit_limit("AAPL", "buy", 10, 99.0)
        await mine.wait_for(coid)
        await theirs.wait_for(other, {"new"})
        assert [o.status for o in seen if o.client_order_id == coid][-1] == "filled"
        assert all(o.agent == "me" for o in seen)
        await mine.aclose()
        await theirs.aclose()


async def _replay(redis_url: str, namespace: str) -> list[tuple[str, str, str, str]]:
    """Feed one seeded quote sequence and order flow straight into a SimBroker; return the fills."""
    keys = Keys(namespace)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    raw = aioredis.Redis.from_url(redis_url)
    store = OrderStore(client, keys, SystemClock())
    broker = SimBroker(store, raw, keys, SimBrokerSettings(sim_fee_bps=0.5))
    await broker.start()
    rng, mid = random.Random(7), 100.0
    for i in range(400):
        mid += rng.choice((-0.01, 0.0, 0.01))
        await broker.on_quote(Quote("AAPL", round(mid - 0.01, 2), rng.randint(1, 5) * 100.0, round(mid + 0.01, 2),
                                    rng.randint(1, 5) * 100.0, i, time.time_ns()))
        if i % 20 == 0:
            side = rng.choice(("buy", "sell"))
            limit = Decimal(str(round(mid + rng.choice((-0.02, 0.0, 0.02)), 2)))
            await broker.submit(Order(f"o{i}", "replay", "AAPL", side, "limit", Decimal(rng.randint(1, 8) * 100),
                                      limit, created_ns=i))
    entries = await client.xrange(keys.order_events())
    await client.aclose()
    await raw.aclose()
    return [(f["client_order_id"], f["event"], f["fill_qty"], f["fill_price"]) for _, f in entries if "fill_qty" in f]


async def test_fills_are_deterministic_under_replay(redis_url: str) -> None:
    first = await _replay(redis_url, "run1")
    second = await _replay(redis_url, "run2")
    assert len(first) > 10
    assert first == second
    assert sum(dec(qty) for _, _, qty, _ in first) > 0


async def test_a_repeated_book_is_the_same_liquidity_not_fresh(redis_url: str) -> None:
    """Before: every quote's displayed size was fresh, so a book repeated 3 times filled 4x its size."""
    keys = Keys("taken")
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    raw = aioredis.Redis.from_url(redis_url)
    store = OrderStore(client, keys, SystemClock())
    broker = SimBroker(store, raw, keys, SimBrokerSettings())
    await broker.start()

    async def book(ask: float, ask_size: float) -> None:
        await broker.on_quote(Quote("AAPL", 99.0, 100.0, ask, ask_size, 0, time.time_ns()))

    async def filled(coid: str) -> Decimal:
        order = await store.get(coid)
        assert order is not None
        return order.filled_qty

    try:
        await book(100.02, 300)
        await broker.submit(Order("big", "t", "AAPL", "buy", "limit", Decimal(1000), Decimal("100.02"), created_ns=1))
        assert await filled("big") == 300  # at arrival, the displayed 300
        for _ in range(3):
            await book(100.02, 300)  # the same book again: what it showed is taken
        assert await filled("big") == 300
        await book(100.02, 500)  # the size at the touch changed: 500 fresh
        await book(100.02, 500)
        assert await filled("big") == 800
        big = await store.get("big")
        assert big is not None
        await broker.cancel(big)
        await book(100.03, 500)  # with no order working, a change of the touch still ends what was taken
        await book(100.02, 500)
        await broker.submit(Order("small", "t", "AAPL", "buy", "limit", Decimal(100), Decimal("100.02"), created_ns=2))
        assert await filled("small") == 100
    finally:
        await client.aclose()
        await raw.aclose()
