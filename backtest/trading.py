"""The agent's order client in a backtest: the API of agents.trading.TradingClient, in virtual time.

Requests become the same intent fields a live agent appends to ``tf:orders:intents``
and reach the engine's gateway after ``intent_latency``; state is read from the
in-memory order store the gateway writes; updates arrive as the same JSON
messages on the exec channel. Differences from live, on purpose: client order
ids are ``<agent>-<n>`` (live adds a random part, which would break
byte-identical runs) and ``wait_for`` times out in data time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from decimal import Decimal
from typing import Any, Literal

from cache.memory import MemoryRedis
from core.clock import VirtualClock
from core.errors import OrderRejected
from core.intents import encode_intent, refusal_key
from core.keys import Keys
from core.orders import TERMINAL, Intent, Order, Position, to_decimal

log = logging.getLogger(__name__)

Number = Decimal | int | str | float
UpdateCallback = Callable[[Order], Awaitable[None] | None]
SendIntent = Callable[[dict[str, str]], None]


def _quantity(value: Number, name: str) -> Decimal:
    number = to_decimal(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


class BacktestTradingClient:
    """One agent's view of the simulated account."""

    def __init__(self, memory: MemoryRedis, keys: Keys, agent_name: str, clock: VirtualClock, store: Any,
                 send: SendIntent) -> None:
        self._memory = memory
        self._keys = keys
        self.agent_name = agent_name
        self._clock = clock
        self._store = store
        self._send_intent = send
        self._counter = itertools.count(1)
        self._callbacks: list[UpdateCallback] = []
        self._waiters: dict[str, asyncio.Event] = {}
        self._rejections: dict[str, str] = {}  # core.intents.refusal_key -> the gateway's reason, as live
        self._updates: deque[Order] = deque()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        memory.subscribe(keys.exec_channel(), self._on_exec)

    def new_client_order_id(self) -> str:
        return f"{self.agent_name}-{next(self._counter)}"

    # requests -------------------------------------------------------------------------

    async def submit_limit(self, symbol: str, side: Literal["buy", "sell"], qty: Number, limit_price: Number, *,
                           time_in_force: str = "day", client_order_id: str | None = None) -> str:
        coid = client_order_id or self.new_client_order_id()
        self._send(Intent("submit", self.agent_name, client_order_id=coid, symbol=symbol.upper(), side=side,
                          order_type="limit", qty=_quantity(qty, "qty"),
                          limit_price=_quantity(limit_price, "limit_price"), time_in_force=time_in_force))
        return coid

    async def submit_market(self, symbol: str, side: Literal["buy", "sell"], qty: Number, *,
                            client_order_id: str | None = None) -> str:
        coid = client_order_id or self.new_client_order_id()
        self._send(Intent("submit", self.agent_name, client_order_id=coid, symbol=symbol.upper(), side=side,
                          order_type="market", qty=_quantity(qty, "qty")))
        return coid

    async def cancel(self, client_order_id: str) -> None:
        self._send(Intent("cancel", self.agent_name, target=client_order_id))

    async def replace(self, client_order_id: str, *, qty: Number | None = None,
                      limit_price: Number | None = None) -> str:
        if qty is None and limit_price is None:
            raise ValueError("replace needs qty and/or limit_price")
        coid = self.new_client_order_id()
        self._send(Intent("replace", self.agent_name, client_order_id=coid, target=client_order_id,
                          qty=None if qty is None else _quantity(qty, "qty"),
                          limit_price=None if limit_price is None else _quantity(limit_price, "limit_price")))
        return coid

    async def cancel_all(self, symbol: str | None = None) -> None:
        self._send(Intent("cancel_all", self.agent_name, symbol=(symbol or "").upper()))

    def _send(self, intent: Intent) -> None:
        # a new intent for the id: as live
        self._rejections.pop(refusal_key(intent.kind, intent.client_order_id, intent.target), None)
        self._send_intent(encode_intent(dataclasses.replace(intent, ts_ns=self._clock.time_ns())))

    # state ------------------------------------------------------------------------------

    async def order(self, client_order_id: str) -> Order | None:
        cached = self._store.open.get(client_order_id)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        fields = await self._memory.hgetall(self._keys.order(client_order_id))
        return Order.from_fields(fields) if fields else None

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = sorted(self._store.open.values(), key=lambda o: o.client_order_id)
        return [o for o in orders if o.agent == self.agent_name and (symbol is None or o.symbol == symbol.upper())]

    async def position(self, symbol: str) -> Position:
        return self._store.position(symbol.upper())  # type: ignore[no-any-return]

    async def positions(self) -> dict[str, Position]:
        return dict(sorted(self._store.positions.items()))

    # updates ------------------------------------------------------------------------------

    async def wait_for(self, client_order_id: str, statuses: Collection[str] = TERMINAL,
                       timeout_s: float = 5.0) -> Order:
        """The order once its status is in ``statuses``; TimeoutError after ``timeout_s`` of data time."""
        deadline_ns = self._clock.monotonic_ns() + int(timeout_s * 1e9)
        event = self._waiters.setdefault(client_order_id, asyncio.Event())
        try:
            while True:
                event.clear()
                if (reason := self.rejection(client_order_id)) is not None:
                    raise OrderRejected(client_order_id, reason)
                order = await self.order(client_order_id)
                if order is not None and order.status in statuses:
                    return order  # even after a refused cancel, as live
                if (reason := self.rejection(client_order_id, cancel=True)) is not None:
                    raise OrderRejected(client_order_id, reason)
                if self._clock.monotonic_ns() >= deadline_ns:
                    state = order.status if order else "unknown to the gateway"
                    raise TimeoutError(f"order {client_order_id} still {state} after {timeout_s}s")
                await _first(event.wait(), self._clock.sleep_until_ns(deadline_ns))
        finally:
            self._waiters.pop(client_order_id, None)

    def on_update(self, callback: UpdateCallback) -> None:
        self._callbacks.append(callback)

    def rejection(self, client_order_id: str, *, cancel: bool = False) -> str | None:
        """As :meth:`agents.trading.TradingClient.rejection`."""
        return self._rejections.get(refusal_key("cancel" if cancel else "", client_order_id, client_order_id))

    def _on_exec(self, channel: str, message: Any) -> None:
        fields = json.loads(message)
        if fields.get("event") == "intent_rejected":  # no order to build: a refusal, as agents.trading handles it
            self._on_refusal(fields)
            return
        if not self._callbacks and not self._waiters:
            return
        waiter = self._waiters.get(fields.get("client_order_id", ""))
        if waiter is not None:
            waiter.set()
        if fields.get("agent") != self.agent_name or not self._callbacks:
            return
        self._updates.append(Order.from_fields(fields))
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name=f"{self.agent_name}:trading-updates")
        self._wake.set()

    def _on_refusal(self, fields: dict[str, Any]) -> None:
        if fields.get("agent") != self.agent_name:
            return
        key = refusal_key(str(fields.get("kind", "")), str(fields.get("client_order_id") or ""),
                          str(fields.get("target") or ""))
        if key:
            self._rejections[key] = str(fields.get("reason", ""))
            waiter = self._waiters.get(str(fields.get("target") or "") if fields.get("kind") == "cancel" else key)
            if waiter is not None:
                waiter.set()

    async def _dispatch(self) -> None:
        """Callbacks run one at a time in event order, like the live listener task."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._updates:
                order = self._updates.popleft()
                for callback in self._callbacks:
                    try:
                        result = callback(order)
                        if inspect.isawaitable(result):
                            await result
                    except Exception:
                        log.exception("order-update callback of %s failed", self.agent_name)

    async def aclose(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None


async def _first(*coros: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
