"""Baseline processes for the latency benchmarks: ``python -m bench.peers ROLE URL ...``.

- ``bare-pub URL RATE SYMBOLS``: redis-py asyncio, one msgpack quote per PUBLISH, paced every
  millisecond with the due quotes in one pipeline, each stamped just before it is packed;
- ``bare-sub URL SYMBOLS OUT [SLEEP_S]``: redis-py ``pubsub.listen()``, records now - stamp per
  message (optionally sleeping per message, as a naive slow consumer does);
- ``raw-pub`` / ``raw-sub``: the same with the minimal RESP client.

Each runs until SIGTERM; subscribers then write their samples (JSON) to OUT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

import msgpack
import redis.asyncio as aioredis
import uvloop

from bench.rawresp import RawSubscriber, RawWriter, command

STEP_S = 0.001


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    return stop


async def bare_pub(url: str, rate: float, symbols: list[str]) -> None:
    client = aioredis.Redis.from_url(url)
    stop = _stop_event()
    start, sent, i = time.monotonic(), 0, 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate) - sent
        if due > 0:
            pipe = client.pipeline(transaction=False)
            for _ in range(due):
                symbol = symbols[i % len(symbols)]
                i += 1
                now_ns = time.time_ns()
                pipe.publish(f"tf:md:quote:{symbol}", msgpack.packb((symbol, now_ns, now_ns, 100.0, 1.0, 100.01, 1.0)))
            await pipe.execute()
            sent += due
        await asyncio.sleep(STEP_S)
    await client.aclose()


async def bare_sub(url: str, symbols: list[str], out: str, sleep_s: float) -> None:
    client = aioredis.Redis.from_url(url)
    stop = _stop_event()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*(f"tf:md:quote:{s}" for s in symbols))
    samples: list[int] = []
    result: dict[str, Any] = {"received": 0, "error": None}

    async def consume() -> None:
        async for message in pubsub.listen():
            quote = msgpack.unpackb(message["data"])
            samples.append(time.time_ns() - quote[2])
            result["received"] += 1
            if sleep_s:
                await asyncio.sleep(sleep_s)

    task = asyncio.create_task(consume())
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task.done() and task.exception() is not None:
        result["error"] = repr(task.exception())
    task.cancel()
    with open(out, "w") as f:
        json.dump({"run_ns": samples, **result}, f)


def raw_pub(url: str, rate: float, symbols: list[str]) -> None:
    writer = RawWriter(url)
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    channels = [f"tf:md:quote:{s}".encode() for s in symbols]
    pack = msgpack.Packer().pack
    start, sent, i = time.monotonic(), 0, 0
    while not stopped:
        due = int((time.monotonic() - start) * rate) - sent
        out = []
        for _ in range(max(due, 0)):
            now_ns = time.time_ns()
            out.append(command(b"PUBLISH", channels[i % len(channels)], pack((1, "", ((now_ns, now_ns, 1.0, 1.0,
                                                                                          1.0, 1.0),)))))
            i += 1
        if out:
            writer.send(b"".join(out), len(out))
            sent += len(out)
        time.sleep(STEP_S)
    writer.close()


def raw_sub(url: str, symbols: list[str], out: str) -> None:
    subscriber = RawSubscriber(url, [f"tf:md:quote:{s}".encode() for s in symbols])
    subscriber.wait_subscribed()
    samples: list[int] = []
    unpackb = msgpack.unpackb

    def on_message(channel: bytes, data: bytes) -> bool:
        samples.append(time.time_ns() - unpackb(data)[2][-1][1])
        return False

    def dump(*_: object) -> None:
        with open(out, "w") as f:
            json.dump({"run_ns": samples, "received": len(samples), "error": None}, f)
        sys.exit(0)

    signal.signal(signal.SIGTERM, dump)
    subscriber.read(on_message)


def main(argv: list[str]) -> None:
    role, url = argv[0], argv[1]
    if role == "bare-pub":
        uvloop.run(bare_pub(url, float(argv[2]), argv[3].split(",")))
    elif role == "bare-sub":
        uvloop.run(bare_sub(url, argv[2].split(","), argv[3], float(argv[4]) if len(argv) > 4 else 0.0))
    elif role == "raw-pub":
        raw_pub(url, float(argv[2]), argv[3].split(","))
    elif role == "raw-sub":
        raw_sub(url, argv[2].split(","), argv[3])
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
