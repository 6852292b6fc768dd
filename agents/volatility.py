"""Volatility: realized volatility of mid log-returns into ``tf:cache:<SYMBOL> volatility``.

Each run takes the log-return of the mid since the previous run,
``r = ln(mid / prev_mid)``, over the event-time gap ``dt`` (seconds), and
updates an exponentially weighted variance rate with a time-based decay::

    alpha = 1 - exp(-dt * ln 2 / halflife)
    var   = (1 - alpha) * var + alpha * r**2 / dt        (first return: var = r**2 / dt)

``volatility = sqrt(var * annualization)`` with ``annualization`` in seconds per
year: 5,896,800 by default (252 trading days of 6.5 hours, US equities);
use 31,536,000 for markets that trade around the clock.

Quotes that share a timestamp count as one sample, the *last* of them: a later
quote with the same timestamp replaces the return the earlier one gave. That is
what conflation hands the agent (the hub sends a timestamp's quotes in one
message and the runtime keeps the newest usable one), so seeing every quote or
only the conflated ones gives the same value. A quote older than the last
sample is ignored. Crossed and one-sided quotes are never used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.cli import run_agent_module
from agents.quote_analysis import QuoteAnalysis
from core.codec import Quote
from core.errors import ConfigError
from core.settings import option

US_EQUITY_SECONDS_PER_YEAR = 252 * 6.5 * 3600


class EwmaVariance:
    """Time-decayed EWMA of squared log-returns per second, one sample per timestamp (the last)."""

    def __init__(self, halflife_s: float) -> None:
        self._decay_per_s = math.log(2) / halflife_s
        self.prev_mid: float | None = None
        self.prev_ts_ns = 0
        self.variance_per_s: float | None = None
        self.returns = 0
        # (mid, ts_ns, variance) before the last return, so a same-timestamp quote can redo it
        self._before_last: tuple[float, int, float | None] | None = None

    def add(self, ts_ns: int, mid: float) -> float | None:
        """Feed a mid; returns the variance rate (per second) once there is a return."""
        if self.prev_mid is None or (ts_ns == self.prev_ts_ns and self._before_last is None):
            self.prev_mid, self.prev_ts_ns = mid, ts_ns  # the first timestamp's last mid
            return None
        if ts_ns == self.prev_ts_ns and self._before_last is not None:
            self.prev_mid, self.prev_ts_ns, self.variance_per_s = self._before_last
            self.returns -= 1
        elif ts_ns < self.prev_ts_ns:
            return self.variance_per_s
        return self._step(ts_ns, mid, self.prev_mid)

    def _step(self, ts_ns: int, mid: float, prev_mid: float) -> float:
        self._before_last = (prev_mid, self.prev_ts_ns, self.variance_per_s)
        dt_s = (ts_ns - self.prev_ts_ns) / 1e9
        rate = math.log(mid / prev_mid) ** 2 / dt_s
        if self.variance_per_s is None:
            self.variance_per_s = rate
        else:
            alpha = 1.0 - math.exp(-dt_s * self._decay_per_s)
            self.variance_per_s = (1.0 - alpha) * self.variance_per_s + alpha * rate
        self.prev_mid, self.prev_ts_ns = mid, ts_ns
        self.returns += 1
        return self.variance_per_s


@dataclass(frozen=True, kw_only=True)
class VolatilityParams:
    halflife_ns: int = option("60s", key="halflife", duration=True, help="EWMA half-life in event time")
    annualization: float = option(US_EQUITY_SECONDS_PER_YEAR, help="seconds per year used to annualize")

    def __post_init__(self) -> None:
        if self.halflife_ns <= 0:
            raise ConfigError("setting 'halflife' must be > 0, e.g. 60s")
        if self.annualization <= 0:
            raise ConfigError("setting 'annualization' must be > 0 (seconds per year), e.g. 5896800")


class Volatility(QuoteAnalysis[EwmaVariance]):
    """Annualized EWMA realized volatility of mid log-returns per instrument."""

    Params = VolatilityParams
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "250ms"}

    def new_state(self, symbol: str) -> EwmaVariance:
        return EwmaVariance(self.params.halflife_ns / 1e9)

    async def on_quote(self, quote: Quote, state: EwmaVariance) -> None:
        variance_per_s = state.add(quote.ts_event_ns, (quote.bid + quote.ask) / 2.0)
        if variance_per_s is None:
            return
        await self.data_cache.set(quote.symbol, "volatility", math.sqrt(variance_per_s * self.params.annualization))


if __name__ == "__main__":
    run_agent_module(Volatility)
