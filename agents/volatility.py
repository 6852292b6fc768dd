"""Volatility: realized volatility of mid log-returns into ``tf:cache:<SYMBOL> volatility``.

Each run takes the log-return of the mid since the previous run,
``r = ln(mid / prev_mid)``, over the event-time gap ``dt`` (seconds), and
updates an exponentially weighted variance rate with a time-based decay::

    alpha = 1 - exp(-dt * ln 2 / halflife)
    var   = (1 - alpha) * var + alpha * r**2 / dt        (first return: var = r**2 / dt)

``volatility = sqrt(var * annualization)`` with ``annualization`` in seconds per
year: 5,896,800 by default (252 trading days of 6.5 hours, US equities);
use 31,536,000 for markets that trade around the clock. Quotes with the same
timestamp as the previous sample are folded into the next return; crossed and
one-sided quotes are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.base import TradingAgent
from agents.cli import run_agent_module
from agents.events import Event
from agents.quote_checks import unusable_reason
from cache import DataCache
from core.codec import Quote
from core.errors import ConfigError
from core.settings import option

US_EQUITY_SECONDS_PER_YEAR = 252 * 6.5 * 3600


class EwmaVariance:
    """Time-decayed EWMA of squared log-returns per second."""

    def __init__(self, halflife_s: float) -> None:
        self._decay_per_s = math.log(2) / halflife_s
        self.prev_mid: float | None = None
        self.prev_ts_ns = 0
        self.variance_per_s: float | None = None
        self.returns = 0

    def add(self, ts_ns: int, mid: float) -> float | None:
        """Feed a mid; returns the variance rate (per second) once there is a return."""
        if self.prev_mid is None:
            self.prev_mid, self.prev_ts_ns = mid, ts_ns
            return None
        dt_s = (ts_ns - self.prev_ts_ns) / 1e9
        if dt_s <= 0:
            return self.variance_per_s
        rate = math.log(mid / self.prev_mid) ** 2 / dt_s
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


class Volatility(TradingAgent):
    """Annualized EWMA realized volatility of mid log-returns per instrument."""

    Params = VolatilityParams
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "250ms"}

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, data_cache, **kwargs)
        self._estimators: dict[str, EwmaVariance] = {}

    async def run(self, data: Event) -> None:
        if not isinstance(data, Quote) or unusable_reason(data) is not None:
            return
        estimator = self._estimators.setdefault(data.symbol, EwmaVariance(self.params.halflife_ns / 1e9))
        variance_per_s = estimator.add(data.ts_event_ns, (data.bid + data.ask) / 2.0)
        if variance_per_s is None:
            return
        await self.data_cache.set(data.symbol, "volatility", math.sqrt(variance_per_s * self.params.annualization))


if __name__ == "__main__":
    run_agent_module(Volatility)
