"""The scaffold the per-instrument analysis agents share: usable quotes only, one state per symbol.

A subclass says how to start a symbol's state (``new_state``) and what to do
with one usable quote (``on_quote``); this class keeps the states and skips
events that are not usable quotes. Its ``usable_quotes`` filter makes the
runtime conflate to the newest two-sided, uncrossed quote (agents.quote_checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from agents.base import TradingAgent
from agents.events import Event
from agents.quote_checks import TWO_SIDED, QuoteFilter
from cache import DataCache
from core.codec import Quote

StateT = TypeVar("StateT")


class QuoteAnalysis(TradingAgent, Generic[StateT]):
    """Runs ``on_quote(quote, state)`` on every usable quote, with the quote's symbol's state."""

    usable_quotes: ClassVar[QuoteFilter] = TWO_SIDED

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, data_cache, **kwargs)
        self.states: dict[str, StateT] = {}

    def new_state(self, symbol: str) -> StateT:
        """The state of a symbol seen for the first time."""
        raise NotImplementedError(f"{type(self).__name__} must implement new_state(symbol)")

    async def on_quote(self, quote: Quote, state: StateT) -> None:
        """One usable quote, with its symbol's state (mutate it in place)."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_quote(quote, state)")

    async def run(self, data: Event) -> None:
        # the filter already did this for quotes from the bus; run() may also be called directly
        if not isinstance(data, Quote) or not 0.0 < data.bid <= data.ask:  # unusable_reason(data), inlined
            return
        state = self.states.get(data.symbol)
        if state is None:
            state = self.states[data.symbol] = self.new_state(data.symbol)
        await self.on_quote(data, state)
