"""How the analysis agents treat unusual quotes, decided in one place.

- one-sided (a price of 0 on a side): no mid exists; skipped.
- crossed (bid > ask): a stale or mid-update book; skipped, never averaged in.
- locked (bid == ask): a real if brief state; usable, with zero spread.
- zero size on either side: prices usable, sizes not (micro-price falls back to mid).
"""

from __future__ import annotations

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
