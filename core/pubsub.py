"""Classic SUBSCRIBE through redis-py that rides out a failover, for the control and execution channels.

On a cluster redis-py's pub/sub connection belongs to the master serving the channel's slot; when that
master dies its retries keep dialling the dead node. :func:`follow_channels` subscribes again on a fresh
connection (after the slot map is read again) for up to :data:`~core.failover.FAILOVER_WAIT_S`, as the
lean shard subscriptions do. (Under Sentinel redis-py's own retry already reconnects to the promoted
master; this loop then only sees a Redis that stayed away past that wait.) Messages published
in between are lost: pub/sub is not durable, and every caller has a durable record to fall back on (the
wanted-symbols set, the order hashes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from core.cluster import is_cluster, refresh_slots, retryable
from core.errors import RedisUnavailableError
from core.failover import FAILOVER_WAIT_S, backoff

log = logging.getLogger(__name__)


async def follow_channels(client: aioredis.Redis, channels: Sequence[str], handle: Callable[[Any], Awaitable[None]],
                          stop: asyncio.Event | None = None, *,
                          on_subscribed: Callable[[], Awaitable[None]] | None = None,
                          on_lost: Callable[[], None] | None = None, poll_s: float = 1.0,
                          wait_s: float = FAILOVER_WAIT_S) -> None:
    """Hand each message's data to ``handle`` until ``stop`` is set (forever without one).

    ``on_subscribed`` runs after every (re)subscription, ``on_lost`` when a subscription is lost; a
    Redis that stays away for ``wait_s`` raises RedisUnavailableError, and any other error is raised as is.
    """
    failing_since: float | None = None
    waits = backoff()
    failures = 0
    while stop is None or not stop.is_set():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*channels)
            failing_since = None
            failures = 0
            if on_subscribed is not None:
                await on_subscribed()
            while stop is None or not stop.is_set():
                # polled, not cancelled: a cancelled redis-py listen() on a quiet channel can hang
                message = await pubsub.get_message(timeout=poll_s)
                if message is not None:
                    await handle(message["data"])
            return
        except Exception as e:
            if not retryable(e):
                raise
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since >= wait_s:
                raise RedisUnavailableError(f"lost the subscription to {', '.join(channels)} for {wait_s:.0f}s: "
                                            f"{e}") from e
            log.warning("subscription to %s lost (%s); subscribing again", ", ".join(channels), e)
        finally:
            if on_lost is not None:
                on_lost()
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        failures += 1
        await asyncio.sleep(waits.compute(failures))
        if is_cluster(client):
            await refresh_slots(client)
