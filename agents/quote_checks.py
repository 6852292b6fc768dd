"""How the analysis agents treat unusual quotes, decided in one place.

- one-sided (a price of 0 on a side): no mid exists; skipped.
- crossed (bid > ask): a stale or mid-update book; skipped, never averaged in.
- locked (bid == ask): a real if brief state; usable, with zero spread.
- zero size on either side: prices usable, sizes not (micro-price falls back to mid).

Usability is judged per agent, at conflation time: an agent's class says which
quotes it can use (``TradingAgent.usable_quotes``, a :class:`QuoteFilter`), and
the runtime keeps the newest quote that passes, so an unusable quote arriving
right behind usable ones never hides them (docs/data-quality.md). The filters
look at wire rows (``[ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size]``),
already validated by core.codec, so judging costs one comparison chain per message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.codec import Quote

ONE_SIDED = "one_sided"
CROSSED = "crossed"


def unusable_reason(quote: Quote) -> str | None:
    """Why a quote cannot give a mid, or None when it can."""
    if not quote.is_two_sided:
        return ONE_SIDED
    if quote.is_crossed:
        return CROSSED
    return None


def has_sizes(quote: Quote) -> bool:
    return quote.bid_size > 0.0 and quote.ask_size > 0.0


def _two_sided_uncrossed(row: list[Any]) -> bool:
    bid: float = row[2]
    ask: float = row[4]
    return 0.0 < bid <= ask  # ask > 0 follows; locked (bid == ask) is usable


@dataclass(frozen=True, slots=True)
class QuoteFilter:
    """Which quotes an agent can use; ``accepts_row`` None means every quote (no cost at all)."""

    name: str
    accepts_row: Callable[[list[Any]], bool] | None

    def accepts(self, quote: Quote) -> bool:
        return self.accepts_row is None or self.accepts_row(list(quote.to_row()))


#: Every valid quote, crossed and one-sided included (e.g. a crossed-market detector).
EVERY_QUOTE = QuoteFilter("every", None)
#: Quotes that give a mid: two-sided and not crossed (locked is fine). The analysis agents use it.
TWO_SIDED = QuoteFilter("two_sided", _two_sided_uncrossed)
