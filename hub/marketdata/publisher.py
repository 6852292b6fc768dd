"""The hub's hot path: buffer quotes per symbol, flush them to Redis in one pipeline.

Sources call :meth:`Publisher.add_quote` (plain function, no await) from their
receive handler. A flush task sends, per symbol, one ``PUBLISH`` carrying every
quote buffered since the last flush (see core.codec) and one ``HSET`` of the
latest quote. While a flush is in flight new quotes keep buffering, so batches
grow exactly when Redis is the bottleneck and stay tiny when it is not.

The flush goes out as one pre-encoded RESP buffer on a lean connection of its
own (core.resp), opened from the redis-py client's settings: through redis-py's
pipeline the per-command packing and reply handling cost more CPU than
everything else the hub does (see docs/performance.md). Losing Redis raises
RedisUnavailableError; on a cluster or under Sentinel the flush is sent again on
the new master first, for as long as a failover takes (core.cluster, core.sentinel).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from core.cluster import NodeConnections, is_cluster, through_failover
from core.codec import QuoteRow, encode_quote_rows
from core.keys import Keys
from core.resp import Address, RespConnection
from core.sentinel import MasterConnection, is_sentinel, through_master_failover

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
    #: quotes published per symbol (one dict update per symbol and flush, not per quote)
    by_symbol: dict[str, int] = field(default_factory=dict)


class Publisher:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        # on a Redis Cluster: one connection per master, each symbol's commands to its slot's master
        self._nodes = NodeConnections(client) if is_cluster(client) else None
        # under Sentinel: the master's connection, reopened on the promoted replica after a failover
        self._master = MasterConnection(client) if is_sentinel(client) else None
        self._publish_verb = b"SPUBLISH" if self._nodes is not None else b"PUBLISH"
        self._address = Address() if self._nodes is not None else Address.from_client(client)
        self._connection: RespConnection | None = None
        self._running = False
        self._pending: dict[str, list[QuoteRow]] = {}
        self._wake = asyncio.Event()
        self._prefixes: dict[str, tuple[bytes, bytes]] = {}
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
        self._running = True
        try:
            while not stop.is_set():
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait((waker, stopper), return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                await self.flush()
            await self.flush()
        finally:
            self._running = False
            stopper.cancel()
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            if self._nodes is not None:
                self._nodes.close()
            if self._master is not None:
                self._master.close()

    async def flush(self) -> None:
        self._wake.clear()
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        if self._nodes is not None:
            await self._send_to_nodes(self._nodes, batch)
            if not self._running:  # a one-off flush: as on one node, no connection stays open behind it
                self._nodes.close()
        elif self._master is not None:
            buf, replies = self._encode(batch), 2 * len(batch)
            await through_master_failover(self._master, lambda connection: connection.send(buf, replies))
            if not self._running:
                self._master.close()
        elif self._running:
            connection = self._connection or await self._connect()
            await connection.send(self._encode(batch), 2 * len(batch))
        else:  # a one-off flush (tools, tests): no connection is left open behind it
            connection = await RespConnection.open(self._address)
            try:
                await connection.send(self._encode(batch), 2 * len(batch))
            finally:
                connection.close()
        by_symbol = self.stats.by_symbol
        for symbol, rows in batch.items():
            by_symbol[symbol] = by_symbol.get(symbol, 0) + len(rows)
        self.stats.quotes += sum(len(rows) for rows in batch.values())
        self.stats.messages += len(batch)
        self.stats.flushes += 1
        for listener in self.listeners:
            listener(batch)

    async def _send_to_nodes(self, nodes: NodeConnections, batch: dict[str, list[QuoteRow]]) -> None:
        """Cluster mode: each master gets its own symbols' SPUBLISH+HSET buffer, all in flight at once.

        Through a failover or a slot move, only the symbols whose master failed are sent again, once
        the slot map is fresh; agents on the healthy masters see nothing twice."""
        unsent = dict(batch)

        async def send() -> None:
            groups = list((await nodes.group(unsent, self._keys.latest_quote)).items())
            results = await asyncio.gather(*(self._send_group(connection, symbols, unsent)
                                             for connection, symbols in groups), return_exceptions=True)
            for (_, symbols), result in zip(groups, results, strict=True):
                if result is None:
                    for symbol in symbols:
                        del unsent[symbol]
            for result in results:
                if isinstance(result, BaseException):
                    raise result

        await through_failover(nodes, send)

    async def _send_group(self, connection: RespConnection, symbols: list[str],
                          batch: dict[str, list[QuoteRow]]) -> None:
        await connection.send(self._encode({s: batch[s] for s in symbols}), 2 * len(symbols))

    def _encode(self, batch: dict[str, list[QuoteRow]]) -> bytes:
        """Per symbol, PUBLISH of the batch and HSET of the latest quote, as one RESP buffer."""
        out = []
        for symbol, rows in batch.items():
            publish, hset = self._prefixes.get(symbol) or self._prefix(symbol)
            payload = encode_quote_rows(symbol, rows)
            ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size = rows[-1]
            out.append(publish % (len(payload), payload))
            bid_b, bid_size_b, ask_b, ask_size_b = (repr(bid).encode(), repr(bid_size).encode(),
                                                    repr(ask).encode(), repr(ask_size).encode())
            ts_b, recv_b = b"%d" % ts_event_ns, b"%d" % ts_recv_ns
            out.append(hset % (len(bid_b), bid_b, len(bid_size_b), bid_size_b, len(ask_b), ask_b,
                               len(ask_size_b), ask_size_b, len(ts_b), ts_b, len(recv_b), recv_b))
        return b"".join(out)

    def _prefix(self, symbol: str) -> tuple[bytes, bytes]:
        """RESP templates for a symbol's two commands, with %-slots for the variable parts."""
        channel = self._keys.quote_channel(symbol).encode()
        key = self._keys.latest_quote(symbol).encode()
        # names go into %-templates: escape their '%' after measuring their real length
        verb = self._publish_verb
        publish = b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(verb), verb, len(channel), channel.replace(b"%", b"%%")) \
            + b"$%d\r\n%s\r\n"
        hset = b"*14\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (len(key), key.replace(b"%", b"%%")) + b"".join(
            b"$%d\r\n%s\r\n" % (len(name), name) + b"$%d\r\n%s\r\n"
            for name in (b"bid", b"bid_size", b"ask", b"ask_size", b"ts_ns", b"ts_recv_ns"))
        self._prefixes[symbol] = (publish, hset)
        return publish, hset

    async def _connect(self) -> RespConnection:
        self._connection = await RespConnection.open(self._address)
        return self._connection
