"""A position's value at a quote, the one rule the equity curve and positions.csv share.

The mark is the quote's mid (None without a two-sided quote). An OCC option symbol
(``AAPL240621C00190000``) is priced per share while one contract is
``contract_multiplier`` shares, as the PnL agent values it (agents/pnl.py): its
unrealized PnL and its realized PnL before fees (the order store keeps both per
share; fees are dollars) are scaled by the multiplier; other symbols by 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from agents.greeks import parse_occ
from agents.pnl import realized_dollars
from core.codec import Quote
from core.orders import Position

ONE = Decimal(1)


def mark_of(quote: Quote | None) -> Decimal | None:
    """The mid as a Decimal (through its shortest float repr), or None without a two-sided quote."""
    if quote is None or not quote.is_two_sided:
        return None
    return Decimal(repr((quote.bid + quote.ask) / 2))


@dataclass(frozen=True, slots=True)
class Multipliers:
    """Shares per unit of each symbol: ``contract_multiplier`` for OCC options, 1 otherwise."""

    contract_multiplier: Decimal
    _known: dict[str, Decimal]

    @classmethod
    def of(cls, contract_multiplier: float) -> Multipliers:
        return cls(Decimal(repr(float(contract_multiplier))), {})

    def __call__(self, symbol: str) -> Decimal:
        found = self._known.get(symbol)
        if found is None:
            found = self._known[symbol] = self.contract_multiplier if parse_occ(symbol) else ONE
        return found

    def realized(self, position: Position) -> Decimal:
        """Realized PnL net of fees in dollars, as the PnL agent values it."""
        return realized_dollars(position, self(position.symbol))

    def unrealized(self, position: Position, mark: Decimal | None) -> Decimal | None:
        """Unrealized PnL at ``mark`` in dollars; None for an open position without a mark."""
        if mark is None:
            return None
        return position.qty * (mark - position.avg_price) * self(position.symbol)

    def cost(self, position: Position) -> Decimal:
        """What the position cost at its average price, in dollars."""
        return position.qty * position.avg_price * self(position.symbol)
