"""The agent's order client: every call goes through the execution gateway.

Requests are intents appended to the ``tf:orders:intents`` stream (durable:
the gateway handles each exactly once, even across its restarts); state is read
from the hashes the gateway writes (``tf:order:<id>``, ``tf:position:<SYMBOL>``);
updates arrive on the exec channel. Agents never hold broker keys.

    coid = await self.trading.submit_limit("AAPL", "buy", 10, 187.25)
    order = await self.trading.wait_for(coid, {"new", "filled", "rejected"})

An intent the gateway refuses without an order of its own (a ``client_order_id`` already
used for a different order, a cancel of another agent's order, an unknown order) comes
back as an ``intent_rejected`` event: ``wait_for`` on that id raises
:class:`~core.errors.OrderRejected` with the gateway's reason, and :meth:`rejection`
returns it. The client listens before its first intent goes out, so no such event is
missed while the connection holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Collection
from decimal import Decimal
from typing import Any, Literal

import redis.asyncio as aioredis

from core.clock import Clock, SystemClock
from core.errors import OrderRejected
from core.intents import encode_intent, refusal_key, replace_difference, submit_difference
from core.keys import Keys
from core.orders import REJECTED, TERMINAL, Intent, Order, Position, to_decimal
from core.pubsub import follow_channels

__all__ = ["TERMINAL", "Order", "OrderRejected", "Position", "TradingClient"]

log = logging.getLogger(__name__)

#: Intents kept on the stream (approximately); handled ones are only history.
INTENTS_MAXLEN = 100_000
#: Sent intents and refusals remembered per client (oldest forgotten first).
MEMORY = 10_000
Number = Decimal | int | str | float
UpdateCallback = Callable[[Order], Awaitable[None] | None]


def _quantity(value: Number, name: str) -> Decimal:
    number = to_decimal(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


class TradingClient:
    """One agent's view of the account, through the gateway."""

    def __init__(self, client: aioredis.Redis, keys: Keys, agent_name: str, clock: Clock | None = None) -> None:
        self._client = client
        self._keys = keys
        self.agent_name = agent_name
        self._clock = clock or SystemClock()
        self._prefix = f"{agent_name}-{uuid.uuid4().hex[:8]}-"
        self._counter = itertools.count(1)
        self._callbacks: list[UpdateCallback] = []
        self._waiters: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._sent: dict[str, Intent] = {}  # client_order_id -> the submit/replace this client sent with it
        self._rejections: dict[str, str] = {}  # core.intents.refusal_key -> the gateway's reason
        self._sent_ns: dict[str, int] = {}  # the same key -> ts_ns of this client's last intent for it

    def new_client_order_id(self) -> str:
        """Unique across restarts (random per client) and readable (agent name first)."""
        return f"{self._prefix}{next(self._counter)}"

    # requests ---------------------------------------------------------------------------

    async def submit_limit(self, symbol: str, side: Literal["buy", "sell"], qty: Number, limit_price: Number, *,
                           time_in_force: str = "day", client_order_id: str | None = None) -> str:
        coid = client_order_id or self.new_client_order_id()
        await self._send(Intent("submit", self.agent_name, client_order_id=coid, symbol=symbol.upper(), side=side,
                                order_type="limit", qty=_quantity(qty, "qty"),
                                limit_price=_quantity(limit_price, "limit_price"), time_in_force=time_in_force))
        return coid

    async def submit_market(self, symbol: str, side: Literal["buy", "sell"], qty: Number, *,
                            client_order_id: str | None = None) -> str:
        coid = client_order_id or self.new_client_order_id()
        await self._send(Intent("submit", self.agent_name, client_order_id=coid, symbol=symbol.upper(), side=side,
                                order_type="market", qty=_quantity(qty, "qty")))
        return coid

    async def cancel(self, client_order_id: str) -> None:
        await self._send(Intent("cancel", self.agent_name, target=client_order_id))

    async def replace(self, client_order_id: str, *, qty: Number | None = None,
                      limit_price: Number | None = None) -> str:
        if qty is None and limit_price is None:
            raise ValueError("replace needs qty and/or limit_price")
        coid = self.new_client_order_id()
        await self._send(Intent(
            "replace", self.agent_name, client_order_id=coid, target=client_order_id,
            qty=None if qty is None else _quantity(qty, "qty"),
            limit_price=None if limit_price is None else _quantity(limit_price, "limit_price")))
        return coid

    async def cancel_all(self, symbol: str | None = None) -> None:
        """Cancel every open order of this agent (optionally one symbol's)."""
        await self._send(Intent("cancel_all", self.agent_name, symbol=(symbol or "").upper()))

    async def _send(self, intent: Intent) -> None:
        await self._ensure_listener()  # subscribed before the intent goes out: a refusal cannot be missed
        key = refusal_key(intent.kind, intent.client_order_id, intent.target)
        self._rejections.pop(key, None)
        if intent.client_order_id:
            _remember(self._sent, intent.client_order_id, intent)
        stamped = dataclasses.replace(intent, ts_ns=self._clock.time_ns())
        _remember(self._sent_ns, key, stamped.ts_ns)
        await self._client.xadd(self._keys.order_intents(), encode_intent(stamped), maxlen=INTENTS_MAXLEN,
                                approximate=True)

    # state ----------------------------------------------------------------------------------

    async def order(self, client_order_id: str) -> Order | None:
        fields = await self._client.hgetall(self._keys.order(client_order_id))
        return Order.from_fields(fields) if fields else None

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        ids = sorted(await self._client.smembers(self._keys.open_orders()))
        pipe = self._client.pipeline(transaction=False)
        for coid in ids:
            pipe.hgetall(self._keys.order(coid))
        orders = [o for o in map(_readable_order, await pipe.execute()) if o is not None]
        return [o for o in orders if o.is_open and o.agent == self.agent_name
                and (symbol is None or o.symbol == symbol.upper())]

    async def position(self, symbol: str) -> Position:
        symbol = symbol.upper()
        return Position.from_fields(symbol, await self._client.hgetall(self._keys.position(symbol)))

    async def positions(self) -> dict[str, Position]:
        prefix = self._keys.position("")
        result = {}
        async for key in self._client.scan_iter(match=self._keys.position_pattern(), count=500):
            symbol = key[len(prefix):]
            result[symbol] = Position.from_fields(symbol, await self._client.hgetall(key))
        return result

    # updates --------------------------------------------------------------------------------

    def rejection(self, client_order_id: str, *, cancel: bool = False) -> str | None:
        """The gateway's reason if it refused this client's last submit/replace with this id (with
        ``cancel=True``: its last cancel of this order)."""
        return self._rejections.get(refusal_key("cancel" if cancel else "", client_order_id, client_order_id))

    async def wait_for(self, client_order_id: str, statuses: Collection[str] = TERMINAL,
                       timeout_s: float = 5.0) -> Order:
        """The order once its status is one of ``statuses``; TimeoutError after ``timeout_s``.

        Raises :class:`OrderRejected` when the gateway refused this client's intent for the id
        without an order of its own (e.g. the id was already used for a different order), or refused
        its cancel of the order and the order is not (yet) in ``statuses``."""
        await self._ensure_listener()
        event = self._waiters.setdefault(client_order_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                event.clear()
                self._raise_if_refused(client_order_id)
                order = await self.order(client_order_id)  # read after subscribing: no update is missed
                foreign = order is not None and self._not_ours(order)
                if order is not None and order.status in statuses and not foreign:
                    return order  # even after a refused cancel: the order did what was waited for
                self._raise_if_refused(client_order_id, cancel=True)
                remaining_s = deadline - loop.time()
                if remaining_s <= 0:
                    if foreign:
                        raise OrderRejected(client_order_id, "the id belongs to a different order")
                    state = order.status if order else "unknown to the gateway"
                    raise TimeoutError(f"order {client_order_id} still {state} after {timeout_s}s")
                with contextlib.suppress(TimeoutError):
                    # The poll bound covers a lost pub/sub message.
                    await asyncio.wait_for(event.wait(), min(remaining_s, 0.5))
        finally:
            self._waiters.pop(client_order_id, None)

    def _raise_if_refused(self, client_order_id: str, *, cancel: bool = False) -> None:
        reason = self.rejection(client_order_id, cancel=cancel)
        if reason is not None:
            raise OrderRejected(client_order_id, reason)

    def _not_ours(self, order: Order) -> bool:
        """True when the stored order is not the one this client asked for under that id."""
        sent = self._sent.get(order.client_order_id)
        if sent is None or (order.status == REJECTED and order.agent == self.agent_name):
            return False  # a rejected intent of ours is stored with what could be read of it
        differ = submit_difference if sent.kind == "submit" else replace_difference
        return differ(sent, order) is not None

    def on_update(self, callback: UpdateCallback) -> None:
        """Call ``callback(order)`` on every update of this agent's orders."""
        self._callbacks.append(callback)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not in a loop yet: the next request starts listening
        if self._listener is None:
            self._start_listener()

    def _start_listener(self) -> asyncio.Task[None]:
        self._listener = asyncio.create_task(self._listen(), name=f"{self.agent_name}:trading-updates")
        return self._listener

    async def _ensure_listener(self) -> None:
        listener = self._listener
        if listener is None or listener.done():  # a listener lost with its connection restarts
            listener = self._start_listener()
        if self._subscribed.is_set():
            return
        subscribed = asyncio.ensure_future(self._subscribed.wait())
        await asyncio.wait({listener, subscribed}, return_when=asyncio.FIRST_COMPLETED)
        if not subscribed.done():  # the listener ended before subscribing: its error is ours
            subscribed.cancel()
            listener.result()

    async def _listen(self) -> None:
        # through a failover: subscribed again on the new master (updates in between are in the order hashes)
        await follow_channels(self._client, [self._keys.exec_channel()], self._dispatch,
                              on_subscribed=self._on_subscribed, on_lost=self._subscribed.clear)

    async def _on_subscribed(self) -> None:
        self._subscribed.set()

    async def _dispatch(self, data: Any) -> None:
        try:
            fields = json.loads(data)
            coid = fields["client_order_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("skipping a malformed execution message")
            return
        if fields.get("event") == "intent_rejected":
            return self._on_refusal(fields)
        waiter = self._waiters.get(coid)
        if waiter is not None:
            waiter.set()
        if fields.get("agent") != self.agent_name or not self._callbacks:
            return None
        try:
            order = Order.from_fields(fields)
        except (KeyError, ValueError, ArithmeticError):
            log.warning("skipping a malformed execution message")
            return None
        for callback in self._callbacks:
            try:
                result = callback(order)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a buggy callback must not stop updates to the others
                log.exception("order-update callback failed (pid %d)", os.getpid())
        return None

    def _on_refusal(self, fields: dict[str, Any]) -> None:
        if fields.get("agent") != self.agent_name:
            return
        key = refusal_key(str(fields.get("kind", "")), str(fields.get("client_order_id") or ""),
                          str(fields.get("target") or ""))
        sent_ns = self._sent_ns.get(key)
        if not key or sent_ns is None or str(sent_ns) != str(fields.get("intent_ts_ns")):
            return  # not this client's intent (another client of the same agent, or an older one)
        _remember(self._rejections, key, str(fields.get("reason", "")))
        waiter = self._waiters.get(str(fields.get("target") or "") if fields.get("kind") == "cancel" else key)
        if waiter is not None:
            waiter.set()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None


def _readable_order(fields: dict[str, str]) -> Order | None:
    """An order hash in a listing; a damaged one is skipped (and logged) rather than failing the whole list."""
    if not fields:
        return None
    try:
        return Order.from_fields(fields)
    except (KeyError, ValueError, ArithmeticError) as e:
        log.warning("skipping damaged order hash %s: %s", fields.get("client_order_id", "?")[:128], e)
        return None


def _remember(memory: dict[str, Any], key: str, value: Any) -> None:
    memory.pop(key, None)
    memory[key] = value
    if len(memory) > MEMORY:
        del memory[next(iter(memory))]
