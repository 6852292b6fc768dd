"""Pure pricing for the market-making agents: ticks, target quotes, when to requote.

Prices are :class:`~decimal.Decimal` on Alpaca's equity tick grid: 2 decimals
at or above $1, 4 decimals below. Bids round down and asks round up, so
rounding never narrows a quote below the width that was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum
from typing import Literal

from core.prices import BidAsk, Level
from core.ticks import CENT, tick_size

__all__ = ["Action", "BidAsk", "Level", "QuoteRules", "TargetQuotes", "plan_side", "round_through", "round_to_tick",
           "target_quotes", "to_decimal"]

Side = Literal["buy", "sell"]

ONE = Decimal(1)
ZERO = Decimal(0)


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """A float through its shortest repr (``0.1`` -> ``Decimal('0.1')``, not the binary expansion)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def round_to_tick(price: Decimal, side: Side) -> Decimal:
    """Round onto the tick grid: down for a buy, up for a sell (the less aggressive way)."""
    rounding = ROUND_FLOOR if side == "buy" else ROUND_CEILING
    tick = tick_size(price)
    rounded = price.quantize(tick, rounding=rounding)  # its exponent is the tick's
    if tick != CENT and rounded >= ONE:
        # a sub-dollar price rounded up to $1 or more must use the 2-decimal grid
        rounded = rounded.quantize(CENT, rounding=rounding)
    return rounded


def round_through(price: Decimal, side: Side) -> Decimal:
    """Round onto the tick grid the aggressive way (up for a buy): for marketable orders."""
    return round_to_tick(price, "sell" if side == "buy" else "buy")


#: The quotes an agent wants to work: the same two-sided value the gateway's risk checks use.
TargetQuotes = BidAsk


@dataclass(frozen=True, slots=True)
class QuoteRules:
    """How quotes are placed around fair price (all in dollars and shares)."""

    quote_size: Decimal
    min_spread: Decimal
    skew_per_share: Decimal
    max_inventory: Decimal


def target_quotes(fair: Decimal, spread: Decimal, inventory: Decimal, rules: QuoteRules, *,
                  reduce_only: bool = False) -> TargetQuotes:
    """The bid and ask to work now.

    Centered on ``fair`` shifted against inventory (long -> lower, so the ask
    fills sooner and the bid later), ``max(spread, min_spread)`` wide. A side
    whose fill would take ``|inventory|`` beyond ``max_inventory`` is sized down
    to what is left, or dropped; with ``reduce_only`` only the side that
    shrinks the position is quoted, at most the position's size.
    """
    half_width = max(spread, rules.min_spread) / 2
    center = fair - rules.skew_per_share * inventory
    bid_qty = _whole(min(rules.quote_size, rules.max_inventory - inventory))
    ask_qty = _whole(min(rules.quote_size, rules.max_inventory + inventory))
    if reduce_only:
        bid_qty = _whole(min(bid_qty, -inventory))
        ask_qty = _whole(min(ask_qty, inventory))
    bid_price = round_to_tick(center - half_width, "buy")
    ask_price = round_to_tick(center + half_width, "sell")
    bid = Level(bid_price, bid_qty) if bid_qty > 0 and bid_price > 0 else None
    ask = Level(ask_price, ask_qty) if ask_qty > 0 and ask_price > 0 else None
    return TargetQuotes(bid, ask)


def _whole(qty: Decimal) -> Decimal:
    """Whole shares, never negative (Alpaca limit orders with fractions are restricted)."""
    return max(qty.to_integral_value(rounding=ROUND_FLOOR), ZERO)


class Action(Enum):
    HOLD = "hold"
    SUBMIT = "submit"
    REPLACE = "replace"
    CANCEL = "cancel"


def plan_side(working: Level | None, target: Level | None, tolerance: Decimal) -> Action:
    """What to do with one side: keep a quote until the target moved more than ``tolerance``."""
    if target is None:
        return Action.CANCEL if working is not None else Action.HOLD
    if working is None:
        return Action.SUBMIT
    if abs(target.price - working.price) > tolerance or target.qty != working.qty:
        return Action.REPLACE
    return Action.HOLD
