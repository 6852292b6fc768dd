"""SpreadCalculator: rolling average bid-ask spread into ``tf:cache:<SYMBOL> spread``.

The average is over the quotes the agent ran on during the last ``window``
of event time (the quotes' own timestamps, so replays give the same result).
Also writes ``spread_bps`` (relative to the mid). Crossed and one-sided quotes
are skipped; a locked quote counts as a zero spread.
"""

from __future__ import annotations

from collections import deque
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


class SpreadCalculator(TradingAgent):
    """Rolling average of the quoted spread per instrument."""

    Params = SpreadParams
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "100ms"}

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, data_cache, **kwargs)
        self._means: dict[str, RollingMean] = {}

    async def run(self, data: Event) -> None:
        if not isinstance(data, Quote) or unusable_reason(data) is not None:
            return
        mean = self._means.setdefault(data.symbol, RollingMean(self.params.window_ns))
        spread = mean.add(data.ts_event_ns, data.ask - data.bid)
        mid = (data.ask + data.bid) / 2.0
        await self.data_cache.update(data.symbol, {"spread": spread, "spread_bps": spread / mid * 1e4})


if __name__ == "__main__":
    run_agent_module(SpreadCalculator)
