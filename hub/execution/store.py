"""Order and position state in Redis: the one writer of ``tf:order:*``, ``tf:orders:open``,
``tf:position:*`` and the execution events.

Nothing else writes these keys: the gateway (rejections before a broker sees an
order) and the brokers (acks, fills, cancels) both report changes through the
methods here, named by what happened (:meth:`record`, :meth:`reject`,
:meth:`fill`, :meth:`reject_intent`).

Every change is one MULTI/EXEC: the ``tf:order:<id>`` hash, membership of
``tf:orders:open``, the ``tf:position:<SYMBOL>`` hash on fills, an entry on
the ``tf:orders:events`` stream and a JSON message on the exec channel. So a
``kill -9`` leaves either all of a change or none of it.

Order hashes of orders that ended long ago are removed only here too (:meth:`remove_ended`, driven by
:mod:`hub.execution.retention`), never an open one.

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
from core.orders import REJECTED, TERMINAL, ZERO, Order, Position, fmt

log = logging.getLogger(__name__)

#: Approximate length the execution-event stream is trimmed to.
EVENTS_MAXLEN = 100_000
#: Rejection reasons are cut to this length (a damaged value can format to megabytes).
MAX_REASON_CHARS = 500


def _short(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 3] + "..."


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
        self.damaged: set[str] = set()  # symbols whose position hash could not be read
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
        self.damaged.clear()
        async for key in self._client.scan_iter(match=self._keys.position_pattern(), count=500):
            symbol = key[len(self._keys.position("")):]
            try:
                self.positions[symbol] = Position.from_fields(symbol, await self._client.hgetall(key))
            except (ValueError, ArithmeticError) as e:
                # Not a reason to stop: the gateway refuses orders on this symbol until the hash is repaired.
                self.damaged.add(symbol)
                log.error("position hash %s is damaged (%s): orders on %s are refused until it is fixed",
                          key, e, symbol)
        log.info("loaded %d open orders and %d positions", len(self.open), len(self.positions))

    async def position_usable(self, symbol: str) -> bool:
        """False while ``symbol``'s position hash is damaged; reads it again, so a repair (or a delete
        of a flat position) is picked up without a restart."""
        if symbol not in self.damaged:
            return True
        try:
            position = Position.from_fields(symbol, await self._client.hgetall(self._keys.position(symbol)))
        except (ValueError, ArithmeticError):
            return False
        self.positions[symbol] = position
        self.damaged.discard(symbol)
        log.warning("position hash of %s is readable again: %s", symbol, position)
        return True

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

    async def reject(self, order: Order, reason: str) -> Order:
        """``order`` ends rejected with ``reason`` (before or at the broker)."""
        return await self.record(order.evolve(status=REJECTED, reject_reason=_short(reason)), "rejected")

    async def reject_intent(self, *, agent: str, kind: str, client_order_id: str, target: str, reason: str,
                            intent_ts_ns: int = 0) -> None:
        """An intent refused without an order of its own to carry the news (a reused id, a cancel of
        someone else's order, an entry too broken to name its order): an ``intent_rejected`` event on
        the events stream and the exec channel, and no order hash is touched. ``intent_ts_ns`` (the
        intent's own ``ts_ns``) lets the sending client tell its intent from another with the same id."""
        payload = {"event": "intent_rejected", "kind": kind, "agent": agent, "client_order_id": client_order_id,
                   "target": target, "reason": _short(reason), "intent_ts_ns": str(intent_ts_ns),
                   "updated_ns": str(self.clock.time_ns())}
        notice = json.dumps(payload, separators=(",", ":"))
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(self._keys.order_events(), payload, maxlen=EVENTS_MAXLEN, approximate=True)
        if not self._keys.cluster:
            pipe.publish(self._keys.exec_channel(), notice)
        await pipe.execute()
        if self._keys.cluster:  # as in _commit: redis-py refuses PUBLISH in a cluster MULTI
            await self._client.publish(self._keys.exec_channel(), notice)
        self.events_written += 1

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
        self.damaged.discard(position.symbol)

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


    # retention (hub.execution.retention decides what is old; removing is the writer's job) ----------------

    async def remove_ended(self, client_order_ids: Sequence[str], ended_before_ns: int) -> int:
        """Remove the ``tf:order:<id>`` hashes of those orders that ended (a terminal status) before
        ``ended_before_ns``; how many went. Never one that is open: skipped if in the mirror, and checked
        again inside Redis (status, age, ``tf:orders:open``) in one script, so nothing written since the
        caller looked can be lost. Positions and the events stream are not touched."""
        ids = [coid for coid in client_order_ids if coid not in self.open]
        if not ids:
            return 0
        script = self._client.register_script(_REMOVE_ENDED_LUA)  # no I/O: EVALSHA, loaded on first use
        keys = [self._keys.open_orders(), *(self._keys.order(coid) for coid in ids)]
        return int(await script(keys=keys, args=[str(ended_before_ns), *ids]))


#: KEYS[1] the open set, KEYS[2..] order hashes; ARGV[1] the cutoff (ns), ARGV[2..] their ids. On a cluster
#: every name is in the {orders} slot, so the script runs on one node. Numbers are doubles in Lua: today's
#: nanosecond timestamps compare to within 256 ns, plenty for an age in days.
_REMOVE_ENDED_LUA = """
local ended = {ENDED}
local cutoff, removed = tonumber(ARGV[1]), 0
for i = 2, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'status', 'updated_ns')
  local updated = tonumber(fields[2])
  if ended[fields[1]] and updated and updated < cutoff and redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then
    redis.call('UNLINK', KEYS[i])
    removed = removed + 1
  end
end
return removed
""".replace("ENDED", ", ".join(f'["{status}"] = true' for status in sorted(TERMINAL)))


def _event_payload(order: Order, event: str, reason: str, fill: Fill | None,
                   position: Position | None) -> dict[str, str]:
    payload = {**order.to_fields(), "event": event, "reason": reason or order.reject_reason}
    if fill is not None:
        payload.update(fill_qty=fmt(fill.qty), fill_price=fmt(fill.price), fee=fmt(fill.fee))
    if position is not None:
        payload["position_qty"] = fmt(position.qty)
    return payload
