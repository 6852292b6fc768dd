"""The quotes the simulated broker matches against, as they cross the bus.

On one node (or under Sentinel) the hub PUBLISHes every symbol's quotes and the broker takes them all with
one PSUBSCRIBE. On a cluster the hub SPUBLISHes each symbol on its slot's master, and sharded pub/sub has
no patterns: the broker subscribes symbol by symbol (:meth:`QuoteFeed.follow`), before it first reads a
symbol's latest quote, so no quote falls between that read and the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from core.cluster import ShardedSubscription, is_cluster
from core.keys import Keys

#: How often the feed looks at the stop event while the bus is quiet.
POLL_S = 0.2

MessageHandler = Callable[[bytes], Awaitable[None]]


class QuoteFeed:
    """Hands each quote message (still encoded) to ``handle``, one at a time, until stopped."""

    def __init__(self, raw_client: aioredis.Redis, keys: Keys) -> None:
        self._client = raw_client
        self._keys = keys
        self._sharded = ShardedSubscription(raw_client) if is_cluster(raw_client) else None
        self._followed: set[str] = set()
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._new_node = asyncio.Event()  # a subscription on a master the listener does not watch yet

    @property
    def followed(self) -> frozenset[str]:
        """Every symbol an order was placed on since start: a subscription is kept, not undone when the
        symbol's last order ends (its next order finds it in place)."""
        return frozenset(self._followed)

    async def follow(self, symbol: str) -> None:
        """Make sure ``symbol``'s quotes arrive from now on (a no-op on one node: the pattern covers it)."""
        if self._sharded is None or symbol in self._followed:
            return
        if await self._sharded.subscribe(self._keys.quote_channel(symbol)):
            self._new_node.set()
        self._followed.add(symbol)

    async def run(self, handle: MessageHandler, stop: asyncio.Event) -> None:
        if self._sharded is None:
            await self._run_pattern(handle, stop)
        else:
            await self._run_sharded(self._sharded, handle, stop)

    async def _run_pattern(self, handle: MessageHandler, stop: asyncio.Event) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(self._keys.quote_channel_pattern())
        try:
            while not stop.is_set():
                message = await pubsub.get_message(timeout=POLL_S)
                if message is not None:
                    await handle(message["data"])
        finally:
            await pubsub.aclose()

    async def _run_sharded(self, sharded: ShardedSubscription, handle: MessageHandler, stop: asyncio.Event) -> None:
        listener: asyncio.Future[None] | None = None
        try:
            while not stop.is_set():
                if self._new_node.is_set() or (listener is None and self._followed):
                    # listen() watches the masters it knows when it starts: start it again to cover a new one
                    # (the callback stays installed on every connection, so nothing is missed meanwhile)
                    self._new_node.clear()
                    await _cancel(listener)
                    listener = asyncio.ensure_future(sharded.listen(self._take))
                if listener is not None and listener.done():
                    listener.result()  # a Redis that stayed away past the failover wait: the gateway's exit
                    listener = None
                try:
                    data = await asyncio.wait_for(self._inbox.get(), POLL_S)
                except TimeoutError:
                    continue
                await handle(data)
                while not self._inbox.empty():
                    await handle(self._inbox.get_nowait())
        finally:
            await _cancel(listener)

    async def aclose(self) -> None:
        """Close the shard subscriptions (the broker's close; run's end leaves them to it)."""
        if self._sharded is not None:
            await self._sharded.aclose()
        self._followed.clear()

    def _take(self, _channel: bytes, data: bytes) -> None:
        self._inbox.put_nowait(data)


async def _cancel(task: asyncio.Future[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
