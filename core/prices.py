"""Two-sided prices: one value type for a quote's touch (risk) and an agent's target quotes (pricing)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.orders import ZERO, Side


@dataclass(frozen=True, slots=True)
class Level:
    """One side: a price and a quantity (0 when only the price is known)."""

    price: Decimal
    qty: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class BidAsk:
    """A bid and an ask; a side is None when there is nothing on it."""

    bid: Level | None
    ask: Level | None

    @classmethod
    def from_prices(cls, bid: Decimal, ask: Decimal) -> BidAsk:
        """From a quote's prices, where 0 (or less) means that side is empty."""
        return cls(Level(bid) if bid > 0 else None, Level(ask) if ask > 0 else None)

    def for_side(self, side: Side) -> Level | None:
        """The side an order of ``side`` rests on (a buy joins the bid)."""
        return self.bid if side == "buy" else self.ask

    def opposite(self, side: Side) -> Level | None:
        """The side an order of ``side`` would take (a buy takes the ask)."""
        return self.ask if side == "buy" else self.bid
