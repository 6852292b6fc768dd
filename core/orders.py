"""Orders, positions and intents: the values the gateway, brokers and agents share.

Quantities and prices are :class:`~decimal.Decimal`; in Redis they are plain
decimal strings so ``redis-cli HGETALL tf:order:<id>`` reads naturally. Status
names are Alpaca's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]

NEW = "new"
#: The owner of an order the gateway learnt of from the broker, not from an intent (placed by hand,
#: or restored after Redis lost its record); a replayed intent of its own agent claims it back.
EXTERNAL_AGENT = "external"
PENDING_NEW = "pending_new"
ACCEPTED = "accepted"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELED = "canceled"
REJECTED = "rejected"
PENDING_CANCEL = "pending_cancel"
PENDING_REPLACE = "pending_replace"
REPLACED = "replaced"
EXPIRED = "expired"
DONE_FOR_DAY = "done_for_day"

#: Statuses after which an order never changes again.
TERMINAL: frozenset[str] = frozenset({FILLED, CANCELED, REJECTED, REPLACED, EXPIRED, DONE_FOR_DAY})
#: Statuses of an order that may still trade.
OPEN: frozenset[str] = frozenset({NEW, PENDING_NEW, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL, PENDING_REPLACE,
                                  "accepted_for_bidding", "calculated", "held", "suspended", "stopped"})

ZERO = Decimal(0)


def to_decimal(value: object, name: str) -> Decimal:
    """A finite Decimal from a Decimal, int, str or float (floats via their shortest repr)."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not a number")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{name}: {value!r} must be finite")
    return number


def fmt(value: Decimal | None) -> str:
    """A Decimal as Redis stores it: plain notation, no exponent; None as ''."""
    if value is None:
        return ""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _opt_decimal(text: str | None) -> Decimal | None:
    return _finite(text) if text else None


def _finite(text: str | None) -> Decimal:
    """A stored number; a damaged hash (NaN, inf) raises ValueError rather than poisoning arithmetic later."""
    value = Decimal(text or 0)
    if not value.is_finite():
        raise ValueError(f"stored number {text!r} is not finite")
    return value


