"""Order path: intent -> gateway acknowledgement latency and intents/s, sim broker.

Runs bench.gateway's measurements (a real ``python -m hub.execution``
gateway process, namespace ``bench``) against the bench's Redis. The baseline
is the floor of any Redis-mediated round trip: a bare redis-py PING, measured
sequentially in the same run (the gateway path is two hops: XADD to the
stream, the gateway's PUBLISH back).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from bench import gateway as gateway_bench
from bench.procs import REPO
from bench.workload import percentiles


async def _ping_ns(client: aioredis.Redis, samples: int) -> list[int]:
    out = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        await client.ping()
        out.append(time.perf_counter_ns() - started)
    return out


async def _run(url: str, samples: int, count: int) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    await gateway_bench._cleanup(client)
    await client.hset(gateway_bench.KEYS.latest_quote("BENCH"), mapping={
        "bid": "100", "bid_size": "100", "ask": "100.02", "ask_size": "100", "ts_ns": time.time_ns()})
    big = "1000000000"
    proc = subprocess.Popen([sys.executable, "-m", "hub.execution", "--broker", "sim", "--namespace", "bench",
                             "--redis-url", url, "--order-rate", big, "--order-burst", big,
                             "--max-open-orders", big, "--max-position", big, "--log-level", "WARNING"],
                            cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await gateway_bench._wait_ready(client, proc)
        lat_us = await gateway_bench.latency_us(client, samples)
        rate = await gateway_bench.throughput(client, count)
        ping = percentiles(await _ping_ns(client, samples))
    finally:
        proc.terminate()
        proc.wait(10)
        await gateway_bench._cleanup(client)
        await client.aclose()
    ack = percentiles([int(x * 1e3) for x in lat_us])
    return {"unit": "us, intents/s", "ack": ack, "intents_per_s": round(rate), "bare_ping": ping,
            "ack_p50_vs_ping": round(ack["p50_us"] / ping["p50_us"], 1)}


def run(url: str, smoke: bool) -> dict[str, Any]:
    return asyncio.run(_run(url, 100 if smoke else 1000, 300 if smoke else 10_000))
