"""Retention of ended orders (hub.execution.retention): with an injected clock, the gateway's store removes
the hashes of orders that ended more than ``order_retention`` ago, in batches, and nothing else: no open
order (not even one whose hash claims it ended), no recent one, no position, no execution event."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from core.clock import FakeClock
from core.connection import redis_client
from core.errors import ConfigError
from core.keys import Keys
from core.orders import CANCELED, EXPIRED, NEW, Order
from core.settings import build
from hub.execution.app import GatewaySettings
from hub.execution.retention import Retention
from hub.execution.store import Fill, OrderStore

DAY_NS = 86_400_000_000_000
RETENTION_NS = 7 * DAY_NS


def _order(coid: str) -> Order:
    return Order(coid, "tester", "AAPL", "buy", "limit", Decimal(10), Decimal("100"), status=NEW)


async def _orders(store: OrderStore) -> None:
    """At the clock's now: one order of each ending, two open ones, and a canceled one still in the open set."""
    filled = await store.record(_order("old-filled"), "new")
    await store.fill(filled, Fill(Decimal(10), Decimal("100")))  # also writes the position
    await store.record(_order("old-canceled").evolve(status=CANCELED), "canceled")
    await store.reject(_order("old-rejected"), "too big")
    await store.record(_order("old-expired").evolve(status=EXPIRED), "expired")
    partial = await store.record(_order("old-partial"), "new")
    await store.fill(partial, Fill(Decimal(4), Decimal("100")))
    await store.record(_order("old-open"), "new")
    await store.record(_order("odd-canceled").evolve(status=CANCELED), "canceled")


async def check_retention(client: aioredis.Redis, keys: Keys) -> None:
    """The whole rule, against whatever Redis ``client`` reaches (single node, cluster, an ACL user)."""
    clock = FakeClock()
    store = OrderStore(client, keys, clock)
    await _orders(store)
    await client.sadd(keys.open_orders(), "odd-canceled")  # as if its end never reached the open set
    await clock.advance(RETENTION_NS + 1_000_000_000)  # 7 days and a second
    await store.record(_order("new-canceled").evolve(status=CANCELED), "canceled")
    events, position = await client.xlen(keys.order_events()), await client.hgetall(keys.position("AAPL"))

    retention = Retention(client, keys, store, RETENTION_NS, batch=2)  # 8 hashes: several steps
    assert await retention.cycle() == 4
    left = {key.removeprefix(keys.order("")) async for key in client.scan_iter(match=keys.order_pattern())}
    assert left == {"old-partial", "old-open", "odd-canceled", "new-canceled"}
    assert await client.smembers(keys.open_orders()) == {"old-partial", "old-open", "odd-canceled"}
    assert await client.xlen(keys.order_events()) == events  # the events stream keeps its own bound
    assert await client.hgetall(keys.position("AAPL")) == position and position["qty"] == "14"
    assert await retention.cycle() == 0

    await clock.advance(RETENTION_NS)  # new-canceled is now exactly 7 days old: kept, not older
    assert await retention.cycle() == 0
    await clock.advance(1_000_000_000)
    assert await retention.cycle() == 1  # new-canceled's turn; the open ones stay however old
    assert await store.get("old-open") is not None and await store.get("new-canceled") is None
    assert retention.removed == 5


async def test_ended_orders_older_than_the_retention_are_removed_in_batches(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        await check_retention(client, Keys())
    finally:
        await client.aclose()


def test_order_retention_is_checked_before_any_io() -> None:
    assert build(GatewaySettings, {}).order_retention_ns == RETENTION_NS
    assert build(GatewaySettings, {"order_retention": "30d"}).order_retention_ns == 30 * DAY_NS
    assert build(GatewaySettings, {"order_retention": "0"}).order_retention_ns == 0  # keep every order
    for bad in ("1h", "a week"):
        with pytest.raises(ConfigError, match="order_retention"):
            build(GatewaySettings, {"order_retention": bad})