@dataclass(frozen=True, slots=True)
class Order:
    """One order's state, as stored in ``tf:order:<client_order_id>``."""

    client_order_id: str
    agent: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    time_in_force: str = "day"
    status: str = PENDING_NEW
    filled_qty: Decimal = ZERO
    filled_avg_price: Decimal | None = None
    reject_reason: str = ""
    created_ns: int = 0
    updated_ns: int = 0
    broker_order_id: str = ""
    fees: Decimal = ZERO
    replaces: str = ""
    replaced_by: str = ""

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def signed_remaining(self) -> Decimal:
        return self.remaining_qty if self.side == "buy" else -self.remaining_qty

    def evolve(self, **changes: object) -> Order:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_fields(self) -> dict[str, str]:
        return {
            "client_order_id": self.client_order_id, "agent": self.agent, "symbol": self.symbol,
            "side": self.side, "order_type": self.order_type, "qty": fmt(self.qty),
            "limit_price": fmt(self.limit_price), "time_in_force": self.time_in_force, "status": self.status,
            "filled_qty": fmt(self.filled_qty), "filled_avg_price": fmt(self.filled_avg_price),
            "reject_reason": self.reject_reason, "created_ns": str(self.created_ns),
            "updated_ns": str(self.updated_ns), "broker_order_id": self.broker_order_id, "fees": fmt(self.fees),
            "replaces": self.replaces, "replaced_by": self.replaced_by,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Order:
        """Inverse of :meth:`to_fields`; raises KeyError/ArithmeticError on a damaged hash."""
        side, order_type = fields["side"], fields["order_type"]
        if side not in ("buy", "sell") or order_type not in ("limit", "market"):
            raise ValueError(f"bad side/type {side!r}/{order_type!r}")
        return cls(
            client_order_id=fields["client_order_id"], agent=fields.get("agent", ""), symbol=fields["symbol"],
            side=side, order_type=order_type, qty=_finite(fields["qty"]),  # type: ignore[arg-type]
            limit_price=_opt_decimal(fields.get("limit_price")), time_in_force=fields.get("time_in_force", "day"),
            status=fields["status"], filled_qty=_finite(fields.get("filled_qty")),
            filled_avg_price=_opt_decimal(fields.get("filled_avg_price")),
            reject_reason=fields.get("reject_reason", ""), created_ns=int(fields.get("created_ns") or 0),
            updated_ns=int(fields.get("updated_ns") or 0), broker_order_id=fields.get("broker_order_id", ""),
            fees=_finite(fields.get("fees")), replaces=fields.get("replaces", ""),
            replaced_by=fields.get("replaced_by", ""),
        )

    def with_fill(self, qty: Decimal, price: Decimal, fee: Decimal, now_ns: int) -> Order:
        """This order after a fill of ``qty`` at ``price``."""
        filled = self.filled_qty + qty
        notional = self.filled_qty * (self.filled_avg_price or ZERO) + qty * price
        status = FILLED if filled >= self.qty else PARTIALLY_FILLED
        return self.evolve(filled_qty=filled, filled_avg_price=notional / filled, fees=self.fees + fee,
                           status=status, updated_ns=now_ns)


@dataclass(frozen=True, slots=True)
class Position:
    """Signed quantity (negative = short), average entry price, realized PnL net of fees."""

    symbol: str
    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    updated_ns: int = 0

    def to_fields(self) -> dict[str, str]:
        return {"symbol": self.symbol, "qty": fmt(self.qty), "avg_price": fmt(self.avg_price),
                "realized_pnl": fmt(self.realized_pnl), "fees": fmt(self.fees), "updated_ns": str(self.updated_ns)}

    @classmethod
    def from_fields(cls, symbol: str, fields: Mapping[str, str]) -> Position:
        """Raises ValueError/ArithmeticError on a damaged hash (a number that is not one, or not finite)."""
        if not fields:
            return cls(symbol)
        return cls(symbol, _finite(fields.get("qty")), _finite(fields.get("avg_price")),
                   _finite(fields.get("realized_pnl")), _finite(fields.get("fees")),
                   int(fields.get("updated_ns") or 0))

    def apply_fill(self, side: Side, qty: Decimal, price: Decimal, fee: Decimal, now_ns: int) -> Position:
        """The position after a fill: average cost on increase, realized PnL on decrease."""
        signed = qty if side == "buy" else -qty
        realized, avg = self.realized_pnl - fee, self.avg_price
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            new_qty = self.qty + signed
            avg = (abs(self.qty) * self.avg_price + qty * price) / abs(new_qty)
        else:
            closing = min(qty, abs(self.qty))
            direction = 1 if self.qty > 0 else -1
            realized += closing * (price - self.avg_price) * direction
            new_qty = self.qty + signed
            if new_qty == 0:
                avg = ZERO
            elif (new_qty > 0) != (self.qty > 0):  # flipped: the remainder opened at this price
                avg = price
        return Position(self.symbol, new_qty, avg, realized, self.fees + fee, now_ns)


IntentKind = Literal["submit", "cancel", "replace", "cancel_all"]


@dataclass(frozen=True, slots=True)
class Intent:
    """What an agent asks the gateway to do; one entry of ``tf:orders:intents``.

    ``submit`` carries a whole order; ``cancel`` names ``target``; ``replace``
    names ``target`` and the new order's ``client_order_id`` with the new
    ``qty`` and/or ``limit_price``; ``cancel_all`` cancels the open orders of
    ``agent`` (optionally one ``symbol``), or everyone's when sent by the operator
    on the operator stream (see docs/order-safety.md).
    """

    kind: IntentKind
    agent: str
    client_order_id: str = ""
    target: str = ""
    symbol: str = ""
    side: Side | None = None
    order_type: OrderType = "limit"
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    time_in_force: str = "day"
    ts_ns: int = 0
