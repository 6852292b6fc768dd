"""An in-process gateway over the suite's real Redis, for order-path tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from agents.trading import TradingClient
from core.clock import SystemClock
from core.connection import redis_client
from core.keys import Keys
from hub.execution.brokers.sim import SimBroker, SimBrokerSettings
from hub.execution.gateway import Gateway
from hub.execution.risk import RiskChecks, RiskSettings
from hub.execution.store import OrderStore
from hub.marketdata.publisher import Publisher
from tests.helpers import eventually_async

KEYS = Keys()
LOOSE_RISK = RiskSettings(order_rate=10_000.0, order_burst=10_000, max_position=1_000_000.0,
                          max_order_notional=10_000_000.0, max_order_qty=100_000.0)


@dataclass
class SimStack:
    client: aioredis.Redis
    raw: aioredis.Redis
    store: OrderStore
    broker: SimBroker
    gateway: Gateway
    publisher: Publisher
    keys: Keys = KEYS

    def trading(self, agent: str = "tester") -> TradingClient:
        return TradingClient(self.client, self.keys, agent)

    async def quote(self, symbol: str, bid: float, bid_size: float, ask: float, ask_size: float) -> None:
        """Publish one quote and wait until the sim broker has matched against it."""
        before = self.broker.quotes_seen
        self.publisher.add_quote(symbol, 1, bid, bid_size, ask, ask_size)
        await self.publisher.flush()
        await eventually_async(lambda: _true(self.broker.quotes_seen > before), timeout_s=5,
                               message="the sim broker to see the quote")


async def _true(value: bool) -> bool:
    return value


@contextlib.asynccontextmanager
async def sim_stack(redis_url: str, risk: RiskSettings = LOOSE_RISK, sim: SimBrokerSettings | None = None,
                    keys: Keys = KEYS) -> AsyncIterator[SimStack]:
    client, raw = redis_client(redis_url), redis_client(redis_url, decode=False)
    if keys.cluster:
        await client.ping()  # redis-py's cluster client finds the slots on first use, in this loop
    clock = SystemClock()
    store = OrderStore(client, keys, clock)
    broker = SimBroker(store, raw, keys, sim or SimBrokerSettings())
    gateway = Gateway(client, keys, store, broker, RiskChecks(risk, clock), clock, raw_client=raw, poll_ns=50_000_000)
    stop = asyncio.Event()
    await gateway.start()
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(c) for c in (
        gateway.run_intake(stop), gateway.watch_risk_state(stop), broker.run(stop))]
    if not keys.cluster:  # on a cluster the broker subscribes per symbol as orders arrive
        await eventually_async(lambda: _numpat(client), timeout_s=5, message="the sim broker to subscribe")
    try:
        yield SimStack(client, raw, store, broker, gateway, Publisher(raw, keys), keys)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await broker.close()
        await raw.aclose()
        await client.aclose()


async def _numpat(client: aioredis.Redis) -> bool:
    return int(await client.execute_command("PUBSUB", "NUMPAT")) >= 1


def dec(value: str | None) -> Decimal:
    return Decimal(value or 0)


def orders_state(client: redis.Redis | RedisCluster, keys: Keys, ids: list[str]) -> tuple[int, dict[str, int]] | None:
    """(open orders, 'new' events per id) once every intent is handled; None before (or mid-failover)."""
    try:
        groups = client.xinfo_groups(keys.order_intents())
        # Delivered up to the stream's last entry, nothing pending. Not "lag": a promoted replica can
        # report it as nil (unknown), which read as "no lag" ended the wait with 1,700 intents unread.
        last_id = client.xinfo_stream(keys.order_intents())["last-generated-id"]
        if not groups or groups[0]["pending"] or groups[0]["last-delivered-id"] != last_id:
            return None
        news: dict[str, int] = {}
        for _, fields in client.xrange(keys.order_events()):
            if fields["event"] == "new":
                news[fields["client_order_id"]] = news.get(fields["client_order_id"], 0) + 1
        return client.scard(keys.open_orders()), news
    except (RedisClusterException, redis.RedisError):
        return None
