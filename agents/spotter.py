"""Spotter: fair price from quotes into ``tf:cache:<SYMBOL> fair_price``.

The fair price is the micro-price, the mid weighted by the size on the other
side: ``(bid * ask_size + ask * bid_size) / (bid_size + ask_size)``. A large
bid pushes it toward the ask. Without usable sizes it is the plain mid.
Crossed and one-sided quotes are never used: the runtime conflates to the
newest usable quote (``usable_quotes``, agents.quote_checks), so the cache
ends on the last usable quote even when an unusable one came right after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

from agents.base import TradingAgent
from agents.cli import run_agent_module
from agents.events import Event
from agents.quote_checks import TWO_SIDED, QuoteFilter, unusable_reason
from cache import DataCache
from core.codec import Quote


def micro_price(quote: Quote) -> float | None:
    """Size-weighted mid, plain mid without sizes, None for crossed or one-sided quotes.

    The tests of agents.quote_checks (unusable_reason, has_sizes) spelled out on locals: a run's
    cost was mostly their property lookups.
    """
    bid, ask = quote.bid, quote.ask
    if not 0.0 < bid <= ask:  # one-sided (a zero price) or crossed
        return None
    bid_size, ask_size = quote.bid_size, quote.ask_size
    if not (bid_size > 0.0 and ask_size > 0.0):
        return (bid + ask) / 2.0
    return (bid * ask_size + ask * bid_size) / (bid_size + ask_size)


class Spotter(TradingAgent):
    """Fair price (micro-price) per instrument."""

    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "100ms"}
    usable_quotes: ClassVar[QuoteFilter] = TWO_SIDED

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, data_cache, **kwargs)
        self.skipped: Counter[str] = Counter()

    async def run(self, data: Event) -> None:
        if not isinstance(data, Quote):
            return
        fair = micro_price(data)
        if fair is None:
            self.skipped[unusable_reason(data) or "?"] += 1
            return
        await self.data_cache.set(data.symbol, "fair_price", fair)


if __name__ == "__main__":
    run_agent_module(Spotter)
