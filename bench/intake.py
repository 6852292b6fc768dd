"""One agent's intake: quotes/s read off the subscription, decoded and conflated to the latest per symbol.

A feeder thread writes a pre-built pipeline of PUBLISH commands (it costs
almost no Python time: one ``sendall``), so the subscriber under test is the
bottleneck. Redis may queue freely during this test (the pub/sub output
limit is lifted and restored after), so every row reads every quote.

- ``bare``: redis-py asyncio ``pubsub.listen()`` + ``msgpack.unpackb`` + a dict
  of latest quotes, one quote per message (what a typical user writes);
- ``raw``: the minimal hand-parsed RESP reader, unpacking the project's batches
  and keeping the last row per symbol;
- ``project``: a real AgentRuntime (agents/runtime.py) around a no-op agent,
  reading the project's batches.

Rows ending in ``_1`` read one quote per message: the reader path alone,
without the wire format's batching.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import msgpack
import redis
import redis.asyncio as aioredis

from agents.base import TradingAgent
from agents.events import Event
from agents.runtime import AgentRuntime
from bench.publish import KEYS, run_uvloop
from bench.rawresp import RawSubscriber, RawWriter, command
from bench.server import PUBSUB_LIMIT, set_pubsub_limit
from bench.workload import QuoteTuple, make_quotes
from cache import DataCache
from core.codec import encode_quote_rows
from core.connection import redis_client

BATCH = 10


class NoopAgent(TradingAgent):
    async def run(self, data: Event) -> None:
        return None


def project_feed(quotes: list[QuoteTuple], batch: int) -> tuple[bytes, int]:
    """PUBLISH commands carrying ``batch`` quotes per message, per symbol, in the hub's format."""
    out, pending, messages = [], {}, 0
    now_ns = time.time_ns()
    for symbol, ts_ns, bid, bid_size, ask, ask_size in quotes:
        rows = pending.setdefault(symbol, [])
        rows.append((ts_ns, now_ns, bid, bid_size, ask, ask_size))
        if len(rows) == batch:
            out.append(command(b"PUBLISH", KEYS.quote_channel(symbol).encode(), encode_quote_rows(symbol, rows)))
            messages += 1
            del pending[symbol]
    for symbol, rows in pending.items():
        out.append(command(b"PUBLISH", KEYS.quote_channel(symbol).encode(), encode_quote_rows(symbol, rows)))
        messages += 1
    return b"".join(out), messages


def bare_feed(quotes: list[QuoteTuple]) -> tuple[bytes, int]:
    now_ns = time.time_ns()
    return b"".join(command(b"PUBLISH", f"tf:md:quote:{q[0]}".encode(),
                            msgpack.packb((q[0], q[1], now_ns, *q[2:]))) for q in quotes), len(quotes)


class Feeder:
    """Sends the buffer from a thread once every channel has a subscriber."""

    def __init__(self, url: str, feed: tuple[bytes, int], channels: list[str]) -> None:
        self._url, (self._buf, self._commands), self._channels = url, feed, channels
        self.started = 0.0
        self._thread = threading.Thread(target=self._send, daemon=True)

    def start_when_subscribed(self) -> None:
        client = redis.Redis.from_url(self._url)
        deadline = time.monotonic() + 10
        while not all(n >= 1 for _, n in client.pubsub_numsub(*self._channels)):
            if time.monotonic() > deadline:
                raise RuntimeError("subscriber did not subscribe within 10 s")
            time.sleep(0.005)
        client.close()
        self.started = time.perf_counter()
        self._thread.start()

    def _send(self) -> None:
        # every reply is read before closing: closing with unread replies resets the connection,
        # and Redis drops what it has not read yet
        writer = RawWriter(self._url)
        writer.send(self._buf, self._commands)
        writer.wait_all()
        writer.close()

    def join(self) -> None:
        self._thread.join()


async def _start_feeder_soon(feeder: Feeder) -> None:
    await asyncio.to_thread(feeder.start_when_subscribed)


async def bare(url: str, quotes: list[QuoteTuple], symbols: list[str]) -> float:
    channels = [f"tf:md:quote:{s}" for s in symbols]
    feeder = Feeder(url, bare_feed(quotes), channels)
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*channels)
    starter = asyncio.create_task(_start_feeder_soon(feeder))
    latest: dict[str, Any] = {}
    count = 0
    async for message in pubsub.listen():
        quote = msgpack.unpackb(message["data"])
        latest[quote[0]] = quote
        count += 1
        if count == len(quotes):
            break
    rate = count / (time.perf_counter() - feeder.started)
    await starter
    feeder.join()
    await pubsub.aclose()
    await client.aclose()
    return rate


def raw(url: str, quotes: list[QuoteTuple], symbols: list[str], batch: int) -> float:
    feed = project_feed(quotes, batch)
    subscriber = RawSubscriber(url, [KEYS.quote_channel(s).encode() for s in symbols])
    subscriber.wait_subscribed()
    feeder = Feeder(url, feed, [KEYS.quote_channel(s) for s in symbols])
    latest: dict[bytes, Any] = {}
    total = len(quotes)
    count = 0
    unpackb = msgpack.unpackb

    def on_message(channel: bytes, data: bytes) -> bool:
        nonlocal count
        rows = unpackb(data)[2]
        latest[channel] = rows[-1]
        count += len(rows)
        return count >= total

    feeder.start_when_subscribed()
    subscriber.read(on_message)
    rate = count / (time.perf_counter() - feeder.started)
    feeder.join()
    subscriber.close()
    return rate


async def project(url: str, quotes: list[QuoteTuple], symbols: list[str], batch: int) -> float:
    feed = project_feed(quotes, batch)
    client, raw_client = redis_client(url), redis_client(url, decode=False)
    agent = NoopAgent({"instruments": symbols, "throttle": "100ms", "name": f"bench_intake_{batch}"},
                      DataCache(url))
    runtime = AgentRuntime(agent, client=client, raw_client=raw_client, keys=KEYS)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    feeder = Feeder(url, feed, [KEYS.quote_channel(s) for s in symbols])
    await asyncio.to_thread(feeder.start_when_subscribed)
    total = len(quotes)
    deadline = time.perf_counter() + 120
    while runtime.stats.received < total and time.perf_counter() < deadline and not task.done():
        await asyncio.sleep(0.002)
    rate = runtime.stats.received / (time.perf_counter() - feeder.started)
    stop.set()
    await task
    feeder.join()
    await client.aclose()
    await raw_client.aclose()
    return rate


def run(url: str, smoke: bool) -> dict[str, Any]:
    count = 20_000 if smoke else 400_000
    quotes = make_quotes(count)
    symbols = sorted({q[0] for q in quotes})
    set_pubsub_limit(url, "pubsub 0 0 0")
    try:
        rows = {
            "bare": run_uvloop(bare(url, quotes, symbols)),
            "raw": raw(url, quotes, symbols, BATCH),
            "project": run_uvloop(project(url, quotes, symbols, BATCH)),
            "raw_1": raw(url, quotes, symbols, 1),
            "project_1": run_uvloop(project(url, quotes, symbols, 1)),
        }
    finally:
        set_pubsub_limit(url, PUBSUB_LIMIT)
    return {"unit": "quotes/s", "quotes": count, "batch": BATCH, "symbols": len(symbols),
            **{k: round(v) for k, v in rows.items()},
            "project_vs_bare": round(rows["project"] / rows["bare"], 2),
            "project_vs_raw": round(rows["project"] / rows["raw"], 2),
            "project_1_vs_raw_1": round(rows["project_1"] / rows["raw_1"], 2)}
