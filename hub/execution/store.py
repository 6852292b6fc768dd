"""Order and position state in Redis, written by the gateway process only.

Every change is one MULTI/EXEC: the ``tf:order:<id>`` hash, membership of
``tf:orders:open``, the ``tf:position:<SYMBOL>`` hash on fills, an entry on
the ``tf:orders:events`` stream and a JSON message on the exec channel. So a
``kill -9`` leaves either all of a change or none of it.

The store mirrors open orders and positions in memory: the gateway is the only
writer (its heartbeat refuses a second one), and brokers and intent handling
share one event loop, so read-modify-write needs no locks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import redis.asyncio as aioredis

from core.clock import Clock
from core.keys import Keys
from core.orders import ZERO, Order, Position, fmt

log = logging.getLogger(__name__)

#: Approximate length the execution-event stream is trimmed to.
EVENTS_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class Fill:
    qty: Decimal
    price: Decimal
    fee: Decimal = ZERO


class OrderStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, clock: Clock) -> None:
        self._client = client
        self._keys = keys
        self.clock = clock
        self.open: dict[str, Order] = {}
        self.by_symbol: dict[str, dict[str, Order]] = {}
        self._working: dict[tuple[str, str], Decimal] = {}  # (symbol, side) -> open remaining qty
        self.positions: dict[str, Position] = {}
        self.events_written = 0

    async def load(self) -> None:
        """Read open orders and positions (at start, and after a restart)."""
        self.open.clear()
        self.by_symbol.clear()
        self._working.clear()
        for coid in sorted(await self._client.smembers(self._keys.open_orders())):
            order = await self.get(coid)
            if order is not None and order.is_open:
                self._index(order)
            else:  # a stale member: the order ended but the set was not updated (should not happen)
                await self._client.srem(self._keys.open_orders(), coid)
        self.positions.clear()
        async for key in self._client.scan_iter(match=self._keys.position_pattern(), count=500):
            symbol = key[len(self._keys.position("")):]
            self.positions[symbol] = Position.from_fields(symbol, await self._client.hgetall(key))
        log.info("loaded %d open orders and %d positions", len(self.open), len(self.positions))

    async def get(self, client_order_id: str) -> Order | None:
        cached = self.open.get(client_order_id)
        if cached is not None:
            return cached
        fields = await self._client.hgetall(self._keys.order(client_order_id))
        if not fields:
            return None
        try:
            return Order.from_fields(fields)
        except (KeyError, ValueError, ArithmeticError) as e:
            log.error("order hash %s is damaged (%s); treating it as unknown", client_order_id, e)
            return None

    async def exists(self, client_order_id: str) -> bool:
        return client_order_id in self.open or bool(await self._client.exists(self._keys.order(client_order_id)))

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol)

    def open_orders(self, symbol: str | None = None, agent: str | None = None) -> list[Order]:
        orders = self.open.values() if symbol is None else self.by_symbol.get(symbol, {}).values()
        return [o for o in orders if agent is None or o.agent == agent]

    def working_qty(self, symbol: str, side: str) -> Decimal:
        """Unfilled quantity of this symbol's open orders on one side (kept up to date, O(1))."""
        return self._working.get((symbol, side), ZERO)

    def _index(self, order: Order) -> None:
        """Keep the open-order mirror, its per-symbol index and working quantities in step."""
        coid = order.client_order_id
        previous = self.open.pop(coid, None)
        if previous is not None:
            self.by_symbol[previous.symbol].pop(coid, None)
            key = (previous.symbol, previous.side)
            self._working[key] = self._working.get(key, ZERO) - previous.remaining_qty
        if order.is_open:
            self.open[coid] = order
            self.by_symbol.setdefault(order.symbol, {})[coid] = order
            key = (order.symbol, order.side)
            self._working[key] = self._working.get(key, ZERO) + order.remaining_qty

    async def record(self, order: Order, event: str, *, reason: str = "") -> Order:
        """Write ``order`` as it now is, with an execution event named ``event``."""
        order = order.evolve(updated_ns=self.clock.time_ns())
        await self._commit([(order, event)], reason=reason)
        return order

    async def record_many(self, changes: Sequence[tuple[Order, str]]) -> list[Order]:
        """Several orders in one transaction (a replace ends one order and starts another)."""
        now_ns = self.clock.time_ns()
        stamped = [(order.evolve(updated_ns=now_ns), event) for order, event in changes]
        await self._commit(stamped)
        return [order for order, _ in stamped]

    async def fill(self, order: Order, fill: Fill) -> Order:
        """Apply a fill to the order and its symbol's position, atomically."""
        now_ns = self.clock.time_ns()
        filled = order.with_fill(fill.qty, fill.price, fill.fee, now_ns)
        position = self.position(order.symbol).apply_fill(order.side, fill.qty, fill.price, fill.fee, now_ns)
        event = "fill" if filled.status == "filled" else "partial_fill"
        await self._commit([(filled, event)], fill=fill, position=position)
        return filled

    async def set_position(self, position: Position) -> None:
        """Overwrite a position (reconciliation with the broker's account)."""
        await self._client.hset(self._keys.position(position.symbol), mapping=position.to_fields())
        self.positions[position.symbol] = position

    async def _commit(self, changes: Sequence[tuple[Order, str]], *, reason: str = "", fill: Fill | None = None,
                      position: Position | None = None) -> None:
        keys = self._keys
        pipe = self._client.pipeline(transaction=True)
        notices: list[str] = []
        for order, event in changes:
            pipe.hset(keys.order(order.client_order_id), mapping=order.to_fields())
            if order.is_open:
                pipe.sadd(keys.open_orders(), order.client_order_id)
            else:
                pipe.srem(keys.open_orders(), order.client_order_id)
            payload = _event_payload(order, event, reason, fill, position)
            pipe.xadd(keys.order_events(), payload, maxlen=EVENTS_MAXLEN, approximate=True)
            notices.append(json.dumps(payload, separators=(",", ":")))
            if not keys.cluster:
                pipe.publish(keys.exec_channel(), notices[-1])
        if position is not None:
            pipe.hset(keys.position(position.symbol), mapping=position.to_fields())
        await pipe.execute()
        if keys.cluster:  # redis-py refuses PUBLISH in a cluster MULTI; the events stream is the record
            for notice in notices:
                await self._client.publish(keys.exec_channel(), notice)
        # Only after Redis has it: the mirror never runs ahead of what a restart would load.
        for order, _ in changes:
            self._index(order)
        if position is not None:
            self.positions[position.symbol] = position
        self.events_written += len(changes)


def _event_payload(order: Order, event: str, reason: str, fill: Fill | None,
                   position: Position | None) -> dict[str, str]:
    payload = {**order.to_fields(), "event": event, "reason": reason or order.reject_reason}
    if fill is not None:
        payload.update(fill_qty=fmt(fill.qty), fill_price=fmt(fill.price), fee=fmt(fill.fee))
    if position is not None:
        payload["position_qty"] = fmt(position.qty)
    return payload
