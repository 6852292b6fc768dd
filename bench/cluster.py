"""Redis Cluster: hub publish and fan-out throughput on one node vs a local 3-master cluster, failover recovery.

- ``publish``: the same pre-generated quotes through ``Publisher`` (per symbol one PUBLISH/SPUBLISH of
  the batch + one HSET), into the bench's single redis-server and into a 3-master + 3-replica cluster on
  loopback; ``cluster_vs_node`` is the ratio. On one small machine the shards share its cores, so the
  point is that the path works and what the per-master routing costs, not the absolute speed.
- ``fanout``: subscribers on the agents' subscription code, each on every symbol, classic pub/sub on one
  node vs SSUBSCRIBE per master on the cluster: messages/s delivered, and per Redis CPU second
  (:mod:`bench.cluster_fanout`).
- ``failover``: the sim stack (hub + spotter, 50 symbols) on the cluster; one master SIGKILLed; seconds
  until every ``tf:cache:{SYM}`` is written again (``cluster-node-timeout`` 2 s), no process restarted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.cluster import ClusterNode, RedisCluster

from bench import cluster_fanout
from bench.procs import Procs, wait_for
from bench.publish import FRAME, run_uvloop
from bench.workload import QuoteTuple, make_quotes
from core.connection import redis_client
from core.keys import Keys
from hub.marketdata.publisher import Publisher
from tests.cluster import LocalCluster, redis_cluster

SYMBOLS = [f"C{i:02d}" for i in range(50)]


async def publish(url: str, keys: Keys, quotes: list[QuoteTuple]) -> float:
    client = redis_client(url, decode=False)
    await client.ping()
    publisher = Publisher(client, keys)
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
    return rate


def _stamps(client: RedisCluster) -> list[int]:
    try:
        return [int(client.hget(f"tf:cache:{{{s}}}", "fair_price:ts_ns") or 0) for s in SYMBOLS]
    except Exception:  # the cluster is failing over
        return []


def failover(cluster: LocalCluster) -> float:
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports], decode_responses=True)
    with Procs(cluster.url) as procs:
        procs.start("-m", "hub", "--source", "sim", "--symbols", ",".join(SYMBOLS), "--sim-rate", "2000",
                    "--log-level", "WARNING")
        procs.start("-m", "agents.spotter", "--instruments", ",".join(SYMBOLS), "--throttle", "50ms",
                    "--log-level", "WARNING")
        wait_for(lambda: (st := _stamps(client)) and all(st), "the stack on the cluster")
        cluster.kill(client.get_node_from_key("tf:cache:{C00}").port)
        killed_ns = time.time_ns()
        wait_for(lambda: (st := _stamps(client)) and all(ts > killed_ns for ts in st), "caches after failover",
                 timeout_s=60)
        recovered_s = (time.time_ns() - killed_ns) / 1e9
    client.close()
    return recovered_s


def run(url: str, smoke: bool) -> dict[str, Any]:
    quotes = make_quotes(20_000 if smoke else 200_000)
    with redis_cluster() as cluster:
        node = run_uvloop(publish(url, Keys("tf"), quotes))
        sharded = run_uvloop(publish(cluster.url, Keys("tf", cluster=True), quotes))
        fanout = cluster_fanout.run(url, cluster.url, cluster.ports, smoke)  # before failover() kills a master
        recovered_s = failover(cluster)
    return {"unit": "quotes/s, s", "quotes": len(quotes), "node": round(node), "cluster": round(sharded),
            "cluster_vs_node": round(sharded / node, 2), "fanout": fanout, "failover_recovery_s": round(recovered_s, 2)}
