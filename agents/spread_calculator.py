"""SpreadCalculator: rolling average bid-ask spread into ``tf:cache:<SYMBOL> spread``.

The average is over the quotes the agent ran on during the last ``window``
of event time (the quotes' own timestamps, not the clock). Which quotes it ran
on depends on conflation (throttle, load, replay speed), so the value is
path-dependent: docs/data-quality.md says when a replay matches a live session.
Also writes ``spread_bps`` (relative to the mid). Crossed and one-sided quotes
are never used (the runtime conflates to the newest usable quote); a locked
quote counts as a zero spread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.cli import run_agent_module
from agents.quote_analysis import QuoteAnalysis
from core.codec import Quote
from core.errors import ConfigError
from core.settings import option


class RollingMean:
    """Mean of the samples whose time is within ``window_ns`` of the newest one."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._samples: deque[tuple[int, float]] = deque()
        self._sum = 0.0

    def add(self, ts_ns: int, value: float) -> float:
        self._samples.append((ts_ns, value))
        self._sum += value
        cutoff_ns = ts_ns - self.window_ns
        while self._samples[0][0] < cutoff_ns:
            _, old = self._samples.popleft()
            self._sum -= old
        if len(self._samples) == 1:
            self._sum = value  # drop accumulated float error whenever the window empties
        return self._sum / len(self._samples)

    def __len__(self) -> int:
        return len(self._samples)


@dataclass(frozen=True, kw_only=True)
class SpreadParams:
    window_ns: int = option("60s", key="window", duration=True, help="rolling window of the average")

    def __post_init__(self) -> None:
        if self.window_ns <= 0:
            raise ConfigError("setting 'window' must be > 0, e.g. 60s")


class SpreadCalculator(QuoteAnalysis[RollingMean]):
    """Rolling average of the quoted spread per instrument."""

    Params = SpreadParams
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "100ms"}

    def new_state(self, symbol: str) -> RollingMean:
        return RollingMean(self.params.window_ns)

    async def on_quote(self, quote: Quote, state: RollingMean) -> None:
        spread = state.add(quote.ts_event_ns, quote.ask - quote.bid)
        mid = (quote.ask + quote.bid) / 2.0
        await self.data_cache.update(quote.symbol, {"spread": spread, "spread_bps": spread / mid * 1e4})


if __name__ == "__main__":
    run_agent_module(SpreadCalculator)
