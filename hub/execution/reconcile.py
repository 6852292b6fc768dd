"""After a (re)start, make the order store remember every order the broker has.

Redis is the gateway's memory; the broker is the truth. If Redis loses writes (a host crash
under ``appendfsync everysec`` can drop up to a second of them; a restore from an old backup
drops more), the broker can hold orders that ``tf:order:*`` no longer knows: working orders
the kill switch would not cancel, fills the positions would miss. The Alpaca broker's own
reconcile (at start, before this) brings back *open* orders and the positions; this pass also
covers orders that ended (filled, canceled) while their record was lost, so ``tf:order:*``
shows everything the broker did.

Each restored order is written through the store (so it has the usual execution event, with
reason ``restored from the broker``) under agent ``external`` (the client order id still names
the agent that placed it). Brokers that keep no state of their own (the sim broker: its book
is the store) have nothing to add and are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import redis.asyncio as aioredis

from core.keys import Keys
from core.orders import EXTERNAL_AGENT, Order
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

#: How far back to ask the broker when the event stream gives no better starting point.
DEFAULT_LOOKBACK_NS = 24 * 3_600_000_000_000
#: Margin before the last event Redis kept: writes lost with Redis are at most seconds older.
MARGIN_NS = 10 * 60 * 1_000_000_000
RESTORED = "restored from the broker (Redis had lost this order)"


@runtime_checkable
class BrokerHistory(Protocol):
    async def recent_orders(self, since_ns: int) -> Sequence[Order]:
        """Every order the broker created since ``since_ns``, any status, with cumulative fills."""


@dataclass(frozen=True)
class ReconcileReport:
    checked: int = 0
    restored: int = 0


async def since_ns(client: aioredis.Redis, keys: Keys, now_ns: int) -> int:
    """Where to start asking: a margin before the newest execution event Redis kept, else a day back."""
    newest = await client.xrevrange(keys.order_events(), count=1)
    if not newest:
        return now_ns - DEFAULT_LOOKBACK_NS
    entry_id = newest[0][0]
    entry_ms = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])
    return max(entry_ms * 1_000_000 - MARGIN_NS, now_ns - DEFAULT_LOOKBACK_NS)


async def reconcile_with_broker(store: OrderStore, broker: object, client: aioredis.Redis, keys: Keys
                                ) -> ReconcileReport:
    """Write into ``store`` every recent broker order it lacks (fills included; positions are the broker's)."""
    if not isinstance(broker, BrokerHistory):
        return ReconcileReport()
    remote_orders = await broker.recent_orders(await since_ns(client, keys, time.time_ns()))
    restored = 0
    for remote in remote_orders:
        # an order the store knows is the broker's own reconcile's job (it owns fill accounting)
        if not await store.exists(remote.client_order_id):
            await store.record(remote.evolve(agent=EXTERNAL_AGENT), _event(remote.status), reason=RESTORED)
            restored += 1
    report = ReconcileReport(len(remote_orders), restored)
    if restored:
        log.warning("reconciled with the broker: %d orders Redis had lost restored, of %d checked",
                    restored, report.checked)
    else:
        log.info("reconciled with the broker: all %d recent orders known", report.checked)
    return report


def _event(status: str) -> str:
    return {"filled": "fill", "partially_filled": "partial_fill", "accepted": "new",
            "pending_new": "new"}.get(status, status)
