"""The execution gateway: order intents in, risk-checked broker actions out.

Intents arrive on two streams read with one consumer group: ``tf:orders:intents``
(agents) and ``tf:orders:operator`` (operator commands: cancels of anyone's
orders). An intent stays pending until the gateway has handled it and only then
is acknowledged. A restarted gateway first re-reads its own pending entries (and
claims any left by another consumer name) before reading new ones. Handling is
idempotent by ``client_order_id``: an intent whose order already exists is not
sent again (an order left ``pending_new`` by a crash is resumed by asking the
broker), so a replay never creates a second order.

Poison never stops the stream: :mod:`hub.execution.intake` reads and decodes the
entries and rejects, acknowledges and counts any entry that does not decode or
whose handling here raises (anything but a lost Redis connection); the gateway
goes on with the next one. See docs/order-safety.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import assert_never

import redis.asyncio as aioredis

from core.clock import Clock
from core.intents import IntentError
from core.keys import Keys
from core.orders import EXTERNAL_AGENT, PENDING_CANCEL, PENDING_NEW, Intent, Order
from core.prices import BidAsk
from core.ratelimit import RateLimitedLog
from core.tasks import stopped_within
from core.ticks import MAX_PRICE, is_fractional
from hub.execution.brokers.base import Broker, BrokerUnavailable
from hub.execution.intake import GROUP, Intake
from hub.execution.policy import (
    ownership_refusal,
    replace_difference,
    reuse_reason,
    submit_difference,
)
from hub.execution.risk import RiskChecks, RiskContext
from hub.execution.stats import GatewayStats
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

__all__ = ["GROUP", "Gateway", "GatewayStats"]

#: Differences between an intent and the order stored under its id (None: the same order).
Differ = Callable[[Intent, Order], str | None]
ADOPTED = "restored from the broker while Redis had lost it; claimed back by its replayed intent"
#: A cancel-all that has not emptied the book is sent again after this long.
CANCEL_RETRY_NS = 2_000_000_000
MAX_BACKOFF_S = 5.0


class Gateway:
    def __init__(self, client: aioredis.Redis, keys: Keys, store: OrderStore, broker: Broker, risk: RiskChecks,
                 clock: Clock, *, raw_client: aioredis.Redis, consumer: str = "gateway", batch: int = 100,
                 poll_ns: int = 100_000_000) -> None:
        self._client = client
        self._keys = keys
        self._store = store
        self._broker = broker
        self._risk = risk
        self._clock = clock
        self._poll_ns = poll_ns
        self.halted = False
        self.reduce_only = False
        self.stats = GatewayStats()
        self._intake = Intake(raw_client, keys, store, clock, self.stats, self, consumer=consumer, batch=batch,
                              poll_ns=poll_ns)
        self._last_cancel_all_ns = -CANCEL_RETRY_NS
        self._bad_log = RateLimitedLog(log)
        self._absent: set[str] = set()  # order ids of the current batch known not to exist yet
        self._touches: dict[str, BidAsk | None] = {}

    # lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._intake.create_groups()
        await self._store.load()
        await self._broker.start()
        await self.refresh_state()

    async def run_intake(self, stop: asyncio.Event) -> None:
        """Handle pending intents left by a previous run, then new ones, until ``stop``."""
        await self._intake.run(stop)

    async def handle_entries(self, entries: Sequence[Mapping[bytes, bytes]], *, operator: bool = False) -> None:
        """Handle raw intent entries as if read from the stream (the backtest's way in, in data time)."""
        await self._intake.handle_entries(entries, operator=operator)

    async def prepare(self, batch: list[Intent]) -> None:
        """One round trip per batch: the kill switch (it applies to every intent read after it was set),
        which order ids are new, and the latest touch of each symbol (at most one batch old). If it fails,
        both stay empty and each intent reads its own state."""
        self._absent, self._touches = set(), {}
        await self._risk.reserve(sum(1 for i in batch if i.kind in ("submit", "replace")))
        coids = [i.client_order_id for i in batch]
        symbols = sorted({i.symbol for i in batch if i.symbol})
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

    async def finish(self) -> None:
        """After a batch: order-rate tokens reserved for it and not used go back to the bucket."""
        await self._risk.release()

    async def handle_until_done(self, intent: Intent, operator: bool) -> None:
        """Handle one intent, retrying while the broker is unreachable (the intent stays pending)."""
        delay_s = 0.1
        while True:
            try:
                await self.handle(intent, operator=operator)
                return
            except BrokerUnavailable as e:
                self._bad_log.warning("broker", "broker unavailable (%s); intent %s %s stays pending, retrying",
                                      e, intent.kind, intent.client_order_id or intent.target)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_BACKOFF_S)

    # intents ------------------------------------------------------------------------

    async def handle(self, intent: Intent, *, operator: bool = False) -> None:
        match intent.kind:
            case "submit":
                await self._submit(intent)
            case "cancel":
                await self._cancel(intent, operator)
            case "replace":
                await self._replace(intent)
            case "cancel_all":
                await self._cancel_all(intent, operator)
            case _:
                assert_never(intent.kind)
        if intent.ts_ns:
            self._note_latency(intent.ts_ns)

    def _note_latency(self, sent_ns: int) -> None:
        samples = self.stats.ack_latency_ns
        samples.append(time.time_ns() - sent_ns)
        self.stats.ack_ms.observe(samples[-1] / 1e6)
        if len(samples) > 10_000:
            del samples[:5_000]

    async def _refuse(self, intent: Intent, reason: str) -> None:
        await self._store.reject_intent(agent=intent.agent, kind=intent.kind, client_order_id=intent.client_order_id,
                                        target=intent.target, reason=reason, intent_ts_ns=intent.ts_ns)

    async def _existing(self, client_order_id: str) -> Order | None:
        if client_order_id in self._absent:
            self._absent.discard(client_order_id)  # a second copy later in the batch must look again
            return None
        return await self._store.get(client_order_id)

    async def _resent(self, intent: Intent, existing: Order, differ: Differ) -> None:
        """An intent whose id is taken: an exact resend is ignored (or finishes a half-done submit);
        the same id with other parameters is refused where the sender sees it. The broker's copy of this
        very intent's order, restored under agent ``external`` because Redis lost its record, is adopted."""
        if _restored_for(intent, existing, differ):
            self.stats.adopted += 1
            log.warning("order %s was restored from the broker; its replayed intent claims it for agent %s",
                        existing.client_order_id, intent.agent)
            await self._store.record(existing.evolve(agent=intent.agent), "adopted", reason=ADOPTED)
            return
        difference = differ(intent, existing)
        if difference is not None:
            self.stats.reused_ids += 1
            await self._refuse(intent, reuse_reason(intent.client_order_id, difference))
            return
        self.stats.duplicates += 1
        if existing.status == PENDING_NEW:
            await self._broker.resume(existing)

    async def _submit(self, intent: Intent) -> None:
        existing = await self._existing(intent.client_order_id)
        if existing is not None:
            return await self._resent(intent, existing, submit_difference)
        if intent.side is None or intent.qty is None:
            raise IntentError("a submit needs side and qty")  # decode_intent guarantees both
        now_ns = self._clock.time_ns()
        order = Order(client_order_id=intent.client_order_id, agent=intent.agent, symbol=intent.symbol,
                      side=intent.side, order_type=intent.order_type, qty=intent.qty,
                      limit_price=intent.limit_price, time_in_force=intent.time_in_force,
                      created_ns=now_ns, updated_ns=now_ns)
        if await self._passes_risk(order, replacing=None):
            self.stats.submitted += 1
            await self._broker.submit(order)
        return None

    async def _passes_risk(self, order: Order, replacing: Order | None) -> bool:
        store = self._store
        if not await store.position_usable(order.symbol):
            self.stats.rejected += 1
            await store.reject(order, f"position hash {self._keys.position(order.symbol)} is damaged; orders on "
                                      f"{order.symbol} are refused until it is repaired (or deleted if flat)")
            return False
        working = {side: store.working_qty(order.symbol, side) for side in ("buy", "sell")}
        if replacing is not None:  # the replaced order's quantity makes way for the new one
            working[replacing.side] -= replacing.remaining_qty
        # Halted: the state check rejects first, so never ask the broker (it may be the thing that is down).
        fractionable = is_fractional(order.qty) and not self.halted and await self._broker.fractionable(order.symbol)
        ctx = RiskContext(halted=self.halted, reduce_only=self.reduce_only,
                          position_qty=store.position(order.symbol).qty, open_buy_qty=working["buy"],
                          open_sell_qty=working["sell"], open_count=len(store.open) - (replacing is not None),
                          touch=await self._latest_touch(order.symbol), fractionable=fractionable)
        reason = await self._risk.admit(order, ctx)
        if reason is None:
            return True
        self.stats.rejected += 1
        await self._store.reject(order, reason)
        return False

    async def _latest_touch(self, symbol: str) -> BidAsk | None:
        if symbol in self._touches:
            return self._touches[symbol]
        return _touch(await self._client.hmget(self._keys.latest_quote(symbol), "bid", "ask"))

    async def _cancel(self, intent: Intent, operator: bool) -> None:
        order = await self._store.get(intent.target)
        if order is None:
            self.stats.refused += 1
            return await self._refuse(intent, f"cancel of unknown order {intent.target}")
        refusal = ownership_refusal(intent, order, operator=operator)
        if refusal is not None:
            self.stats.refused += 1
            return await self._refuse(intent, refusal)
        if order.is_open and order.status != PENDING_CANCEL:
            await self._broker.cancel(order)
        return None

    async def _replace(self, intent: Intent) -> None:
        existing = await self._existing(intent.client_order_id)
        if existing is not None:
            return await self._resent(intent, existing, replace_difference)
        old = await self._store.get(intent.target)
        now_ns = self._clock.time_ns()
        base = old or Order(client_order_id="", agent=intent.agent, symbol="?", side="buy", order_type="limit",
                            qty=Decimal(0), limit_price=None)
        new = base.evolve(client_order_id=intent.client_order_id, agent=intent.agent,
                          qty=intent.qty if intent.qty is not None else base.remaining_qty,
                          limit_price=intent.limit_price if intent.limit_price is not None else base.limit_price,
                          status=PENDING_NEW, filled_qty=Decimal(0), filled_avg_price=None, fees=Decimal(0),
                          reject_reason="", broker_order_id="", replaces=intent.target, replaced_by="",
                          created_ns=now_ns, updated_ns=now_ns)
        refusal = _replace_refusal(intent, old)
        if refusal is not None:
            self.stats.rejected += 1
            await self._store.reject(new, refusal)
        elif old is not None and await self._passes_risk(new, replacing=old):
            self.stats.submitted += 1
            await self._broker.replace(old, new)
        return None

    async def _cancel_all(self, intent: Intent, operator: bool) -> None:
        orders = self._store.open_orders(intent.symbol or None, None if operator else intent.agent)
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
            await stopped_within(stop, self._poll_ns / 1e9)

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


