"""Fan-out on 1 node vs the 3-master cluster: delivered messages/s to subscribers of every symbol.

- Subscribers: ``SUBSCRIBERS`` processes, each subscribed to every one of ``SYMBOLS`` quote channels with
  the agents' own subscriber, built as ``AgentRuntime._subscription`` builds it: on one node a
  :class:`core.resp.Subscription` (SUBSCRIBE), on the cluster a :class:`core.cluster.ShardedSubscription`
  (one SSUBSCRIBE connection per master). The callback counts messages into shared memory.
- Publisher: this process, the same hub wire message per symbol (one quote, ``core.codec``) as
  pre-encoded PUBLISH / SPUBLISH pipelined over ``core.resp`` connections, routed per master by
  ``core.cluster.NodeConnections``. Closed loop: it stays at most ``WINDOW_MSGS`` messages ahead of the
  slowest subscriber, so no output buffer grows and the rate is the whole path's, not Redis's buffering.
- Figures over a window after a warm-up: messages/s delivered (summed over subscribers), and the Redis
  CPU seconds spent meanwhile (``INFO cpu``, user + sys, per node): delivered per Redis CPU second, and
  each master's share of the masters' CPU (a third each is the fan-out spread over the shards), and the
  Redis-bound ceiling: delivered per CPU second of the busiest node, the rate at which that node would
  fill a core of its own (an extrapolation: it assumes the subscribers keep up and costs stay linear).
- ``no_replicas`` (full mode only): the cluster case again on 3 masters without replicas, which shows
  what the replication stream costs (every SPUBLISH is propagated to the shard's replicas).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import redis
import uvloop

from bench.ingest import cpu_s
from core.cluster import NodeConnections, ShardedSubscription, is_cluster
from core.codec import encode_quote_rows
from core.connection import redis_client
from core.keys import Keys
from core.resp import Address, RespConnection, Subscription, command
from tests.cluster import redis_cluster

SYMBOLS = [f"F{i:02d}" for i in range(50)]
SUBSCRIBERS = 4
#: How far (messages) the publisher may run ahead of the slowest subscriber.
WINDOW_MSGS = 5_000
#: Messages per symbol in one pipelined round: 50 symbols x 4 = 200 commands per write.
ROUND_PER_SYMBOL = 4
STALL_S = 10.0

Counter = Any  # multiprocessing.Value("q", lock=False): a 64-bit integer in shared memory


def message(symbol: str) -> bytes:
    now_ns = time.time_ns()
    return encode_quote_rows(symbol, [(now_ns, now_ns, 100.0, 100.0, 100.02, 200.0)])


def _subscription(client: Any) -> Subscription | ShardedSubscription:
    """As ``agents.runtime.AgentRuntime._subscription``: sharded on a cluster, one connection on a node."""
    return ShardedSubscription(client) if is_cluster(client) else Subscription(Address.from_client(client))


async def _count(url: str, channels: list[str], counter: Counter, ready: Any) -> None:
    subscription = _subscription(redis_client(url, decode=False))
    await subscription.subscribe(*channels)
    ready.set()
    received = 0

    def on_message(channel: bytes, data: bytes) -> None:
        nonlocal received
        received += 1

    async def report() -> None:  # to shared memory every millisecond, not per message
        while True:
            counter.value = received
            await asyncio.sleep(0.001)

    reporter = asyncio.ensure_future(report())
    try:
        await subscription.listen(on_message)
    finally:
        reporter.cancel()


def subscriber(url: str, channels: list[str], counter: Counter, ready: Any) -> None:
    """A subscriber process's body (multiprocessing, spawned)."""
    uvloop.run(_count(url, channels, counter, ready))


async def _routes(url: str, keys: Keys) -> tuple[Any, dict[RespConnection, list[str]], bytes]:
    """The client, the symbols per master's connection, and the publish verb."""
    client = redis_client(url, decode=False)
    if is_cluster(client):
        return client, await NodeConnections(client).group(SYMBOLS, keys.quote_channel), b"SPUBLISH"
    return client, {await RespConnection.open(Address.from_client(client)): SYMBOLS}, b"PUBLISH"


