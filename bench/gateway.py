"""Measure the gateway with the sim broker: intent -> acknowledgement latency, and intents/s.

    python -m bench.gateway --redis-url redis://127.0.0.1:6379/0 [--count 5000] [--samples 500]

Starts its own gateway subprocess under the namespace ``bench`` (so a running stack is not
touched), with risk limits opened up, and deletes the namespace's keys afterwards.

- latency: one resting limit order at a time; from just before XADD to the gateway's
  ``new`` message arriving on the exec channel (what an agent's wait_for/on_update sees);
- throughput: ``count`` intents appended at once; intents/s until the consumer group
  has read and acknowledged all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import redis.asyncio as aioredis

from core.intents import encode_intent
from core.keys import Keys
from core.orders import Intent, to_decimal

KEYS = Keys("bench")


def _intent(coid: str) -> dict[str, str]:
    return encode_intent(Intent("submit", "bench", client_order_id=coid, symbol="BENCH", side="buy",
                                order_type="limit", qty=to_decimal(1, "qty"), limit_price=to_decimal("99", "price"),
                                ts_ns=time.time_ns()))


async def _wait_ready(client: aioredis.Redis, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not await client.exists(KEYS.gateway("gateway")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the gateway did not start")
        await asyncio.sleep(0.05)


async def latency_us(client: aioredis.Redis, samples: int) -> list[float]:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(KEYS.exec_channel())
    results = []
    for i in range(samples):
        coid = f"lat-{i}"
        started = time.perf_counter_ns()
        await client.xadd(KEYS.order_intents(), _intent(coid))
        deadline = time.monotonic() + 5.0
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:  # also what an ignored subscribe confirmation gives
                if time.monotonic() > deadline:
                    raise SystemExit(f"no acknowledgement for {coid} within 5s")
                continue
            fields = json.loads(message["data"])
            if fields["client_order_id"] == coid and fields["event"] in ("new", "rejected"):
                results.append((time.perf_counter_ns() - started) / 1e3)
                break
    await pubsub.aclose()
    return results


async def throughput(client: aioredis.Redis, count: int) -> float:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(KEYS.order_intents(), _intent(f"tp-{i}"))
    started = time.perf_counter()
    await pipe.execute()
    while True:
        group = (await client.xinfo_groups(KEYS.order_intents()))[0]
        if group["pending"] == 0 and group["lag"] == 0:
            return count / (time.perf_counter() - started)
        await asyncio.sleep(0.002)


async def main_async(redis_url: str, count: int, samples: int) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await _cleanup(client)
    await client.hset(KEYS.latest_quote("BENCH"), mapping={"bid": "100", "bid_size": "100", "ask": "100.02",
                                                             "ask_size": "100", "ts_ns": time.time_ns()})
    big = "1000000000"
    proc = subprocess.Popen([sys.executable, "-m", "hub.execution", "--broker", "sim", "--namespace", "bench",
                             "--redis-url", redis_url, "--order-rate", big, "--order-burst", big,
                             "--max-open-orders", big, "--max-position", big, "--log-level", "WARNING"],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        await _wait_ready(client, proc)
        lat = sorted(await latency_us(client, samples))
        rate = await throughput(client, count)
        print(f"intent -> ack latency over {samples} sequential orders: p50 {statistics.median(lat):.0f} us, "
              f"p90 {lat[int(len(lat) * 0.9)]:.0f} us, p99 {lat[int(len(lat) * 0.99) - 1]:.0f} us")
        print(f"throughput: {count} intents handled and acknowledged at {rate:,.0f} intents/s")
    finally:
        proc.terminate()
        proc.wait(10)
        await _cleanup(client)
        await client.aclose()


async def _cleanup(client: aioredis.Redis) -> None:
    async for key in client.scan_iter(match="bench:*", count=1000):
        await client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main_async(args.redis_url, args.count, args.samples))


if __name__ == "__main__":
    main()
