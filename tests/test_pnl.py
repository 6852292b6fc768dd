"""PnL: pure valuation, and the agent writing per-symbol and portfolio PnL into the real cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from agents.events import Tick
from agents.pnl import PnL, SymbolPnl, portfolio_pnl, symbol_pnl
from cache import DataCache
from core.clock import FakeClock
from core.keys import PORTFOLIO, Keys
from tests.fake_trading import FakePosition, FakeTrading

D = Decimal


def test_long_and_short_unrealized() -> None:
    assert symbol_pnl(FakePosition("AAPL", D(100), D("190.00"), D(5)), D("190.50")) == SymbolPnl(
        "AAPL", D(5), D("50.00"), D("190.50"))
    short = symbol_pnl(FakePosition("AAPL", D(-100), D("190.00")), D("190.50"))
    assert short.unrealized == D("-50.00") and short.total == D("-50.00")


def test_flat_position_keeps_realized_and_needs_no_mark() -> None:
    pnl = symbol_pnl(FakePosition("AAPL", D(0), D(0), D("12.34")), None)
    assert (pnl.unrealized, pnl.total) == (D(0), D("12.34"))


def test_option_uses_the_multiplier() -> None:
    pnl = symbol_pnl(FakePosition("AAPL240621C00190000", D(2), D("5.00")), D("5.50"), D(100))
    assert pnl.unrealized == D("100.00")


def test_option_realized_pnl_is_in_dollars_with_the_fees_counted_once() -> None:
    # one contract bought at 5.00 and sold at 5.50 with 0.03 of fees: the store keeps 0.50 - 0.03 per share
    closed = FakePosition("AAPL240621C00190000", D(0), D(0), realized_pnl=D("0.47"), fees=D("0.03"))
    assert symbol_pnl(closed, None, D(100)).realized == D("49.97")
    assert symbol_pnl(FakePosition("AAPL", D(0), D(0), D("0.47"), D("0.03")), None).realized == D("0.47")


def test_portfolio_sums_and_counts_unmarked() -> None:
    total = portfolio_pnl([SymbolPnl("A", D(1), D(2), D(10)), SymbolPnl("B", D(3), None, None)], {"A", "B"})
    assert (total.realized, total.unrealized, total.total, total.positions, total.unmarked) == (
        D(4), D(2), D(6), 2, 1)


def test_pnl_is_periodic_whatever_is_passed() -> None:
    agent = PnL(config={"agent_type": "event_driven", "instruments": ["AAPL"]})
    assert agent.agent_type == "periodic" and agent.name == "pnl"


@pytest.fixture
async def pnl(redis_url: str) -> AsyncIterator[tuple[PnL, FakeTrading, DataCache, FakeClock]]:
    clock = FakeClock()
    cache = DataCache(redis_url, clock=clock)
    agent = PnL(config={"mark_max_age": "10s"}, data_cache=cache)
    trading = FakeTrading()
    agent.attach_trading(trading)
    yield agent, trading, cache, clock
    await cache.aclose()


async def test_marks_at_fair_price_and_writes_the_cache(pnl: tuple[PnL, FakeTrading, DataCache, FakeClock],
                                                        sync_redis: object) -> None:
    agent, trading, cache, _ = pnl
    trading.set_position("AAPL", 100, "190.00", "7.5")
    trading.set_position("MSFT", -50, "400.00", "-2.5")
    await cache.set("AAPL", "fair_price", 190.25)
    await cache.set("MSFT", "fair_price", 399.0)
    await agent.run(Tick(None, 0, 0))
    aapl = await cache.get_all("AAPL")
    assert aapl["pnl_unrealized"].value == 25.0 and aapl["pnl_realized"].value == 7.5
    assert aapl["pnl_total"].value == 32.5 and aapl["mark"].value == 190.25
    assert await cache.get_float("MSFT", "pnl_unrealized") == 50.0
    portfolio = await cache.get_all(PORTFOLIO)
    assert portfolio["pnl_total"].value == 80.0 and portfolio["pnl_realized"].value == 5.0
    assert portfolio["positions"].value == 2.0 and portfolio["unmarked"].value == 0.0


async def test_stale_fair_price_falls_back_to_the_quote_mid(pnl: tuple[PnL, FakeTrading, DataCache, FakeClock],
                                                            aredis: aioredis.Redis) -> None:
    agent, trading, cache, clock = pnl
    trading.set_position("AAPL", 10, "100.00")
    await cache.set("AAPL", "fair_price", 150.0)
    await clock.advance(11_000_000_000)
    await aredis.hset(Keys().latest_quote("AAPL"), mapping={"bid": "100.9", "bid_size": "1", "ask": "101.1",
                                                            "ask_size": "1", "ts_ns": "1"})
    await agent.run(Tick(None, 0, 0))
    assert await cache.get_float("AAPL", "mark") == pytest.approx(101.0)
    assert await cache.get_float("AAPL", "pnl_unrealized") == pytest.approx(10.0)


async def test_unmarked_position_is_counted_not_guessed(pnl: tuple[PnL, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, _ = pnl
    trading.set_position("ZZZ", 10, "5.00", "1")
    total = await agent.value_portfolio()
    assert total.unmarked == 1
    assert await cache.get_float("ZZZ", "pnl_unrealized") is None
    assert await cache.get_float("ZZZ", "pnl_realized") == 1.0


async def test_with_instruments_values_once_per_period(redis_url: str) -> None:
    cache = DataCache(redis_url)
    agent = PnL(config={"instruments": ["AAPL", "MSFT"]}, data_cache=cache)
    trading = FakeTrading()
    agent.attach_trading(trading)
    await agent.run(Tick("MSFT", 0, 0))
    assert agent.last is None
    await agent.run(Tick("AAPL", 0, 0))
    assert agent.last is not None
    assert await cache.get_float("MSFT", "pnl_total") == 0.0  # configured symbols show up even when flat
    await cache.aclose()
