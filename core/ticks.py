"""Alpaca's equity price grid and order-size limits, in one place.

Limit prices: 2 decimals at or above $1.00, 4 below (Alpaca answers a finer price with
422 "sub-penny increment does not fulfill minimum pricing criteria"; SEC Rule 612).
Quantities: up to 9 decimals; fractions only for market day orders on fractionable
assets, and at least $1 of notional. Sources are cited in docs/order-safety.md.

Every function here is total on finite Decimals: none can raise on a huge or tiny
value (quantizing 1e30 to a cent overflows the default context; these never quantize).
"""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
ONE_DOLLAR = Decimal(1)
#: The largest limit price accepted at all ($1M: above the dearest US share).
MAX_PRICE = Decimal(1_000_000)
#: The largest quantity accepted at all, and Alpaca's quantity precision.
MAX_QTY = Decimal(1_000_000_000)
MAX_QTY_DECIMALS = 9
#: Alpaca's smallest fractional order: $1 of notional.
MIN_FRACTIONAL_NOTIONAL = ONE_DOLLAR


def decimals(value: Decimal) -> int:
    """Digits after the decimal point once trailing zeros are dropped (100 -> 0, 1.50 -> 1, 0 -> 0)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN / infinity: on no grid
        return 10**9
    text = "".join(map(str, digits))
    significant = text.rstrip("0")
    if not significant:
        return 0
    return max(0, -(exponent + len(text) - len(significant)))


def tick_size(price: Decimal) -> Decimal:
    """The minimum price increment Alpaca accepts at ``price``."""
    return CENT if price >= ONE_DOLLAR else SUB_PENNY


def price_decimals(price: Decimal) -> int:
    return 2 if price >= ONE_DOLLAR else 4


def on_tick_grid(price: Decimal) -> bool:
    return decimals(price) <= price_decimals(price)


def is_fractional(qty: Decimal) -> bool:
    return decimals(qty) > 0


def tick_violation(price: Decimal) -> str | None:
    """Why ``price`` is not an Alpaca limit price, or None."""
    if on_tick_grid(price):
        return None
    places = price_decimals(price)
    where = "at or above $1" if places == 2 else "below $1"
    return f"limit price {price} is off the tick grid: Alpaca allows {places} decimals {where}"
