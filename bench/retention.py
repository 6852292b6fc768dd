"""Order retention: Redis memory an ended order holds, and how fast the gateway's retention removes them.

Writes ``n`` ended orders through the OrderStore (as the gateway does) at a fake time; times a cycle of
hub.execution.retention that finds every order young (the cost of a walk), then one past the retention
(removal). Memory is Redis's ``used_memory`` per order hash (the events stream is bounded apart).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from core.clock import FakeClock
from core.connection import redis_client
from core.keys import Keys
from core.orders import CANCELED, Order
from hub.execution.retention import Retention
from hub.execution.store import OrderStore

RETENTION_NS = 7 * 86_400_000_000_000
KEYS = Keys("bench-retention")


async def _run(url: str, n: int) -> dict[str, Any]:
    client = redis_client(url)
    try:
        clock, before = FakeClock(), await _memory(client)
        store = OrderStore(client, KEYS, clock)
        for i in range(n):
            order = Order(f"r-{i}", "bench", "AAPL", "buy", "limit", Decimal(10), Decimal("100.25"), status=CANCELED)
            await store.record(order, "canceled")
        await client.delete(KEYS.order_events())  # the stream is bounded apart; count the hashes alone
        with_orders = await _memory(client)
        retention = Retention(client, KEYS, store, RETENTION_NS)
        started = time.perf_counter()
        assert await retention.cycle() == 0  # all young: the cost of one walk over every hash
        walk_s = time.perf_counter() - started
        await clock.advance(RETENTION_NS + 1_000_000_000)
        started = time.perf_counter()
        removed = await retention.cycle()
        elapsed_s = time.perf_counter() - started
        after = await _memory(client)
        return {"orders": n, "removed": removed, "bytes_per_order": round((with_orders - before) / n),
                "bytes_per_order_after": round((after - before) / n, 1), "removed_per_s": round(removed / elapsed_s),
                "walk_ms_per_1000_orders": round(1e6 * walk_s / n, 2)}
    finally:
        await client.aclose()


async def _memory(client: Any) -> int:
    return int((await client.info("memory"))["used_memory"])


def run(url: str, smoke: bool) -> dict[str, Any]:
    return asyncio.run(_run(url, 1_000 if smoke else 20_000))
