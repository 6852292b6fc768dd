"""The hub's hot path: buffer quotes per symbol, flush them to Redis in one pipeline.

Sources call :meth:`Publisher.add_quote` (plain function, no await) from their
receive handler. A flush task sends, per symbol, one ``PUBLISH`` carrying every
quote buffered since the last flush (see hub.codec) and one ``HSET`` of the
latest quote. While a flush is in flight new quotes keep buffering, so batches
grow exactly when Redis is the bottleneck and stay tiny when it is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from hub.codec import QuoteRow, encode_quote_rows
from hub.keys import Keys

log = logging.getLogger(__name__)

#: Per symbol and flush; older quotes beyond it are dropped (and counted) under overload.
MAX_ROWS_PER_SYMBOL = 2_000

FlushListener = Callable[[dict[str, list[QuoteRow]]], None]


@dataclass
class PublisherStats:
    quotes: int = 0
    messages: int = 0
    flushes: int = 0
    dropped: int = 0


class Publisher:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._pending: dict[str, list[QuoteRow]] = {}
        self._wake = asyncio.Event()
        self._channels: dict[str, bytes] = {}
        self._hashes: dict[str, str] = {}
        self.stats = PublisherStats()
        self.listeners: list[FlushListener] = []

    def add_quote(self, symbol: str, ts_event_ns: int, bid: float, bid_size: float, ask: float,
                  ask_size: float, ts_recv_ns: int = 0) -> None:
        """Buffer one quote; ``ts_recv_ns`` defaults to now."""
        rows = self._pending.get(symbol)
        if rows is None:
            rows = self._pending[symbol] = []
        elif len(rows) >= MAX_ROWS_PER_SYMBOL:
            del rows[0]
            self.stats.dropped += 1
        rows.append((ts_event_ns, ts_recv_ns or time.time_ns(), bid, bid_size, ask, ask_size))
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush whenever quotes are buffered, until ``stop``; then flush what is left."""
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait((waker, stopper), return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                await self.flush()
            await self.flush()
        finally:
            stopper.cancel()

    async def flush(self) -> None:
        self._wake.clear()
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        pipe = self._client.pipeline(transaction=False)
        for symbol, rows in batch.items():
            pipe.publish(self._channel(symbol), encode_quote_rows(symbol, rows))
            ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size = rows[-1]
            pipe.hset(self._hash(symbol), mapping={
                "bid": repr(bid), "bid_size": repr(bid_size), "ask": repr(ask), "ask_size": repr(ask_size),
                "ts_ns": ts_event_ns, "ts_recv_ns": ts_recv_ns})
            self.stats.quotes += len(rows)
        await pipe.execute()
        self.stats.messages += len(batch)
        self.stats.flushes += 1
        for listener in self.listeners:
            listener(batch)

    def _channel(self, symbol: str) -> bytes:
        channel = self._channels.get(symbol)
        if channel is None:
            channel = self._channels[symbol] = self._keys.quote_channel(symbol).encode()
        return channel

    def _hash(self, symbol: str) -> str:
        name = self._hashes.get(symbol)
        if name is None:
            name = self._hashes[symbol] = self._keys.latest_quote(symbol)
        return name