def _cpu_s(ports: list[int]) -> list[float]:
    out = []
    for port in ports:
        client = redis.Redis(port=port)
        cpu = client.info("cpu")
        client.close()
        out.append(float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))
    return out


def _cpu_mark(counters: list[Counter], ports: list[int], pids: list[int]) -> tuple[float, int, list[float], float,
                                                                                 float]:
    """(time, delivered so far, CPU s of each Redis node, of the subscribers, of this publisher)."""
    return (time.monotonic(), sum(c.value for c in counters), _cpu_s(ports), sum(map(cpu_s, pids)),
            time.process_time())


async def _publish(url: str, keys: Keys, counters: list[Counter], ports: list[int], pids: list[int],
                   warmup_s: float, window_s: float) -> dict[str, Any]:
    client, groups, verb = await _routes(url, keys)
    rounds = [(connection, b"".join(command(verb, keys.quote_channel(s).encode(), message(s))
                                    for s in symbols) * ROUND_PER_SYMBOL, len(symbols) * ROUND_PER_SYMBOL)
              for connection, symbols in groups.items()]
    per_round = sum(n for _, _, n in rounds)
    published = 0
    marks: list[tuple[float, int, list[float], float, float]] = []
    started = time.monotonic()
    while len(marks) < 2:
        await asyncio.gather(*(connection.send(buf, n) for connection, buf, n in rounds))
        published += per_round
        stalled_at = time.monotonic() + STALL_S
        while published - min(c.value for c in counters) > WINDOW_MSGS:
            if time.monotonic() > stalled_at:
                raise RuntimeError(f"a subscriber stopped receiving ({[c.value for c in counters]} of {published})")
            await asyncio.sleep(0.0005)
        elapsed_s = time.monotonic() - started
        if elapsed_s >= warmup_s + window_s * len(marks):
            marks.append(_cpu_mark(counters, ports, pids))
    settled_at = time.monotonic() + STALL_S
    while min(c.value for c in counters) < published and time.monotonic() < settled_at:
        await asyncio.sleep(0.005)  # the last messages on their way: then every one is counted
    lost = published * len(counters) - sum(c.value for c in counters)
    for connection in groups:
        connection.close()
    await client.aclose()
    (t0, n0, cpu0, subs0, pub0), (t1, n1, cpu1, subs1, pub1) = marks
    cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return {"delivered_per_s": (n1 - n0) / (t1 - t0), "delivered": n1 - n0, "redis_cpu_s": cpu,
            "delivered_per_redis_cpu_s": (n1 - n0) / max(sum(cpu), 1e-9), "subscribers_cpu_s": subs1 - subs0,
            "publisher_cpu_s": pub1 - pub0, "published": published, "lost": lost}


def measure(url: str, keys: Keys, ports: list[int], warmup_s: float, window_s: float) -> dict[str, Any]:
    """Subscribers up, then the closed-loop publisher; ``ports``: the nodes whose CPU is counted."""
    channels = [keys.quote_channel(s) for s in SYMBOLS]
    spawn = multiprocessing.get_context("spawn")
    counters = [spawn.Value("q", 0, lock=False) for _ in range(SUBSCRIBERS)]
    readies = [spawn.Event() for _ in range(SUBSCRIBERS)]
    procs = [spawn.Process(target=subscriber, args=(url, channels, c, r), daemon=True)
             for c, r in zip(counters, readies, strict=True)]
    try:
        for proc in procs:
            proc.start()
        for ready, proc in zip(readies, procs, strict=True):
            deadline = time.monotonic() + 30
            while not ready.wait(0.1):
                if proc.exitcode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"subscriber pid {proc.pid} did not subscribe (exit code {proc.exitcode})")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_publish(url, keys, counters, ports, [p.pid for p in procs if p.pid],
                                       warmup_s, window_s))
    finally:
        for proc in procs:
            if proc.pid is not None:
                proc.terminate()
                proc.join(10)