def _restored_for(intent: Intent, existing: Order, differ: Differ) -> bool:
    """``existing`` is what the broker holds for this intent: restored as external, the same order in every
    parameter but the owner, and an id agents.trading made for the intent's agent (``<agent>-<8 hex>-<n>``,
    so agent ``mm`` cannot claim agent ``mm-b``'s), so no agent claims an order someone placed by hand."""
    return (existing.agent == EXTERNAL_AGENT and intent.agent != EXTERNAL_AGENT
            and re.fullmatch(rf"{re.escape(intent.agent)}-[0-9a-f]{{8}}-\d+", intent.client_order_id) is not None
            and differ(intent, existing.evolve(agent=intent.agent)) is None)


def _replace_refusal(intent: Intent, old: Order | None) -> str | None:
    if old is None or not old.is_open:
        return f"cannot replace {intent.target}: order is {'unknown' if old is None else old.status}"
    return ownership_refusal(intent, old, operator=False)


def _touch(reply: list[str | None]) -> BidAsk | None:
    """The latest quote's touch; None when missing or absurd (the hash is input like any other)."""
    bid, ask = reply
    try:
        prices = (Decimal(bid), Decimal(ask)) if bid is not None and ask is not None else None
        if prices is None or not all(p.is_finite() and p <= MAX_PRICE for p in prices):
            return None
        return BidAsk.from_prices(*prices)
    except ArithmeticError:
        return None
