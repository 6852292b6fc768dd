"""QuoteManager: pure pricing, and the agent's order handling against real Redis with an in-memory order client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from agents.events import CacheUpdate
from agents.pricing import (
    Action,
    Level,
    QuoteRules,
    plan_side,
    round_through,
    round_to_tick,
    target_quotes,
    to_decimal,
)
from agents.quote_manager import QuoteManager
from cache import DataCache
from core.clock import FakeClock
from core.errors import ConfigError
from core.keys import Keys
from tests.fake_trading import FakeTrading

D = Decimal
RULES = QuoteRules(quote_size=D(100), min_spread=D("0.02"), skew_per_share=D("0.0001"), max_inventory=D(500))


# pricing ---------------------------------------------------------------------

def test_round_to_tick_uses_cents_above_a_dollar_and_rounds_passively() -> None:
    assert round_to_tick(D("100.019"), "buy") == D("100.01")
    assert round_to_tick(D("100.011"), "sell") == D("100.02")
    assert round_to_tick(D("0.49985"), "buy") == D("0.4998")
    assert round_to_tick(D("0.49985"), "sell") == D("0.4999")


def test_sub_dollar_price_rounded_up_to_a_dollar_uses_two_decimals() -> None:
    rounded = round_to_tick(D("0.99995"), "sell")
    assert rounded == D("1.00") and rounded.as_tuple().exponent == -2


def test_round_through_rounds_aggressively() -> None:
    assert round_through(D("100.011"), "buy") == D("100.02")
    assert round_through(D("100.019"), "sell") == D("100.01")


def test_to_decimal_keeps_the_short_float_form() -> None:
    assert to_decimal(0.1) == D("0.1")
    assert to_decimal("2.50") == D("2.50")


def test_quotes_straddle_fair_price_at_the_market_spread() -> None:
    quotes = target_quotes(D(100), D("0.03"), D(0), RULES)
    assert quotes.bid == Level(D("99.98"), D(100))
    assert quotes.ask == Level(D("100.02"), D(100))


def test_minimum_spread_applies_when_the_market_is_tighter() -> None:
    quotes = target_quotes(D(100), D(0), D(0), RULES)
    assert quotes.bid is not None and quotes.ask is not None
    assert (quotes.bid.price, quotes.ask.price) == (D("99.99"), D("100.01"))


def test_long_inventory_skews_both_quotes_down() -> None:
    flat = target_quotes(D(100), D("0.02"), D(0), RULES)
    long = target_quotes(D(100), D("0.02"), D(300), RULES)
    assert long.bid is not None and long.ask is not None and flat.bid is not None and flat.ask is not None
    assert long.bid.price == flat.bid.price - D("0.03")
    assert long.ask.price == flat.ask.price - D("0.03")


def test_short_inventory_skews_up() -> None:
    quotes = target_quotes(D(100), D("0.02"), D(-200), RULES)
    assert quotes.bid is not None and quotes.bid.price == D("100.01")


def test_max_inventory_shrinks_then_drops_the_side_that_adds() -> None:
    near = target_quotes(D(100), D("0.02"), D(450), RULES)
    assert near.bid is not None and near.bid.qty == D(50)
    at_max = target_quotes(D(100), D("0.02"), D(500), RULES)
    assert at_max.bid is None and at_max.ask is not None
    short_max = target_quotes(D(100), D("0.02"), D(-500), RULES)
    assert short_max.ask is None and short_max.bid is not None


def test_reduce_only_quotes_only_the_side_that_shrinks_the_position() -> None:
    long = target_quotes(D(100), D("0.02"), D(30), RULES, reduce_only=True)
    assert long.bid is None and long.ask == Level(D("100.01"), D(30))
    flat = target_quotes(D(100), D("0.02"), D(0), RULES, reduce_only=True)
    assert flat.bid is None and flat.ask is None


def test_sub_dollar_stock_quotes_on_the_four_decimal_grid() -> None:
    rules = QuoteRules(quote_size=D(100), min_spread=D("0.0002"), skew_per_share=D(0), max_inventory=D(500))
    quotes = target_quotes(D("0.5"), D("0.0003"), D(0), rules)
    assert quotes.bid is not None and quotes.ask is not None
    assert (quotes.bid.price, quotes.ask.price) == (D("0.4998"), D("0.5002"))


def test_plan_side_requotes_only_beyond_tolerance() -> None:
    working = Level(D("99.98"), D(100))
    tolerance = D("0.01")
    assert plan_side(working, Level(D("99.99"), D(100)), tolerance) is Action.HOLD
    assert plan_side(working, Level(D("100.00"), D(100)), tolerance) is Action.REPLACE
    assert plan_side(working, Level(D("99.98"), D(50)), tolerance) is Action.REPLACE
    assert plan_side(working, None, tolerance) is Action.CANCEL
    assert plan_side(None, working, tolerance) is Action.SUBMIT
    assert plan_side(None, None, tolerance) is Action.HOLD


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="quote_size"):
        QuoteManager(config={"instruments": ["AAPL"], "quote_size": 0})
    with pytest.raises(ConfigError, match="max_inventory"):
        QuoteManager(config={"instruments": ["AAPL"], "max_inventory": -1})


# the agent -------------------------------------------------------------------

@pytest.fixture
async def setup(redis_url: str) -> AsyncIterator[tuple[QuoteManager, FakeTrading, DataCache, FakeClock]]:
    clock = FakeClock()
    cache = DataCache(redis_url, clock=clock)
    agent = QuoteManager(config={"instruments": ["AAPL"], "tolerance": 0.01, "max_data_age": "2s"},
                         data_cache=cache, clock=clock)
    trading = FakeTrading()
    agent.attach_trading(trading)
    yield agent, trading, cache, clock
    await cache.aclose()


def update() -> CacheUpdate:
    return CacheUpdate("AAPL", ("fair_price",), 0, 0)


def prices(trading: FakeTrading) -> dict[str, Decimal | None]:
    return {o.side: o.limit_price for o in trading.open("AAPL")}


async def test_first_run_quotes_both_sides(setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, _ = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.03})
    await agent.run(update())
    assert prices(trading) == {"buy": D("99.98"), "sell": D("100.02")}
    assert all(o.qty == D(100) for o in trading.open())


async def test_small_moves_send_nothing_big_moves_replace(
        setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, _ = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.03})
    await agent.run(update())
    sent = len(trading.calls)
    for fair in (100.004, 100.008, 99.996, 100.0):
        await cache.set("AAPL", "fair_price", fair)
        await agent.run(update())
    assert len(trading.calls) == sent  # no cancel/replace spam inside the tolerance
    await cache.set("AAPL", "fair_price", 100.05)
    await agent.run(update())
    assert [c[0] for c in trading.calls[sent:]].count("replace") == 2
    assert not any(c[0] == "cancel" for c in trading.calls)
    assert prices(trading) == {"buy": D("100.03"), "sell": D("100.07")}
    assert len(trading.open()) == 2


async def test_fill_leads_to_a_new_skewed_quote(setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, _ = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await agent.run(update())
    bid = next(o for o in trading.open() if o.side == "buy")
    trading.fill(bid.client_order_id)
    await agent.run(update())
    assert (await trading.position("AAPL")).qty == D(100)
    # long 100 shares at 0.0001/share: targets 1 cent lower; the new bid goes there, the ask
    # (100.01 working, 100.00 wanted) is within the 1 cent tolerance and stays
    assert prices(trading) == {"buy": D("99.98"), "sell": D("100.01")}
    await cache.set("AAPL", "fair_price", 99.98)
    await agent.run(update())
    assert prices(trading) == {"buy": D("99.96"), "sell": D("99.98")}
    assert agent.stats.filled == 1


async def test_stale_fair_price_pulls_the_quotes(setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, clock = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await agent.run(update())
    assert len(trading.open()) == 2
    await clock.advance(3_000_000_000)
    await agent.run(update())
    assert trading.open() == []


async def test_max_inventory_stops_the_bid(setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, _ = setup
    trading.set_position("AAPL", 500, 100)
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await agent.run(update())
    assert [o.side for o in trading.open()] == ["sell"]


async def test_halt_sends_nothing_until_lifted(setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock],
                                               aredis: aioredis.Redis) -> None:
    agent, trading, cache, _ = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await aredis.set(Keys().risk_halt(), "1")
    for _ in range(5):
        await agent.run(update())
    assert trading.calls == []
    await aredis.delete(Keys().risk_halt())
    await agent.run(update())
    assert trading.calls[0] == ("cancel_all", "AAPL")
    assert len(trading.open()) == 2


async def test_halt_while_quoting_forgets_orders_without_cancel_spam(
        setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock], aredis: aioredis.Redis) -> None:
    agent, trading, cache, _ = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await agent.run(update())
    sent = len(trading.calls)
    await aredis.set(Keys().risk_halt(), "1")
    await trading.cancel_all()  # what the gateway does on a halt
    for fair in (100.1, 100.2, 100.3):
        await cache.set("AAPL", "fair_price", fair)
        await agent.run(update())
    assert len(trading.calls) == sent + 1  # only the gateway's own cancel_all above
    assert agent.working == {("AAPL", "buy"): None, ("AAPL", "sell"): None}


async def test_reduce_only_quotes_only_the_reducing_side(
        setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock], aredis: aioredis.Redis) -> None:
    agent, trading, cache, _ = setup
    trading.set_position("AAPL", -40, 100)
    await aredis.set(Keys().risk_reduce_only(), "1")
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await agent.run(update())
    assert [(o.side, o.qty) for o in trading.open()] == [("buy", D(40))]


async def test_rejection_backs_the_side_off(setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, clock = setup
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    trading.reject_next = "max position"
    await agent.run(update())  # bid rejected, ask accepted
    for _ in range(5):
        await agent.run(update())
    submits = [c for c in trading.calls if c[0] == "submit"]
    assert len(submits) == 2 and agent.stats.rejected == 1
    await clock.advance(300_000_000)  # past the 250ms back-off
    await agent.run(update())
    assert len([c for c in trading.calls if c[0] == "submit"]) == 3
    assert {o.side for o in trading.open()} == {"buy", "sell"}


async def test_start_and_stop_cancel_this_agents_orders(
        setup: tuple[QuoteManager, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, _ = setup
    await trading.submit_limit("AAPL", "buy", 1, "90")  # left over from an earlier run
    await agent.on_start()
    assert trading.open() == []
    await cache.update("AAPL", {"fair_price": 100.0, "spread": 0.02})
    await agent.run(update())
    assert len(trading.open()) == 2
    await agent.on_stop()
    assert trading.open() == []


async def test_own_order_budget_holds_quotes_instead_of_hitting_the_gateway_limit(redis_url: str) -> None:
    clock = FakeClock()
    cache = DataCache(redis_url, clock=clock)
    agent = QuoteManager(config={"instruments": ["AAPL"], "max_order_rate": 1, "order_burst": 3},
                         data_cache=cache, clock=clock)
    trading = FakeTrading()
    agent.attach_trading(trading)
    for step in range(10):
        await cache.update("AAPL", {"fair_price": 100.0 + step * 0.1, "spread": 0.02})
        await agent.run(update())
    sent = [c for c in trading.calls if c[0] in ("submit", "replace")]
    assert len(sent) == 3 and agent.stats.over_budget > 0
    await clock.advance(2_000_000_000)  # two more tokens: both sides catch up with fair price
    await cache.update("AAPL", {"fair_price": 101.0, "spread": 0.02})
    await agent.run(update())
    assert prices(trading) == {"buy": D("100.99"), "sell": D("101.01")}
    await cache.aclose()
