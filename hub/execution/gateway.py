"""The execution gateway: order intents in, risk-checked broker actions out.

Intents arrive on the ``tf:orders:intents`` stream and are read with a consumer
group, so an intent stays pending until the gateway has handled it and only
then is acknowledged. A restarted gateway first re-reads its own pending
entries (and claims any left by another consumer name) before reading new
ones. Handling is idempotent by ``client_order_id``: an intent whose order
already exists is not sent again (an order left ``pending_new`` by a crash is
resumed by asking the broker), so a replay never creates a second order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core.clock import Clock
from core.intents import CLIENT_ORDER_ID, IntentError, decode_intent
from core.keys import Keys
from core.orders import PENDING_CANCEL, REJECTED, Intent, Order
from core.ratelimit import RateLimitedLog
from hub.execution.brokers.base import Broker, BrokerUnavailable
from hub.execution.risk import RiskChecks, RiskContext, Touch
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

GROUP = "gateway"
#: A cancel-all that has not emptied the book is sent again after this long.
CANCEL_RETRY_NS = 2_000_000_000
MAX_BACKOFF_S = 5.0


@dataclass
class GatewayStats:
    intents: int = 0
    submitted: int = 0
    rejected: int = 0
    duplicates: int = 0
    bad_intents: int = 0
    replayed: int = 0
    ack_latency_ns: list[int] = field(default_factory=list)


class Gateway:
    def __init__(self, client: aioredis.Redis, keys: Keys, store: OrderStore, broker: Broker, risk: RiskChecks,
                 clock: Clock, *, consumer: str = "gateway", batch: int = 100, poll_ns: int = 100_000_000) -> None:
        self._client = client
        self._keys = keys
        self._store = store
        self._broker = broker
        self._risk = risk
        self._clock = clock
        self._consumer = consumer
        self._batch = batch
        self._poll_ns = poll_ns
        self.halted = False
        self.reduce_only = False
        self.stats = GatewayStats()
        self._last_cancel_all_ns = -CANCEL_RETRY_NS
        self._bad_log = RateLimitedLog(log)
        self._absent: set[str] = set()  # order ids of the current batch known not to exist yet
        self._touches: dict[str, Touch | None] = {}

    # lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._client.xgroup_create(self._keys.order_intents(), GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        await self._store.load()
        await self._broker.start()
        await self.refresh_state()

    async def run_intake(self, stop: asyncio.Event) -> None:
        """Handle pending intents left by a previous run, then new ones, until ``stop``."""
        await self._drain_pending()
        while not stop.is_set():
            reply = await self._client.xreadgroup(GROUP, self._consumer, {self._keys.order_intents(): ">"},
                                                  count=self._batch, block=max(self._poll_ns // 1_000_000, 1))
            for _, entries in reply or ():
                await self._handle_batch(entries)

    async def _drain_pending(self) -> None:
        stream = self._keys.order_intents()
        start = "0-0"
        while True:  # entries another consumer name left pending become ours
            result = await self._client.xautoclaim(stream, GROUP, self._consumer, min_idle_time=0,
                                                   start_id=start, count=self._batch)
            start = result[0]
            if start in ("0-0", b"0-0"):
                break
        while True:
            reply = await self._client.xreadgroup(GROUP, self._consumer, {stream: "0"}, count=self._batch)
            entries = reply[0][1] if reply else []
            if not entries:
                return
            self.stats.replayed += len(entries)
            log.info("handling %d intents left pending by a previous run", len(entries))
            await self._handle_batch(entries)

    async def _handle_batch(self, entries: list[tuple[str, Mapping[str, str]]]) -> None:
        await self._prefetch([fields for _, fields in entries if fields])
        for entry_id, fields in entries:
            if fields is None:  # trimmed away while pending: nothing left to handle
                continue
            await self._handle_until_done(entry_id, fields)
        await self._client.xack(self._keys.order_intents(), GROUP, *[entry_id for entry_id, _ in entries])

    async def _prefetch(self, batch: list[Mapping[str, str]]) -> None:
        """One round trip per batch: the kill switch (it applies to every intent read after it was set),
        which order ids are new, and the latest touch of each symbol (at most one batch old)."""
        coids = [f.get("client_order_id", "") for f in batch]
        symbols = sorted({f["symbol"] for f in batch if f.get("symbol")})
        pipe = self._client.pipeline(transaction=False)
        pipe.get(self._keys.risk_halt())  # two GETs, not MGET: redis-py refuses MGET in a cluster pipeline
        pipe.get(self._keys.risk_reduce_only())
        for coid in coids:
            pipe.exists(self._keys.order(coid))
        for symbol in symbols:
            pipe.hmget(self._keys.latest_quote(symbol), "bid", "ask")
        results = await pipe.execute()
        self._apply_state(results[0], results[1])
        exists = results[2:2 + len(coids)]
        self._absent = {c for c, e in zip(coids, exists, strict=True) if c and not e and c not in self._store.open}
        self._touches = {s: _touch(r) for s, r in zip(symbols, results[2 + len(coids):], strict=True)}

    async def _handle_until_done(self, entry_id: str, fields: Mapping[str, str]) -> None:
        delay_s = 0.1
        while True:
            try:
                await self.handle(fields)
                return
            except BrokerUnavailable as e:
                self._bad_log.warning("broker", "broker unavailable (%s); intent %s stays pending, retrying",
                                      e, entry_id)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_BACKOFF_S)

    # intents ------------------------------------------------------------------------

    async def handle(self, fields: Mapping[str, str]) -> None:
        self.stats.intents += 1
        try:
            intent = decode_intent(fields)
        except IntentError as e:
            await self._reject_malformed(fields, str(e))
            return
        if intent.kind == "submit":
            await self._submit(intent)
        elif intent.kind == "cancel":
            await self._cancel(intent)
        elif intent.kind == "replace":
            await self._replace(intent)
        else:
            await self._cancel_all(intent)
        if intent.ts_ns:
            self._note_latency(intent.ts_ns)

    def _note_latency(self, sent_ns: int) -> None:
        samples = self.stats.ack_latency_ns
        samples.append(time.time_ns() - sent_ns)
        if len(samples) > 10_000:
            del samples[:5_000]

    async def _reject_malformed(self, fields: Mapping[str, str], reason: str) -> None:
        """Tell the agent when we can name the order; count and log it in any case."""
        self.stats.bad_intents += 1
        self._bad_log.warning("intent", "bad intent (%s): %s", reason, dict(fields))
        coid = fields.get("client_order_id", "")
        if fields.get("kind") == "submit" and CLIENT_ORDER_ID.match(coid) and not await self._store.exists(coid):
            order = Order(client_order_id=coid, agent=fields.get("agent", ""), symbol=fields.get("symbol", "?"),
                          side="buy" if fields.get("side") != "sell" else "sell", order_type="limit",
                          qty=Decimal(0), limit_price=None, status=REJECTED,
                          reject_reason=f"malformed intent: {reason}", created_ns=self._clock.time_ns())
            await self._store.record(order, "rejected")

    async def _known(self, client_order_id: str) -> bool:
        """True when this order id was handled before (a replay); finishes a half-done submit."""
        if client_order_id in self._absent:
            self._absent.discard(client_order_id)  # a second copy later in the batch must look again
            return False
        existing = await self._store.get(client_order_id)
        if existing is None:
            return False
        self.stats.duplicates += 1
        if existing.status == "pending_new":
            await self._broker.resume(existing)
        return True

    async def _submit(self, intent: Intent) -> None:
        if await self._known(intent.client_order_id):
            return
        assert intent.side is not None and intent.qty is not None
        now_ns = self._clock.time_ns()
        order = Order(client_order_id=intent.client_order_id, agent=intent.agent, symbol=intent.symbol,
                      side=intent.side, order_type=intent.order_type, qty=intent.qty,
                      limit_price=intent.limit_price, time_in_force=intent.time_in_force,
                      created_ns=now_ns, updated_ns=now_ns)
        if await self._passes_risk(order, replacing=None):
            self.stats.submitted += 1
            await self._broker.submit(order)

    async def _passes_risk(self, order: Order, replacing: Order | None) -> bool:
        store = self._store
        working = {side: store.working_qty(order.symbol, side) for side in ("buy", "sell")}
        if replacing is not None:  # the replaced order's quantity makes way for the new one
            working[replacing.side] -= replacing.remaining_qty
        ctx = RiskContext(halted=self.halted, reduce_only=self.reduce_only,
                          position_qty=store.position(order.symbol).qty, open_buy_qty=working["buy"],
                          open_sell_qty=working["sell"], open_count=len(store.open) - (replacing is not None),
                          touch=await self._latest_touch(order.symbol))
        reason = self._risk.check(order, ctx)
        if reason is None:
            return True
        self.stats.rejected += 1
        await self._store.record(order.evolve(status=REJECTED, reject_reason=reason), "rejected")
        return False

    async def _latest_touch(self, symbol: str) -> Touch | None:
        if symbol in self._touches:
            return self._touches[symbol]
        return _touch(await self._client.hmget(self._keys.latest_quote(symbol), "bid", "ask"))

    async def _cancel(self, intent: Intent) -> None:
        order = await self._store.get(intent.target)
        if order is None:
            self._bad_log.warning("cancel", "cancel of unknown order %s from %s", intent.target, intent.agent)
            return
        if order.is_open and order.status != PENDING_CANCEL:
            await self._broker.cancel(order)

    async def _replace(self, intent: Intent) -> None:
        if await self._known(intent.client_order_id):
            return
        old = await self._store.get(intent.target)
        now_ns = self._clock.time_ns()
        base = old or Order(client_order_id="", agent=intent.agent, symbol="?", side="buy", order_type="limit",
                            qty=Decimal(0), limit_price=None)
        new = base.evolve(client_order_id=intent.client_order_id, agent=intent.agent,
                          qty=intent.qty if intent.qty is not None else base.remaining_qty,
                          limit_price=intent.limit_price if intent.limit_price is not None else base.limit_price,
                          status="pending_new", filled_qty=Decimal(0), filled_avg_price=None, fees=Decimal(0),
                          reject_reason="", broker_order_id="", replaces=intent.target, replaced_by="",
                          created_ns=now_ns, updated_ns=now_ns)
        if old is None or not old.is_open:
            state = "unknown" if old is None else old.status
            self.stats.rejected += 1
            await self._store.record(new.evolve(status=REJECTED, reject_reason=(
                f"cannot replace {intent.target}: order is {state}")), "rejected")
            return
        if await self._passes_risk(new, replacing=old):
            self.stats.submitted += 1
            await self._broker.replace(old, new)

    async def _cancel_all(self, intent: Intent) -> None:
        agent = None if intent.agent == "*" else intent.agent
        orders = self._store.open_orders(intent.symbol or None, agent)
        if orders:
            await self._broker.cancel_all(orders)

    # kill switch ----------------------------------------------------------------------

    async def refresh_state(self) -> None:
        self._apply_state(*await self._client.mget(self._keys.risk_halt(), self._keys.risk_reduce_only()))

    def _apply_state(self, halt: str | None, reduce_only: str | None) -> None:
        if bool(halt) != self.halted:
            log.warning("kill switch %s", "SET: rejecting new orders, cancelling open ones" if halt else "cleared")
        if bool(reduce_only) != self.reduce_only:
            log.warning("reduce-only %s", "on" if reduce_only else "off")
        self.halted, self.reduce_only = bool(halt), bool(reduce_only)

    async def watch_risk_state(self, stop: asyncio.Event) -> None:
        """Poll the kill switch; while it is set, keep the book empty."""
        while not stop.is_set():
            await self.refresh_state()
            if self.halted and self._store.open:
                await self._cancel_everything()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_ns / 1e9)

    async def _cancel_everything(self) -> None:
        now_ns = self._clock.monotonic_ns()
        if now_ns - self._last_cancel_all_ns < CANCEL_RETRY_NS and \
                all(o.status == PENDING_CANCEL for o in self._store.open.values()):
            return
        self._last_cancel_all_ns = now_ns
        try:
            await self._broker.cancel_all(list(self._store.open.values()))
        except BrokerUnavailable as e:
            self._bad_log.warning("halt", "kill switch: cancel-all failed (%s); retrying", e)


def _touch(reply: list[str | None]) -> Touch | None:
    bid, ask = reply
    try:
        return Touch(Decimal(bid), Decimal(ask)) if bid is not None and ask is not None else None
    except ArithmeticError:
        return None
