"""Reading intents: the agents' stream and the operator's, through one consumer group, as bytes.

This module is the poison boundary of the gateway. Every entry is decoded here
(:func:`core.intents.decode_entry` then :func:`~core.intents.decode_intent`); an entry
that does not decode, or whose handling raises anything but a lost Redis connection,
is rejected with a reason (a rejected order when it names a new one, else an
``intent_rejected`` event), counted (``bad_intents``, ``poison``) and acknowledged with
its batch, and the next entry is handled. Losing Redis is not the entry's fault: it
propagates, the process exits to be restarted (under Sentinel the gateway reloads in-process,
hub.execution.app), and the unacknowledged entries are replayed (idempotently, by
``client_order_id``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from decimal import Decimal
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import names
from core.clock import Clock
from core.intents import (
    CLIENT_ORDER_ID,
    KINDS,
    TS_NS,
    IntentError,
    decode_entry,
    decode_intent,
    lossy_entry,
    replace_difference,
    submit_difference,
)
from core.keys import Keys
from core.orders import Intent, Order
from core.ratelimit import RateLimitedLog
from hub.execution.policy import operator_refusal
from hub.execution.stats import GatewayStats
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

GROUP = "gateway"
#: Losing Redis is not the intent's fault: the gateway exits, the entry stays pending and is replayed.
TRANSIENT = (RedisConnectionError, RedisTimeoutError)
RawEntry = Mapping[bytes, bytes]
T = TypeVar("T")


class IntentHandler(Protocol):
    async def prepare(self, batch: list[Intent]) -> None:
        """Read what a batch of decoded intents needs, in one round trip."""

    async def handle_until_done(self, intent: Intent, operator: bool) -> None: ...

    async def finish(self) -> None:
        """After the batch's intents (before they are acknowledged)."""


