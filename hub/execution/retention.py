"""Retention of ended orders: the gateway removes ``tf:order:<id>`` hashes of orders that ended long ago.

Each ended order's hash holds ~0.4 kB of Redis memory (422 B measured, `python -m bench --only
retention`) and nothing else ever removes one, so a stack trading for months would fill
Redis. Here the gateway (the single writer, through :meth:`OrderStore.remove_ended`) walks the order
hashes with ``SCAN`` in small batches and removes those whose status is terminal (filled, canceled,
rejected, expired, replaced, done_for_day) and whose last change (``updated_ns``, the gateway's clock) is
older than ``order_retention`` (default 7 days; 0 keeps every order). A walk of every hash is a cycle;
one starts every :data:`IDLE_PAUSE_S`, so an order goes at most about that long after it is due.

What stays: every open order (skipped in memory and checked again inside Redis), every position, and
the execution events stream (bounded on its own at ``EVENTS_MAXLEN``; its entries carry the whole
order, which is what the dashboard's fills table and agents' fill reactions read). ``order_retention``
is at least the reconcile look-back (a day): reconcile asks the broker only for orders created within it,
so it never mistakes a removed order for one Redis lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from core.keys import Keys
from core.settings import format_duration_ns
from core.tasks import stopped_within
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

#: Order keys looked at per step (one SCAN page and one script): small, so Redis never stalls on it.
BATCH = 500
#: Pause between steps of a cycle, and between cycles.
STEP_PAUSE_S = 0.1
IDLE_PAUSE_S = 60.0


class Retention:
    def __init__(self, client: aioredis.Redis, keys: Keys, store: OrderStore, retention_ns: int,
                 batch: int = BATCH) -> None:
        self._client = client
        self._keys = keys
        self._store = store
        self._retention_ns = retention_ns
        self._batch = batch
        self._scan: AsyncIterator[str] | None = None
        self.removed = 0

    async def step(self) -> bool:
        """Look at the next batch of order hashes and remove the ended old ones; True when a cycle ended."""
        if self._scan is None:
            self._scan = self._client.scan_iter(match=self._keys.order_pattern(), count=self._batch)
        prefix, done = self._keys.order(""), False
        ids: list[str] = []
        while len(ids) < self._batch:
            try:
                key = await anext(self._scan)
            except StopAsyncIteration:
                self._scan, done = None, True
                break
            ids.append(key[len(prefix):])
        cutoff_ns = self._store.clock.time_ns() - self._retention_ns
        self.removed += await self._store.remove_ended(ids, cutoff_ns)
        return done

    async def cycle(self) -> int:
        """One walk over every order hash; how many were removed."""
        before = self.removed
        while not await self.step():
            pass
        return self.removed - before

    async def run(self, stop: asyncio.Event) -> None:
        """Cycles until ``stop``, the first one after a pause (a restart first replays its pending intents)."""
        if self._retention_ns == 0:
            return
        pause_s, cycle_start = IDLE_PAUSE_S, self.removed
        while not await stopped_within(stop, pause_s):
            if not await self.step():
                pause_s = STEP_PAUSE_S
                continue
            if self.removed > cycle_start:
                log.info("order retention: removed %d orders that ended more than %s ago",
                         self.removed - cycle_start, format_duration_ns(self._retention_ns))
            pause_s, cycle_start = IDLE_PAUSE_S, self.removed

