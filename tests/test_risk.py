"""Pre-trade risk: every check rejects with a reason the agent gets back through its TradingClient."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.clock import FakeClock
from core.errors import ConfigError
from core.orders import Order
from core.ratelimit import TokenBucket
from core.settings import build
from hub.execution.risk import RiskChecks, RiskContext, RiskSettings, check_tick
from tests.execution_helpers import KEYS, sim_stack

TIGHT = RiskSettings(max_order_qty=100.0, max_order_notional=5_000.0, max_position=150.0, max_open_orders=3,
                     order_rate=1_000.0, order_burst=1_000, price_collar=0.05)


@pytest.mark.parametrize(("qty", "price", "words"), [
    (101, "40", "max_order_qty"),
    (60, "99.00", "max_order_notional"),
    (10, "100.123", "tick grid"),
    (10, "0.12345", "4 decimals below $1"),
    (10, "106", "price collar"),
])
async def test_order_checks_reject_with_a_reason(redis_url: str, qty: int, price: str, words: str) -> None:
    async with sim_stack(redis_url, risk=TIGHT) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        await stack.quote("PENNY", 0.1234, 100, 0.1236, 100)
        trading = stack.trading()
        symbol = "PENNY" if "below" in words else "AAPL"
        coid = await trading.submit_limit(symbol, "buy", qty, price)
        order = await trading.wait_for(coid)
        assert order.status == "rejected"
        assert words in order.reject_reason


async def test_position_limit_counts_open_orders(redis_url: str) -> None:
    async with sim_stack(redis_url, risk=TIGHT) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        trading = stack.trading()
        filled = await trading.submit_limit("AAPL", "buy", 40, "100.01")  # position 40
        assert (await trading.wait_for(filled)).status == "filled"
        resting = await trading.submit_limit("AAPL", "buy", 45, "99")  # 40 + 45 working
        assert (await trading.wait_for(resting, {"new"})).status == "new"
        over = await trading.submit_limit("AAPL", "buy", 45, "99")  # 40 + 45 + 45 = 130 ok
        assert (await trading.wait_for(over, {"new", "rejected"})).status == "new"
        too_far = await trading.submit_limit("AAPL", "buy", 25, "99")  # 155 > 150
        order = await trading.wait_for(too_far)
        assert order.status == "rejected" and "max_position" in order.reject_reason
        sell = await trading.submit_limit("AAPL", "sell", 25, "101")  # the other side is fine
        assert (await trading.wait_for(sell, {"new", "rejected"})).status == "new"


async def test_max_open_orders(redis_url: str) -> None:
    async with sim_stack(redis_url, risk=TIGHT) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        trading = stack.trading()
        for _ in range(3):
            coid = await trading.submit_limit("AAPL", "buy", 1, "99")
            await trading.wait_for(coid, {"new"})
        fourth = await trading.submit_limit("AAPL", "buy", 1, "99")
        order = await trading.wait_for(fourth)
        assert order.status == "rejected" and "max_open_orders" in order.reject_reason


async def test_market_orders_need_a_quote(redis_url: str) -> None:
    async with sim_stack(redis_url, risk=TIGHT) as stack:
        trading = stack.trading()
        coid = await trading.submit_market("NOQUOTE", "buy", 1)
        order = await trading.wait_for(coid)
        assert order.status == "rejected" and "no quote" in order.reject_reason


async def test_rate_limit_rejects_beyond_the_burst(redis_url: str) -> None:
    slow = RiskSettings(order_rate=0.001, order_burst=2, max_open_orders=100)
    async with sim_stack(redis_url, risk=slow) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        trading = stack.trading()
        ids = [await trading.submit_limit("AAPL", "buy", 1, "99") for _ in range(3)]
        statuses = [(await trading.wait_for(c, {"new", "rejected"})) for c in ids]
        assert [o.status for o in statuses] == ["new", "new", "rejected"]
        assert "rate limit" in statuses[2].reject_reason


async def test_reduce_only_lets_only_position_reducing_orders_through(redis_url: str) -> None:
    async with sim_stack(redis_url, risk=TIGHT) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        trading = stack.trading()
        bought = await trading.submit_limit("AAPL", "buy", 30, "100.01")
        await trading.wait_for(bought)
        await stack.client.set(KEYS.risk_reduce_only(), "1")
        more = await trading.submit_limit("AAPL", "buy", 1, "99")
        order = await trading.wait_for(more)
        assert order.status == "rejected" and "reduce-only" in order.reject_reason
        reduce = await trading.submit_limit("AAPL", "sell", 20, "101")
        assert (await trading.wait_for(reduce, {"new", "rejected"})).status == "new"
        flip = await trading.submit_limit("AAPL", "sell", 20, "101")  # 20 working + 20 > 30 held
        order = await trading.wait_for(flip)
        assert order.status == "rejected" and "reduce-only" in order.reject_reason
        await stack.client.delete(KEYS.risk_reduce_only())
        again = await trading.submit_limit("AAPL", "buy", 1, "99")
        assert (await trading.wait_for(again, {"new", "rejected"})).status == "new"


def test_token_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock._now_ns += 500_000_000  # half a second: one token
    assert [bucket.take(), bucket.take()] == [True, False]


def test_tick_rules() -> None:
    assert check_tick(Decimal("1.00")) is None and check_tick(Decimal("187.25")) is None
    assert check_tick(Decimal("0.9999")) is None
    assert check_tick(Decimal("1.001")) is not None and check_tick(Decimal("0.99991")) is not None


def test_halt_beats_everything() -> None:
    checks = RiskChecks(TIGHT, FakeClock())
    order = Order("x", "a", "AAPL", "buy", "limit", Decimal(1), Decimal(100))
    ctx = RiskContext(halted=True, reduce_only=False, position_qty=Decimal(0), open_buy_qty=Decimal(0),
                      open_sell_qty=Decimal(0), open_count=0,
                      touch=None)
    assert "halted" in (checks.check(order, ctx) or "")


def test_bad_risk_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="max_order_qty"):
        build(RiskSettings, {"max_order_qty": -1})
    with pytest.raises(ConfigError, match="price_collar"):
        build(RiskSettings, {"price_collar": 2})
