"""DataCache against a real Redis: readable values, timestamps, atomic updates, notifications."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis
import redis.asyncio as aioredis

from cache import DataCache
from core.clock import FakeClock
from core.codec import decode_cache_change
from tests.helpers import eventually_async


async def test_values_and_timestamps_are_readable(redis_url: str, sync_redis: redis.Redis) -> None:
    clock = FakeClock(start_ns=1_000)
    cache = DataCache(redis_url, clock=clock)
    await cache.update("AAPL", {"fair_price": 187.25, "source": "spotter", "n": 3})
    assert sync_redis.hgetall("tf:cache:AAPL") == {
        "fair_price": "187.25", "fair_price:ts_ns": "1000", "source": "spotter", "source:ts_ns": "1000",
        "n": "3", "n:ts_ns": "1000"}
    assert await cache.get("AAPL", "fair_price") == 187.25
    assert await cache.get("AAPL", "source") == "spotter"
    assert await cache.get("AAPL", "missing", default=0.0) == 0.0
    entries = await cache.get_all("AAPL")
    assert set(entries) == {"fair_price", "source", "n"} and entries["n"].ts_ns == 1000
    await cache.aclose()


async def test_stale_values_are_detectable(redis_url: str) -> None:
    clock = FakeClock()
    cache = DataCache(redis_url, clock=clock)
    await cache.set("AAPL", "fair_price", 10.0)
    await clock.advance(5_000_000_000)
    assert await cache.get_float("AAPL", "fair_price", max_age_ns=10_000_000_000) == 10.0
    assert await cache.get_float("AAPL", "fair_price", max_age_ns=1_000_000_000) is None
    await cache.aclose()


async def test_non_finite_values_are_refused(redis_url: str) -> None:
    cache = DataCache(redis_url)
    with pytest.raises(ValueError, match="fair_price"):
        await cache.set("AAPL", "fair_price", math.nan)
    assert await cache.get("AAPL", "fair_price") is None
    await cache.aclose()


async def test_update_is_atomic_and_notifies_once(redis_url: str) -> None:
    cache = DataCache(redis_url)
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("tf:cache:changed:AAPL")
    monitor = aioredis.Redis.from_url(redis_url, decode_responses=True)
    seen: list[dict[str, str]] = []

    async def watch() -> None:
        # a reader polling during many updates must never see one field updated without the other
        while len(seen) < 200:
            seen.append(await monitor.hgetall("tf:cache:AAPL"))

    watcher = asyncio.create_task(watch())
    for i in range(200):
        await cache.update("AAPL", {"bid_level": float(i), "ask_level": float(i)})
    await watcher
    assert all(s.get("bid_level") == s.get("ask_level") for s in seen)
    notices = []

    async def two_hundred_notices() -> bool:
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            notices.append(decode_cache_change(message["data"]))
        return len(notices) == 200

    await eventually_async(two_hundred_notices, message="one notice per update")
    assert {(symbol, tuple(fields)) for symbol, fields, _ in notices} == {("AAPL", ("bid_level", "ask_level"))}
    await pubsub.aclose()
    for client in (listener, monitor):
        await client.aclose()
    await cache.aclose()


async def test_namespaces_do_not_mix(redis_url: str) -> None:
    a, b = DataCache(redis_url, namespace="alpha"), DataCache(redis_url, namespace="beta")
    await a.set("AAPL", "fair_price", 1.0)
    assert await b.get("AAPL", "fair_price") is None
    assert await a.instruments() == ["AAPL"]
    await a.aclose()
    await b.aclose()


async def test_binding_to_a_runtime_connection_keeps_the_own_one_for_aclose(redis_url: str) -> None:
    cache = DataCache(redis_url)
    await cache.set("AAPL", "fair_price", 1.0)  # opens the cache's own connection
    own = cache.client
    shared = aioredis.Redis.from_url(redis_url, decode_responses=True)
    cache.bind(shared, cache.keys, FakeClock())
    assert cache.client is shared
    await cache.aclose()
    assert not any(c.is_connected for c in own.connection_pool._available_connections)  # closed, not leaked
    assert await shared.ping()  # the runtime's connection is not the cache's to close
    await shared.aclose()
