"""Spotter, SpreadCalculator and Volatility: the calculations and their edge cases."""

from __future__ import annotations

import math

import pytest
import redis

from agents.spotter import Spotter, micro_price
from agents.spread_calculator import RollingMean, SpreadCalculator
from agents.volatility import US_EQUITY_SECONDS_PER_YEAR, EwmaVariance, Volatility
from cache import DataCache
from core.codec import Quote

S = 1_000_000_000


def q(bid: float, ask: float, bid_size: float = 100.0, ask_size: float = 100.0, ts_ns: int = 0) -> Quote:
    return Quote("AAPL", bid, bid_size, ask, ask_size, ts_ns, ts_ns)


# micro-price ------------------------------------------------------------------

def test_micro_price_leans_toward_the_side_with_less_size() -> None:
    # 300 on the bid, 100 on the ask: buyers dominate, fair price is 3/4 of the way to the ask
    assert micro_price(q(100.0, 100.04, 300, 100)) == pytest.approx(100.03)


def test_micro_price_equals_mid_for_equal_sizes() -> None:
    assert micro_price(q(10.0, 10.02)) == pytest.approx(10.01)


@pytest.mark.parametrize(("bid_size", "ask_size"), [(0, 100), (100, 0), (0, 0)])
def test_zero_size_falls_back_to_plain_mid(bid_size: float, ask_size: float) -> None:
    assert micro_price(q(10.0, 10.02, bid_size, ask_size)) == pytest.approx(10.01)


def test_locked_quote_fair_price_is_the_price() -> None:
    assert micro_price(q(10.0, 10.0, 500, 100)) == 10.0


@pytest.mark.parametrize("quote", [q(10.02, 10.0), q(0.0, 10.0), q(10.0, 0.0), q(0.0, 0.0)])
def test_crossed_and_one_sided_quotes_have_no_fair_price(quote: Quote) -> None:
    assert micro_price(quote) is None


# rolling spread -----------------------------------------------------------------

def test_rolling_mean_forgets_samples_older_than_the_window() -> None:
    mean = RollingMean(10 * S)
    assert mean.add(0, 1.0) == 1.0
    assert mean.add(5 * S, 3.0) == 2.0
    assert mean.add(10 * S, 5.0) == 3.0  # window [0s, 10s] still holds all three
    assert mean.add(12 * S, 7.0) == pytest.approx((3.0 + 5.0 + 7.0) / 3)
    assert len(mean) == 3


# volatility -------------------------------------------------------------------

def test_ewma_variance_matches_an_independent_computation() -> None:
    halflife_s = 2.0
    mids = [(0, 100.0), (1 * S, 100.1), (3 * S, 99.9), (3 * S, 99.0), (4 * S, 100.2), (7 * S, 100.0)]
    estimator = EwmaVariance(halflife_s)
    for ts_ns, mid in mids:
        estimator.add(ts_ns, mid)
    # by hand: the last quote at 3s (99.0) is that timestamp's sample; 99.9 is replaced
    steps = [(1.0, math.log(100.1 / 100.0)), (2.0, math.log(99.0 / 100.1)),
             (1.0, math.log(100.2 / 99.0)), (3.0, math.log(100.0 / 100.2))]
    variance = steps[0][1] ** 2 / steps[0][0]
    for dt_s, r in steps[1:]:
        alpha = 1 - 0.5 ** (dt_s / halflife_s)
        variance = (1 - alpha) * variance + alpha * r * r / dt_s
    assert estimator.variance_per_s == pytest.approx(variance, rel=1e-12)
    assert estimator.returns == 4


def test_ewma_variance_same_with_or_without_the_quotes_conflation_drops() -> None:
    """Conflation keeps the newest quote of a timestamp (one message); seeing them all must not matter."""
    every = [(0, 100.0), (0, 100.3), (1 * S, 100.1), (1 * S, 99.7), (1 * S, 99.8), (2 * S, 100.2), (2 * S, 100.0)]
    last_per_ts = [(0, 100.3), (1 * S, 99.8), (2 * S, 100.0)]
    seen_all, conflated = EwmaVariance(5.0), EwmaVariance(5.0)
    for ts_ns, mid in every:
        seen_all.add(ts_ns, mid)
    for ts_ns, mid in last_per_ts:
        conflated.add(ts_ns, mid)
    assert seen_all.variance_per_s == conflated.variance_per_s and seen_all.returns == conflated.returns == 2
    assert seen_all.add(1 * S, 50.0) == conflated.variance_per_s  # older than the last sample: ignored


def test_constant_price_has_zero_volatility() -> None:
    estimator = EwmaVariance(60.0)
    for i in range(10):
        estimator.add(i * S, 50.0)
    assert estimator.variance_per_s == 0.0


# the agents, against the suite's Redis -----------------------------------------------

@pytest.fixture
def cache(redis_url: str) -> DataCache:
    return DataCache(redis_url)


async def test_spotter_writes_fair_price_and_skips_crossed(cache: DataCache, sync_redis: redis.Redis) -> None:
    spotter = Spotter(config={"instruments": ["AAPL"]}, data_cache=cache)
    await spotter.run(q(100.0, 100.04, 300, 100))
    await spotter.run(q(100.05, 100.0))  # crossed: ignored
    await spotter.run(q(0.0, 100.0))  # one-sided: ignored
    assert float(sync_redis.hget("tf:cache:AAPL", "fair_price")) == pytest.approx(100.03)
    assert spotter.skipped == {"crossed": 1, "one_sided": 1}
    await cache.aclose()


async def test_spread_calculator_averages_over_its_window(cache: DataCache, sync_redis: redis.Redis) -> None:
    agent = SpreadCalculator(config={"instruments": ["AAPL"], "window": "10s"}, data_cache=cache)
    await agent.run(q(10.0, 10.04, ts_ns=0))
    await agent.run(q(10.0, 10.02, ts_ns=5 * S))
    await agent.run(q(10.0, 10.0, ts_ns=6 * S))  # locked: a zero spread
    await agent.run(q(10.0, 9.0, ts_ns=7 * S))  # crossed: skipped
    assert float(sync_redis.hget("tf:cache:AAPL", "spread")) == pytest.approx(0.02)
    await agent.run(q(10.0, 10.01, ts_ns=20 * S))  # the window now holds only this one
    assert float(sync_redis.hget("tf:cache:AAPL", "spread")) == pytest.approx(0.01)
    assert float(sync_redis.hget("tf:cache:AAPL", "spread_bps")) == pytest.approx(0.01 / 10.005 * 1e4)
    await cache.aclose()


async def test_volatility_agent_annualizes(cache: DataCache, sync_redis: redis.Redis) -> None:
    agent = Volatility(config={"instruments": ["AAPL"], "halflife": "60s"}, data_cache=cache)
    await agent.run(q(99.99, 100.01, ts_ns=0))
    assert sync_redis.hget("tf:cache:AAPL", "volatility") is None  # no return yet
    await agent.run(q(100.09, 100.11, ts_ns=1 * S))
    expected = math.sqrt(math.log(100.1 / 100.0) ** 2 / 1.0 * US_EQUITY_SECONDS_PER_YEAR)
    assert float(sync_redis.hget("tf:cache:AAPL", "volatility")) == pytest.approx(expected)
    await cache.aclose()
