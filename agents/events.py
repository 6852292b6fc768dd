"""What ``run(data)`` receives besides a :class:`~core.codec.Quote`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.codec import Quote


@dataclass(frozen=True, slots=True)
class CacheUpdate:
    """Fields of ``tf:cache:<symbol>`` that another agent just wrote."""

    symbol: str
    fields: tuple[str, ...]
    ts_event_ns: int
    ts_recv_ns: int

    @property
    def instrument(self) -> str:
        return self.symbol


@dataclass(frozen=True, slots=True)
class Tick:
    """A periodic agent's scheduled run for an instrument that has no market data yet
    (or, with no instruments configured, for the agent as a whole: ``symbol`` is None)."""

    symbol: str | None
    scheduled_ns: int
    ts_event_ns: int

    @property
    def instrument(self) -> str | None:
        return self.symbol

    def __getitem__(self, field: str) -> Any:
        return getattr(self, field)


Event = Quote | CacheUpdate | Tick