class Intake:
    def __init__(self, raw_client: aioredis.Redis, keys: Keys, store: OrderStore, clock: Clock,
                 stats: GatewayStats, handler: IntentHandler, *, consumer: str, batch: int, poll_ns: int) -> None:
        self._raw = raw_client  # bytes: one non-UTF-8 entry must not fail a whole read
        self._keys = keys
        self._store = store
        self._clock = clock
        self.stats = stats
        self._handler = handler
        self._consumer = consumer
        self._batch = batch
        self._poll_ns = poll_ns
        # The operator's stream first: in one read, its cancels are handled before the agents' intents.
        self._streams = (keys.operator_intents(), keys.order_intents())
        self._bad_log = RateLimitedLog(log)

    async def create_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._raw.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        """Handle pending intents left by a previous run, then new ones, until ``stop``."""
        for stream in self._streams:
            await self._drain_pending(stream)
        while not stop.is_set():
            reply = await self._raw.xreadgroup(GROUP, self._consumer, dict.fromkeys(self._streams, ">"),
                                               count=self._batch, block=max(self._poll_ns // 1_000_000, 1))
            for stream, entries in reply or ():
                await self._handle_batch(_text(stream), entries)

    async def _drain_pending(self, stream: str) -> None:
        start: str | bytes = "0-0"
        while True:  # entries another consumer name left pending become ours
            result = await self._raw.xautoclaim(stream, GROUP, self._consumer, min_idle_time=0,
                                                start_id=start, count=self._batch)
            start = result[0]
            if start in ("0-0", b"0-0"):
                break
        while True:
            reply = await self._raw.xreadgroup(GROUP, self._consumer, {stream: "0"}, count=self._batch)
            entries = reply[0][1] if reply else []
            if not entries:
                return
            self.stats.replayed += len(entries)
            log.info("handling %d intents left pending on %s by a previous run", len(entries), stream)
            await self._handle_batch(stream, entries)

    async def _handle_batch(self, stream: str, entries: Sequence[tuple[bytes, RawEntry | None]]) -> None:
        raws = [raw for _, raw in entries if raw is not None]  # None: trimmed away while pending
        await self.handle_entries(raws, operator=stream == self._keys.operator_intents())
        await self._raw.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])

    async def handle_entries(self, raws: Sequence[RawEntry], *, operator: bool = False) -> None:
        """Decode and handle one batch of entries behind the poison boundary (the backtest calls this
        directly, in data time, with no stream)."""
        decoded: list[tuple[RawEntry, Intent]] = []
        for raw in raws:
            self.stats.intents += 1
            intent = await self._contained(raw, None, self._decode(raw, operator))
            if intent is not None:
                decoded.append((raw, intent))
        try:
            await self._handler.prepare([intent for _, intent in decoded])
        except TRANSIENT:
            raise
        except Exception as e:  # without the batch's prefetch every intent looks its state up itself
            self._bad_log.error("prepare", "batch prefetch failed; handling the batch without it", exc_info=e)
        for raw, intent in decoded:
            await self._contained(raw, intent, self._handler.handle_until_done(intent, operator))
        try:
            await self._handler.finish()
        except TRANSIENT:
            raise
        except Exception as e:  # the batch is handled; what is left to tidy must not block its ack
            self._bad_log.error("finish", "finishing a batch failed", exc_info=e)

    async def _contained(self, raw: RawEntry, intent: Intent | None, work: Awaitable[T]) -> T | None:
        """Run ``work`` for one entry; anything it raises (but losing Redis) rejects that entry only."""
        try:
            return await work
        except TRANSIENT:
            raise
        except Exception as e:  # the poison boundary: one entry's failure must never stop the stream
            if _refused_by_acl(e):  # the deployment's fault, not the entry's: stop (exit 78), replay once fixed
                raise NoPermissionError(f"the gateway's Redis user lacks a right it needs: {e}") from e
            await self._poison(raw, intent, e)
            return None

    async def _poison(self, raw: RawEntry, intent: Intent | None, error: Exception) -> None:
        self.stats.poison += 1
        fields = lossy_entry(raw)
        self._bad_log.error("poison", "intent %s raised %s; rejected, acknowledged, going on", _summary(fields),
                            type(error).__name__, exc_info=error)
        # The type only: an exception's text may carry more than every agent should read.
        reason = f"internal error while handling the intent ({type(error).__name__}); rejected, not retried"
        try:
            if intent is not None and await self._order_of(intent) is not None:
                return  # it failed after its order was recorded: that order's state is the truth, not a rejection
            await self._reject_fields(fields, reason)
        except TRANSIENT:
            raise
        except Exception as e:  # even the rejection failed: the entry is still acknowledged
            self._bad_log.error("poison-reject", "could not record the rejection of a poison intent", exc_info=e)

    async def _order_of(self, intent: Intent) -> Order | None:
        """The stored order this very intent created, if any (same id and parameters)."""
        if intent.kind not in ("submit", "replace") or not intent.client_order_id:
            return None
        order = await self._store.get(intent.client_order_id)
        differ = submit_difference if intent.kind == "submit" else replace_difference
        return order if order is not None and differ(intent, order) is None else None

    async def _decode(self, raw: RawEntry, operator: bool) -> Intent | None:
        try:
            intent = decode_intent(decode_entry(raw))
            refusal = operator_refusal(intent, on_operator_stream=operator)
            if refusal is not None:
                raise IntentError(refusal)
            return intent
        except IntentError as e:
            self.stats.bad_intents += 1
            fields = lossy_entry(raw)
            self._bad_log.warning("intent", "bad intent (%s): %s", e, _summary(fields))
            await self._reject_fields(fields, f"malformed intent: {e}")
            return None

    async def _reject_fields(self, fields: Mapping[str, str], reason: str) -> None:
        """Tell the sender: a rejected order when the entry names a new one, else an intent_rejected event."""
        coid, kind = fields.get("client_order_id", ""), fields.get("kind", "")
        coid = coid if CLIENT_ORDER_ID.match(coid) else ""
        agent = fields.get("agent", "") if names.is_name(fields.get("agent", "")) else "?"
        if kind in ("submit", "replace") and coid and not await self._store.exists(coid):
            symbol = fields.get("symbol", "") if names.is_symbol(fields.get("symbol", "")) else "?"
            order = Order(client_order_id=coid, agent=agent, symbol=symbol,
                          side="sell" if fields.get("side") == "sell" else "buy", order_type="limit",
                          qty=Decimal(0), limit_price=None, created_ns=self._clock.time_ns())
            await self._store.reject(order, reason)
            return
        target = fields.get("target", "")
        ts_text = fields.get("ts_ns", "")
        await self._store.reject_intent(agent=agent, kind=kind if kind in KINDS else "?", client_order_id=coid,
                                        target=target if CLIENT_ORDER_ID.match(target) else "", reason=reason,
                                        intent_ts_ns=int(ts_text) if TS_NS.match(ts_text) else 0)


def _refused_by_acl(error: Exception) -> bool:
    """A command (or a script's command) the ACL does not allow: every later intent would fail the same way."""
    text = str(error)
    return isinstance(error, NoPermissionError) or (
        isinstance(error, ResponseError) and ("NOPERM" in text or "can't run this command" in text))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _summary(fields: Mapping[str, str]) -> str:
    """An entry for a log line: short, and with every control character escaped by repr."""
    text = repr(dict(fields))
    return text if len(text) <= 300 else text[:300] + "...}"