def masters_first(ports: list[int]) -> tuple[list[int], list[int]]:
    """The cluster's masters and replicas, by their own INFO replication."""
    roles: dict[str, list[int]] = {"master": [], "slave": []}
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        roles[client.info("replication")["role"]].append(port)
        client.close()
    return roles["master"], roles["slave"]


def _ceiling(result: dict[str, Any], masters: int) -> float:
    """Delivered per CPU second of the busiest master."""
    return float(result["delivered"] / max(max(result["redis_cpu_s"][:masters]), 1e-9))


def _without_replicas(node: dict[str, Any], warmup_s: float, window_s: float) -> dict[str, Any]:
    with redis_cluster(replicas=0) as bare:
        result = measure(bare.url, Keys("tf", cluster=True), bare.ports, warmup_s, window_s)
    ceiling = _ceiling(result, len(bare.ports))
    return {"delivered_per_s": round(result["delivered_per_s"]), "lost": result["lost"],
            "vs_node": round(result["delivered_per_s"] / node["delivered_per_s"], 2),
            "masters_cpu_s": [round(c, 2) for c in result["redis_cpu_s"]],
            "delivered_per_master_cpu_s": round(result["delivered_per_redis_cpu_s"]),
            "ceiling_per_s": round(ceiling), "ceiling_vs_node": round(ceiling / node["delivered_per_redis_cpu_s"], 2)}


def run(node_url: str, cluster_url: str, cluster_ports: list[int], smoke: bool) -> dict[str, Any]:
    warmup_s, window_s = (0.2, 0.5) if smoke else (0.5, 3.0)
    node_port = int(node_url.rsplit(":", 1)[1].split("/")[0])
    masters, replicas = masters_first(cluster_ports)
    node = measure(node_url, Keys("tf"), [node_port], warmup_s, window_s)
    sharded = measure(cluster_url, Keys("tf", cluster=True), masters + replicas, warmup_s, window_s)
    masters_cpu = sharded["redis_cpu_s"][:len(masters)]
    out = {
        "setup": {"symbols": len(SYMBOLS), "subscribers": SUBSCRIBERS, "message_bytes": len(message(SYMBOLS[0])),
                  "quotes_per_message": 1, "window_s": window_s, "in_flight_max_msgs": WINDOW_MSGS},
        "published": {"node": node["published"], "cluster": sharded["published"]},
        "lost": {"node": node["lost"], "cluster": sharded["lost"]},  # of published x subscribers: 0 expected
        "node_delivered_per_s": round(node["delivered_per_s"]),
        "cluster_delivered_per_s": round(sharded["delivered_per_s"]),
        "cluster_vs_node": round(sharded["delivered_per_s"] / node["delivered_per_s"], 2),
        "node_redis_cpu_s": round(node["redis_cpu_s"][0], 2),
        "cluster_masters_cpu_s": [round(c, 2) for c in masters_cpu],
        "cluster_replicas_cpu_s": round(sum(sharded["redis_cpu_s"][len(masters):]), 2),
        "busiest_master_share": round(max(masters_cpu) / max(sum(masters_cpu), 1e-9), 2),
        "node_delivered_per_redis_cpu_s": round(node["delivered_per_redis_cpu_s"]),
        "cluster_delivered_per_master_cpu_s": round(sharded["delivered"] / max(sum(masters_cpu), 1e-9)),
        "node_subscribers_cpu_s": round(node["subscribers_cpu_s"], 2),
        "cluster_subscribers_cpu_s": round(sharded["subscribers_cpu_s"], 2),
        "node_publisher_cpu_s": round(node["publisher_cpu_s"], 2),
        "cluster_publisher_cpu_s": round(sharded["publisher_cpu_s"], 2),
        "node_ceiling_per_s": round(node["delivered_per_redis_cpu_s"]),
        "cluster_ceiling_per_s": round(_ceiling(sharded, len(masters))),
    }
    if not smoke:  # a second cluster start (~3 s): the suite's smoke run stays short
        out["no_replicas"] = _without_replicas(node, warmup_s, window_s)
    return out
