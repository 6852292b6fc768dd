"""An in-memory order client with the API of agents.trading.TradingClient, for unit tests of agent logic.

Orders are accepted at once (status ``new``); a test fills or rejects them with
:meth:`FakeTrading.fill` / :meth:`FakeTrading.reject`. The integration tests
use the real client and gateway instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.errors import OrderRejected

TERMINAL = ("filled", "canceled", "expired", "rejected", "replaced", "done_for_day")


@dataclass
class FakeOrder:
    client_order_id: str
    agent: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    limit_price: Decimal | None
    status: str = "new"
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    reject_reason: str = ""
    time_in_force: str = "day"

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL


@dataclass
class FakePosition:
    symbol: str
    qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)


@dataclass
class FakeTrading:
    agent: str = "test"
    orders: dict[str, FakeOrder] = field(default_factory=dict)
    book: dict[str, FakePosition] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    reject_next: str = ""
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _callbacks: list[Callable[[Any], Any]] = field(default_factory=list)

    # the TradingClient API ----------------------------------------------------

    async def submit_limit(self, symbol: str, side: str, qty: Any, limit_price: Any, *,
                           time_in_force: str = "day", client_order_id: str | None = None) -> str:
        return self._new(symbol, side, "limit", Decimal(str(qty)), Decimal(str(limit_price)), time_in_force,
                         client_order_id)

    async def submit_market(self, symbol: str, side: str, qty: Any, *, client_order_id: str | None = None) -> str:
        return self._new(symbol, side, "market", Decimal(str(qty)), None, "day", client_order_id)

    async def cancel(self, client_order_id: str) -> None:
        self.calls.append(("cancel", client_order_id))
        order = self.orders.get(client_order_id)
        if order is not None and order.is_open:
            order.status = "canceled"

    async def replace(self, client_order_id: str, *, qty: Any = None, limit_price: Any = None) -> str:
        self.calls.append(("replace", client_order_id))
        old = self.orders[client_order_id]
        if not old.is_open:
            raise OrderRejected(client_order_id, f"order is {old.status}")
        old.status = "replaced"
        return self._new(old.symbol, old.side, old.order_type, Decimal(str(qty)) if qty is not None else old.qty,
                         Decimal(str(limit_price)) if limit_price is not None else old.limit_price,
                         old.time_in_force, None, record=False)

    async def cancel_all(self, symbol: str | None = None) -> None:
        self.calls.append(("cancel_all", symbol))
        for order in self.orders.values():
            if order.is_open and symbol in (None, order.symbol):
                order.status = "canceled"

    async def open_orders(self, symbol: str | None = None) -> list[FakeOrder]:
        return [o for o in self.orders.values() if o.is_open and symbol in (None, o.symbol)]

    async def order(self, client_order_id: str) -> FakeOrder | None:
        return self.orders.get(client_order_id)

    async def position(self, symbol: str) -> FakePosition:
        return self.book.get(symbol, FakePosition(symbol))

    async def positions(self) -> dict[str, FakePosition]:
        return dict(self.book)

    async def wait_for(self, client_order_id: str, statuses: tuple[str, ...] = TERMINAL,
                       timeout_s: float = 5.0) -> FakeOrder:
        return self.orders[client_order_id]

    def on_update(self, callback: Callable[[Any], Any]) -> None:
        self._callbacks.append(callback)

    # test controls -----------------------------------------------------------

    def _new(self, symbol: str, side: str, order_type: str, qty: Decimal, limit_price: Decimal | None,
             time_in_force: str, client_order_id: str | None, record: bool = True) -> str:
        client_order_id = client_order_id or f"{self.agent}-{next(self._ids)}"
        order = FakeOrder(client_order_id, self.agent, symbol, side, order_type, qty, limit_price,
                          time_in_force=time_in_force)
        if self.reject_next:
            order.status, order.reject_reason, self.reject_next = "rejected", self.reject_next, ""
        self.orders[client_order_id] = order
        self.calls.append(("submit" if record else "replaced_by", client_order_id))
        return client_order_id

    def open(self, symbol: str | None = None) -> list[FakeOrder]:
        return [o for o in self.orders.values() if o.is_open and symbol in (None, o.symbol)]

    def fill(self, client_order_id: str, price: Decimal | None = None) -> None:
        """Fill an order completely and move the position (average price, realized PnL)."""
        order = self.orders[client_order_id]
        fill_price = price if price is not None else order.limit_price
        assert fill_price is not None
        order.status, order.filled_qty, order.filled_avg_price = "filled", order.qty, fill_price
        signed = order.qty if order.side == "buy" else -order.qty
        self.set_position(order.symbol, *apply_fill(self.book.get(order.symbol, FakePosition(order.symbol)),
                                                    signed, fill_price))

    def set_position(self, symbol: str, qty: Decimal | int | str, avg_price: Decimal | int | str = 0,
                     realized_pnl: Decimal | int | str = 0) -> None:
        self.book[symbol] = FakePosition(symbol, Decimal(str(qty)), Decimal(str(avg_price)),
                                         Decimal(str(realized_pnl)))


def apply_fill(pos: FakePosition, signed_qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    qty, avg, realized = pos.qty, pos.avg_price, pos.realized_pnl
    if qty == 0 or (qty > 0) == (signed_qty > 0):
        new_qty = qty + signed_qty
        return new_qty, (avg * qty + price * signed_qty) / new_qty, realized
    closed = min(abs(qty), abs(signed_qty))
    realized += closed * (price - avg) * (1 if qty > 0 else -1)
    new_qty = qty + signed_qty
    if new_qty == 0:
        return new_qty, Decimal(0), realized
    return new_qty, (avg if (new_qty > 0) == (qty > 0) else price), realized
