"""What ``appendfsync always`` would cost the stack's Redis, against deploy/redis.conf's ``everysec``.

    python -m bench.durability [--quotes 300000] [--count 3000] [--samples 300] [--dir DIR]

For each policy a private redis-server with ``appendonly yes`` (in ``--dir``, default a temp dir
on the same disk as var/redis) runs:

- the hub's publish path (hub.marketdata.publisher.Publisher, PUBLISH + HSET per symbol and
  flush): quotes/s, since with ``always`` every event-loop turn that wrote anything fsyncs;
- one agent's XADD of an intent, round trip: p50/p99 in us;
- quote -> agent latency (bench.latency: hub process -> Redis -> agent process writing its cache),
  because subscribers' messages leave Redis only after the fsync of the same event-loop turn;
- the gateway with the sim broker (bench.gateway): intent -> ack latency and intents/s.

First, the loss side: 100 acknowledged writes, one at a time, on a fresh deploy/redis.conf Redis,
then kill -9 at once, restart, count (10 times per policy). tests/test_durability.py measures a kill
mid-flow with the whole order path; docs/failure-modes.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import redis
import uvloop

from bench import gateway, latency
from bench.publish import FRAME
from bench.server import start_redis_server
from bench.workload import QuoteTuple, make_quotes
from core.acl import setup
from core.connection import redis_client
from core.intents import encode_intent
from core.keys import Keys
from core.orders import Intent, to_decimal
from hub.marketdata.publisher import Publisher

POLICIES = ("everysec", "always")
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "redis.conf"


async def publish_rate(url: str, quotes: list[QuoteTuple]) -> tuple[float, int]:
    """bench.publish.project's loop, reporting what the publisher dropped instead of failing on it."""
    client = redis_client(url, decode=False)
    publisher = Publisher(client, Keys("bench"))
    stop = asyncio.Event()
    start = time.perf_counter()
    flusher = asyncio.create_task(publisher.run(stop))
    for i in range(0, len(quotes), FRAME):
        now_ns = time.time_ns()
        for symbol, ts_ns, bid, bid_size, ask, ask_size in quotes[i:i + FRAME]:
            publisher.add_quote(symbol, ts_ns, bid, bid_size, ask, ask_size, now_ns)
        await asyncio.sleep(0)
    stop.set()
    await flusher
    rate = publisher.stats.quotes / (time.perf_counter() - start)
    await client.aclose()
    return rate, publisher.stats.dropped


def xadd_latency_us(port: int, samples: int) -> list[float]:
    client = redis.Redis(port=port)
    fields = encode_intent(Intent("submit", "bench", client_order_id="x", symbol="BENCH", side="buy",
                                  order_type="limit", qty=to_decimal(1, "qty"), limit_price=to_decimal("99", "price"),
                                  ts_ns=time.time_ns()))
    out = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        client.xadd("bench:durability:intents", fields)  # type: ignore[arg-type]
        out.append((time.perf_counter_ns() - started) / 1e3)
    client.delete("bench:durability:intents")
    client.close()
    return sorted(out)


def kill_loss(policy: str, workdir: Path, writes: int = 100) -> int:
    """Acknowledged HSETs missing after a kill -9 straight after they were written, on a fresh start of
    the stack's Redis (deploy/redis.conf with its ACL): the window everysec leaves while an fsync runs."""
    setup(workdir)
    server = start_redis_server("--appendfsync", policy, base=(), config_file=str(DEPLOY_CONF),
                                workdir=workdir / "redis")
    password = (workdir / "secrets" / "admin.password").read_text().strip()
    client = redis.Redis(port=server.port, username="admin", password=password)
    for i in range(writes):  # one at a time, as order changes arrive: each one acknowledged before the next
        client.hset(f"bench:order:{i}", "status", "new")
    server.kill()
    server.start()
    kept = sum(1 for _ in client.scan_iter(match="bench:order:*", count=1000))
    client.close()
    server.stop()
    return writes - kept


def run_policy(policy: str, workdir: Path, quotes: int, count: int, samples: int) -> None:
    server = start_redis_server("--appendonly", "yes", "--appendfsync", policy, workdir=workdir)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rate, dropped = runner.run(publish_rate(server.url, make_quotes(quotes)))
        lat = xadd_latency_us(server.port, samples * 3)
        print(f"appendfsync {policy}: hub publish {rate:,.0f} quotes/s ({dropped} conflated); agent XADD p50 "
              f"{statistics.median(lat):.0f} us, p99 {lat[int(len(lat) * 0.99) - 1]:.0f} us")
        for rate in (1_000, 10_000):
            result = latency.project_run(server.url, rate, 3.0, cache_write=True)
            run, cache = result["run"], result["cache_visible"]
            print(f"  quote -> agent run() at {rate}/s: p50 {run['p50_us']:.0f} us, p99 {run['p99_us']:.0f} us; "
                  f"cache write visible p50 {cache['p50_us']:.0f} us, p99 {cache['p99_us']:.0f} us")
        asyncio.run(gateway.main_async(server.url, count, samples))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.durability")
    parser.add_argument("--quotes", type=int, default=300_000)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--dir", default=None, help="where the AOF goes (default: a temp dir)")
    parser.add_argument("--loss-only", action="store_true", help="only the kill -9 loss probe")
    args = parser.parse_args()
    for policy in POLICIES:
        lost = []
        for _ in range(10):
            workdir = Path(tempfile.mkdtemp(prefix=f"tf-aof-{policy}-", dir=args.dir))
            try:
                lost.append(kill_loss(policy, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        print(f"appendfsync {policy}: kill -9 right after 100 acknowledged writes lost {lost}")
    if args.loss_only:
        return
    for policy in POLICIES:
        workdir = Path(tempfile.mkdtemp(prefix=f"tf-aof-{policy}-", dir=args.dir))
        try:
            run_policy(policy, workdir, args.quotes, args.count, args.samples)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
