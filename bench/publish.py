"""Hub publish rate: quotes/s from a source's receive handler into Redis, acknowledged.

The same pre-generated quotes arrive in frames of ``FRAME`` quotes (as
alpaca-py hands them over) and are sent by:

- ``bare``: redis-py asyncio as a typical user writes it: one msgpack quote per
  PUBLISH, a pipeline per frame;
- ``raw``: the minimal RESP writer doing the hub's job (per frame and symbol one
  PUBLISH of the batch in the hub's wire format + one HSET of the latest quote);
- ``raw_1``: the minimal RESP writer, one quote per PUBLISH (the message-rate limit);
- ``raw_1000``: the raw writer batching 1,000 quotes per write, about what the publisher's batches
  grow to while a flush is in flight at full speed (shows how much of the project's lead is batching);
- ``project``: hub.marketdata.publisher.Publisher fed through ``add_quote``;
- ``sim``: the sim source generating quotes live as fast as it can, through the Publisher;
- ``alpaca``: the hub process with the alpaca source (alpaca-py) reading the local Alpaca-protocol
  server's blast mode, 100 quotes per frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import redis
import redis.asyncio as aioredis
import uvloop

from bench.procs import Procs, wait_for
from bench.rawresp import RawWriter, command
from bench.server import free_port
from bench.workload import QuoteTuple, make_quotes
from core.codec import encode_quote_rows
from core.connection import redis_client
from core.keys import Keys
from hub.marketdata.publisher import Publisher
from hub.marketdata.sources.sim import SimSettings, SimSource

FRAME = 100
HSET_FIELDS = b"".join(command(name, b"%s")[len(b"*2\r\n"):].replace(b"$2\r\n%s", b"$%d\r\n%s")
                       for name in (b"bid", b"bid_size", b"ask", b"ask_size", b"ts_ns", b"ts_recv_ns"))
KEYS = Keys("tf")


def run_uvloop(coro: Coroutine[Any, Any, float]) -> float:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def timed(fn: Callable[[], None], quotes: int) -> float:
    start = time.perf_counter()
    fn()
    return quotes / (time.perf_counter() - start)


async def bare_redis_py(url: str, quotes: list[QuoteTuple]) -> float:
    client = aioredis.Redis.from_url(url)
    await client.ping()
    start = time.perf_counter()
    for i in range(0, len(quotes), FRAME):
        pipe = client.pipeline(transaction=False)
        for symbol, ts_ns, bid, bid_size, ask, ask_size in quotes[i:i + FRAME]:
            message = (symbol, ts_ns, time.time_ns(), bid, bid_size, ask, ask_size)
            pipe.publish(f"tf:md:quote:{symbol}", msgpack.packb(message))
        await pipe.execute()
    rate = len(quotes) / (time.perf_counter() - start)
    await client.aclose()
    return rate


def raw_batched(url: str, quotes: list[QuoteTuple], frame: int = FRAME) -> float:
    writer = RawWriter(url)
    names = {q[0] for q in quotes}
    publish = {s: command(b"PUBLISH", KEYS.quote_channel(s).encode()).rsplit(b"\r\n", 1)[0].replace(
        b"*2", b"*3", 1) + b"\r\n" for s in names}
    hset = {s: command(b"HSET", KEYS.latest_quote(s).encode()).replace(b"*2", b"*14", 1) for s in names}

    def send_all() -> None:
        for i in range(0, len(quotes), frame):
            batch: dict[str, list[tuple[int, int, float, float, float, float]]] = {}
            now_ns = time.time_ns()
            for symbol, ts_ns, bid, bid_size, ask, ask_size in quotes[i:i + frame]:
                batch.setdefault(symbol, []).append((ts_ns, now_ns, bid, bid_size, ask, ask_size))
            out = []
            for symbol, rows in batch.items():
                ts_ns, recv_ns, bid, bid_size, ask, ask_size = rows[-1]
                payload = encode_quote_rows(symbol, rows)
                out.append(b"%s$%d\r\n%s\r\n" % (publish[symbol], len(payload), payload))
                fields = (repr(bid).encode(), repr(bid_size).encode(), repr(ask).encode(), repr(ask_size).encode(),
                          b"%d" % ts_ns, b"%d" % recv_ns)
                out.append(hset[symbol] + HSET_FIELDS % tuple(x for f in fields for x in (len(f), f)))
            writer.send(b"".join(out), 2 * len(batch))
        writer.wait_all()

    rate = timed(send_all, len(quotes))
    writer.close()
    return rate


def raw_single(url: str, quotes: list[QuoteTuple]) -> float:
    writer = RawWriter(url)
    channels = {s: KEYS.quote_channel(s).encode() for s in {q[0] for q in quotes}}
    pack = msgpack.Packer().pack

    def send_all() -> None:
        for i in range(0, len(quotes), FRAME):
            now_ns = time.time_ns()
            out = [command(b"PUBLISH", channels[q[0]], pack((1, q[0], ((q[1], now_ns, *q[2:]),))))
                   for q in quotes[i:i + FRAME]]
            writer.send(b"".join(out), len(out))
        writer.wait_all()

    rate = timed(send_all, len(quotes))
    writer.close()
    return rate


async def project(url: str, quotes: list[QuoteTuple]) -> float:
    client = redis_client(url, decode=False)
    await client.ping()
    publisher = Publisher(client, KEYS)
    stop = asyncio.Event()
    add = publisher.add_quote
    start = time.perf_counter()
    flusher = asyncio.create_task(publisher.run(stop))
    for i in range(0, len(quotes), FRAME):
        now_ns = time.time_ns()
        for symbol, ts_ns, bid, bid_size, ask, ask_size in quotes[i:i + FRAME]:
            add(symbol, ts_ns, bid, bid_size, ask, ask_size, now_ns)
        await asyncio.sleep(0)  # the source yields to the loop after each frame, as a websocket reader does
    stop.set()
    await flusher
    rate = publisher.stats.quotes / (time.perf_counter() - start)
    assert publisher.stats.quotes == len(quotes), publisher.stats
    await client.aclose()
    return rate


async def sim_source(url: str, duration_s: float, symbol_count: int) -> float:
    """Offer far more than the sim can generate; count what reached Redis (dropped ones excluded)."""
    client = redis_client(url, decode=False)
    await client.ping()
    publisher = Publisher(client, KEYS)
    source = SimSource(tuple(f"S{i:02d}" for i in range(symbol_count)),
                       SimSettings(sim_rate=5_000_000.0, sim_seed=1))
    stop = asyncio.Event()
    start = time.perf_counter()
    tasks = [asyncio.create_task(source.run(publisher, stop)), asyncio.create_task(publisher.run(stop))]
    await asyncio.sleep(duration_s)
    stop.set()
    await asyncio.gather(*tasks)
    rate = publisher.stats.quotes / (time.perf_counter() - start)
    await client.aclose()
    return rate


def alpaca_source(url: str, duration_s: float) -> float:
    """The hub process with the alpaca source, fed by the local Alpaca-protocol server in blast mode
    (100 quotes per frame, as fast as the client reads); quotes/s that reached Redis, from the heartbeat."""
    port = free_port()
    symbols = ",".join(f"S{i:02d}" for i in range(20))
    with Procs(url) as procs:
        procs.start("-m", "tests.alpaca_data_server", "--port", str(port), "--rate", "max", "--batch", "100")
        procs.env.update({"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret",
                          "APCA_DATA_STREAM_URL": f"ws://127.0.0.1:{port}/v2/iex"})
        time.sleep(0.5)
        procs.start("-m", "hub", "--source", "alpaca", "--symbols", symbols, "--name", "bench", "--log-level",
                    "WARNING")
        client = redis.Redis.from_url(url)
        wait_for(lambda: int(client.hget("tf:hub:bench", "quotes") or 0) > 0, "alpaca quotes in Redis")
        first = (time.monotonic(), int(client.hget("tf:hub:bench", "quotes") or 0))
        time.sleep(duration_s)
        wait_for(lambda: int(client.hget("tf:hub:bench", "quotes") or 0) > first[1], "a later heartbeat")
        last = (time.monotonic(), int(client.hget("tf:hub:bench", "quotes") or 0))
        client.close()
    return (last[1] - first[1]) / (last[0] - first[0])


def run(url: str, smoke: bool) -> dict[str, Any]:
    count = 20_000 if smoke else 300_000
    quotes = make_quotes(count)
    rows = {
        "bare": run_uvloop(bare_redis_py(url, quotes)),
        "raw": raw_batched(url, quotes),
        "raw_1": raw_single(url, quotes),
        "raw_1000": raw_batched(url, quotes, 1000),
        "project": run_uvloop(project(url, quotes)),
        "sim": run_uvloop(sim_source(url, 0.5 if smoke else 3.0, 20)),
        "alpaca": alpaca_source(url, 1.0 if smoke else 5.0),
    }
    return {"unit": "quotes/s", "quotes": count, "frame": FRAME, "symbols": 20,
            **{k: round(v) for k, v in rows.items()},
            "project_vs_bare": round(rows["project"] / rows["bare"], 2),
            "project_vs_raw": round(rows["project"] / rows["raw"], 2),
            "sim_vs_raw": round(rows["sim"] / rows["raw"], 2),
            "alpaca_vs_raw": round(rows["alpaca"] / rows["raw"], 2)}
