"""The dashboard over a real Redis Cluster (3 masters): the sim stack's quotes and cache for symbols on every
shard, orders, fills and positions in the {orders} slot, /metrics and both controls.

Before: the dashboard built a single-node client from the first seed (bypassing core.connection.redis_client),
so its first pipeline met MOVED and the process crashed."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from core.intents import encode_intent
from core.keys import Keys
from core.orders import Intent, to_decimal
from tests.cluster import redis_cluster
from tests.conftest import REPO, free_port
from tests.dashboard_helpers import TOKEN, get, post, snapshot, wait_until_serving
from tests.helpers import ProcessGroup, eventually
from tests.test_dashboard_metrics import value

KEYS = Keys("tf", cluster=True)
SYMBOLS = [f"C{i:02d}" for i in range(6)]
CENT = Decimal("0.01")
CONTROL = {"Content-Type": "application/json", "X-TF-Control-Token": TOKEN}


def _order(coid: str, symbol: str, price: str) -> dict[str, str]:
    return encode_intent(Intent("submit", "tester", client_order_id=coid, symbol=symbol, side="buy",
                                order_type="limit", qty=to_decimal("1", "qty"), limit_price=to_decimal(price, "price"),
                                ts_ns=time.time_ns()))


def _market_complete(base: str) -> dict[str, Any] | None:
    """A snapshot once every symbol has a quote and a fair price (the hub's and the spotter's keys, every shard)."""
    state = snapshot(base) or {}
    market = state.get("market", {})
    done = state.get("redis", {}).get("up") and all(
        market.get(s, {}).get("bid") and any(c["field"] == "fair_price" for c in market[s]["cache"]) for s in SYMBOLS)
    return state if done else None


def _write_marker(client: RedisCluster, symbol: str) -> bool:
    try:
        client.hset(KEYS.cache(symbol), mapping={"marker": "after-failover", "marker:ts_ns": time.time_ns()})
    except (RedisError, RedisClusterException):
        return False  # no master for the slot yet
    return True


def _shows_marker(base: str, symbol: str) -> dict[str, Any] | None:
    state = snapshot(base) or {}
    cache = state.get("market", {}).get(symbol, {}).get("cache", [])
    return state if any(c["field"] == "marker" for c in cache) else None


def _first_push(port: int, symbol: str) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"/events?symbol={symbol}")
        reply = connection.getresponse()
        while line := reply.readline():
            if line.startswith(b"data: "):
                push: dict[str, Any] = json.loads(line[6:])
                return push
        raise AssertionError("stream ended")
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_dashboard_reads_every_shard_and_controls_the_cluster(tmp_path: Path) -> None:
    with redis_cluster() as cluster:
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports],
                              decode_responses=True)
        masters = {client.get_node_from_key(KEYS.latest_quote(s)).port for s in SYMBOLS}
        assert len(masters) == 3  # the symbols' keys live on all three masters
        env = {**os.environ, "REDIS_URL": cluster.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        try:
            group.start("-m", "hub", "--source", "sim", "--symbols", ",".join(SYMBOLS), "--sim-rate", "300")
            group.start("-m", "agents.spotter", "--instruments", ",".join(SYMBOLS), "--throttle", "50ms")
            gateway = group.start("-m", "hub.execution", "--broker", "sim")
            dashboard = group.start("-m", "hub.dashboard", "--port", str(port), env={"TF_DASHBOARD_TOKEN": TOKEN})
            wait_until_serving(base)
            eventually(lambda: _market_complete(base), timeout_s=30, message="quotes and cache of every symbol")
            eventually(lambda: client.exists(KEYS.gateway("gateway")), timeout_s=30, message="the gateway")

            # 1% through the ask (inside the 5% collar): marketable however the quote moves meanwhile
            through = (Decimal(client.hget(KEYS.latest_quote("C01"), "ask")) * Decimal("1.01")).quantize(CENT)
            client.xadd(KEYS.order_intents(), _order("rest-1", "C00", "1"))  # rests far below the market
            client.xadd(KEYS.order_intents(), _order("take-1", "C01", str(through)))  # fills on arrival

            def book() -> dict[str, Any] | None:
                state = snapshot(base) or {}
                ok = [o["client_order_id"] for o in state.get("orders", [])] == ["rest-1"] and \
                    [f["client_order_id"] for f in state.get("fills", [])] == ["take-1"] and \
                    [p["symbol"] for p in state.get("positions", [])] == ["C01"]
                return state if ok else None

            eventually(book, timeout_s=20, message="the open order, the fill and the position on the page")
            push = _first_push(port, "C02")  # the live stream: tables and chart rows of a symbol on another shard
            assert push["symbol"] == "C02" and push["tables"]["market"]["C02"]["bid"]

            _, body = get(base + "/metrics")
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            for symbol in SYMBOLS:
                assert value(families, "tf_quote_age_seconds", symbol=symbol) is not None, symbol
            assert value(families, "tf_orders_open", symbol="C00", state="new") == 1
            assert value(families, "tf_position_qty", symbol="C01") == 1
            for name in ("hub", "gateway", "spotter"):
                assert value(families, "tf_process_up", name=name) == 1, name

            assert post(base + "/api/control/cancel-all", {}, CONTROL)[0] == 200
            eventually(lambda: client.hget(KEYS.order("rest-1"), "status") == "canceled", message="cancel-all")
            assert post(base + "/api/control/halt", {"on": True}, CONTROL)[0] == 200
            assert client.get(KEYS.risk_halt())
            eventually(lambda: (snapshot(base) or {}).get("risk", {}).get("halt"), message="the halt on the page")
            assert gateway.poll() is None, group.output(gateway)[-3000:]

            # a master dies: the page says Redis is lost, then reads that shard again from the promoted replica
            # and counts one reconnect (not one per retry that reached only the surviving masters)
            orders_port = client.get_node_from_key(KEYS.open_orders()).port
            victim = next(n.port for n in client.get_primaries() if n.port != orders_port)
            moved = next(s for s in SYMBOLS if client.get_node_from_key(KEYS.cache(s)).port == victim)
            cluster.kill(victim)
            killed = time.monotonic()
            eventually(lambda: not (snapshot(base) or {}).get("redis", {}).get("up", True), message="Redis lost shown")
            eventually(lambda: _write_marker(client, moved), timeout_s=30, message="the replica promoted")
            state = eventually(lambda: _shows_marker(base, moved), timeout_s=15, message="the promoted shard read")
            print(f"dashboard over a cluster failover: {moved}'s shard read again {time.monotonic() - killed:.1f}s "
                  "after its master was killed")
            assert state["redis"]["up"] and state["redis"]["reconnects"] == 1
            assert dashboard.poll() is None, group.output(dashboard)[-3000:]
        finally:
            group.stop_all()
            client.close()
