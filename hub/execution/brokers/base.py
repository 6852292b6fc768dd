"""What a broker is to the gateway.

The gateway has already passed the order through risk and holds the only
writer of order state (:class:`~hub.execution.store.OrderStore`); a broker
turns requests into broker-side actions and reports every change through the
store. ``resume`` is called for an order the store knows as ``pending_new``
when its intent is replayed after a crash: the broker finds out whether the
order reached it and finishes the job, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from core.errors import OrderError
from core.orders import Order


class BrokerUnavailable(OrderError):
    """The broker could not be reached; the intent stays pending and is retried."""


class Broker(Protocol):
    async def start(self) -> None:
        """Connect and reconcile the store with the broker's view of the account."""

    async def run(self, stop: asyncio.Event) -> None:
        """Background work (quote matching, order-update stream) until ``stop``."""

    async def submit(self, order: Order) -> None: ...

    async def resume(self, order: Order) -> None: ...

    async def cancel(self, order: Order) -> None: ...

    async def replace(self, old: Order, new: Order) -> None: ...

    async def cancel_all(self, orders: Sequence[Order]) -> None:
        """Cancel these orders (all of the account's open orders when the list is the whole book)."""

    async def fractionable(self, symbol: str) -> bool:
        """Whether the broker trades fractional shares of ``symbol`` (asked only for fractional orders)."""

    async def close(self) -> None: ...

    def status(self) -> Mapping[str, str | int | float]: ...
