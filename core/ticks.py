"""Alpaca's equity price grid, in one place: 2 decimals at or above $1, 4 below."""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
ONE_DOLLAR = Decimal(1)


def tick_size(price: Decimal) -> Decimal:
    """The minimum price increment Alpaca accepts at ``price``."""
    return CENT if price >= ONE_DOLLAR else SUB_PENNY


def on_tick_grid(price: Decimal) -> bool:
    return price == price.quantize(tick_size(price))
