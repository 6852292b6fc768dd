"""The sim stack on a Sentinel-managed primary/replica: a failover mid-run and the stack is back."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest
import redis

from core.errors import ConfigError
from core.keys import Keys
from core.sentinel import parse_sentinel_url
from tests.conftest import REPO
from tests.execution_helpers import orders_state
from tests.helpers import ProcessGroup, eventually
from tests.sentinel import redis_sentinel
from tests.test_gateway import submit_fields

SYMBOLS = ["AAPL", "MSFT", "SPY", "NVDA", "QQQ"]


def test_sentinel_url_names_sentinels_and_service() -> None:
    spec = parse_sentinel_url("redis+sentinel://u:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/2")
    assert spec.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379)) and spec.service == "mymaster"
    assert spec.db == 2 and spec.password == "pw" and "pw" not in repr(spec)
    for bad in ("redis+sentinel://h:1/", "redis+sentinel://h/m", "redis+sentinel://h:1/m/x"):
        with pytest.raises(ConfigError, match="redis_url"):
            parse_sentinel_url(bad)


def _stamps(port: int) -> list[int]:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        return [int(client.hget(f"tf:cache:{s}", "fair_price:ts_ns") or 0) for s in SYMBOLS]
    except redis.RedisError:
        return []
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_failover_mid_run_stack_carries_on_in_process(tmp_path: Path) -> None:
    with redis_sentinel() as sentinel:
        env = {**os.environ, "REDIS_URL": sentinel.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
        programs = [("-m", "hub", "--source", "sim", "--symbols", ",".join(SYMBOLS), "--sim-rate", "500"),
                    ("-m", "agents.spotter", "--instruments", ",".join(SYMBOLS), "--throttle", "50ms")]
        running = [group.start(*args) for args in programs]
        pids = [proc.pid for proc in running]
        try:
            primary = sentinel.ports["primary"]
            eventually(lambda: all(_stamps(primary)), timeout_s=30, message="the stack on the primary")
            sentinel.kill("primary")
            killed_ns = time.time_ns()

            def back() -> bool:
                for proc in running:  # nobody exits: the new master is found in-process
                    assert proc.poll() is None, group.output(proc)[-3000:]
                new = sentinel.master_port()
                return new is not None and new != primary and all(ts > killed_ns for ts in _stamps(new))

            eventually(back, timeout_s=60, interval_s=0.1, message="caches updating on the promoted replica")
            print(f"sentinel failover: caches updating again {(time.time_ns() - killed_ns) / 1e9:.2f}s after the "
                  "primary was killed, same processes (down-after 1s)")
            assert sentinel.master_port() == sentinel.ports["replica"]
            assert [proc.pid for proc in running] == pids and all(proc.poll() is None for proc in running)
            # the hub's and the agent's heartbeats carry on too (their hashes are on the new master)
            new_master = redis.Redis(port=sentinel.ports["replica"], decode_responses=True)
            eventually(lambda: new_master.hget("tf:agent:spotter", "pid") == str(pids[1]), message="agent heartbeat")
            new_master.close()
        finally:
            group.stop_all()
        for proc, _ in group.procs:
            assert proc.returncode == 0, group.output(proc)[-2000:]


@pytest.mark.timeout(120)
def test_gateway_through_a_sentinel_failover_makes_every_order_once(tmp_path: Path) -> None:
    keys = Keys("tf")
    total = 2000
    ids = [f"s-{i}" for i in range(total)]
    with redis_sentinel() as sentinel:
        primary = redis.Redis(port=sentinel.ports["primary"], decode_responses=True)
        promoted = redis.Redis(port=sentinel.ports["replica"], decode_responses=True)
        primary.hset(keys.latest_quote("AAPL"), mapping={"bid": 100.0, "bid_size": 100, "ask": 100.02,
                                                         "ask_size": 100, "ts_ns": time.time_ns()})
        env = {**os.environ, "REDIS_URL": sentinel.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
        try:
            gateway = group.start("-m", "hub.execution", "--broker", "sim", "--order-rate", "100000", "--order-burst",
                                  "100000", "--max-open-orders", "100000", "--max-position", "10000000")
            eventually(lambda: primary.exists("tf:gateway:gateway"), timeout_s=30, message="the gateway heartbeat")
            pipe = primary.pipeline(transaction=False)
            for coid in ids:
                pipe.xadd(keys.order_intents(), submit_fields(coid))
            pipe.execute()
            primary.execute_command("WAIT", 1, 5000)  # the intents are on the replica
            made = eventually(lambda: (n := primary.scard(keys.open_orders())) >= 300 and n, timeout_s=30,
                              interval_s=0.005, message="gateway under way")
            sentinel.kill("primary")
            assert made < total  # killed mid-way
            killed_ms = time.time() * 1000
            killed = time.monotonic()
            first_write_s: list[float] = []

            def handled() -> tuple[int, dict[str, int]] | None:
                assert gateway.poll() is None, group.output(gateway)[-3000:]  # no restart: it carries on
                if not first_write_s:
                    with contextlib.suppress(redis.RedisError):
                        newest = promoted.xrevrange(keys.order_events(), count=1)
                        if newest and int(newest[0][0].split("-")[0]) > killed_ms:
                            first_write_s.append(time.monotonic() - killed)
                return orders_state(promoted, keys, ids)

            state = eventually(handled, timeout_s=60, interval_s=0.1, message="every intent handled after failover")
            print(f"sentinel gateway failover: first order written on the promoted replica {first_write_s[0]:.2f}s "
                  f"after the kill, all {total} intents handled after {time.monotonic() - killed:.1f}s, "
                  f"same process ({made} orders made before the kill; down-after 1s)")
            open_count, news = state
            assert sentinel.master_port() == sentinel.ports["replica"]
            assert set(news.values()) == {1}, "an order was made twice"
            assert open_count == total and set(news) == set(ids)
            assert promoted.xinfo_groups(keys.order_intents())[0]["pending"] == 0  # every intent acknowledged
            assert gateway.poll() is None
        finally:
            group.stop_all()
            primary.close()
            promoted.close()
        assert gateway.returncode == 0, group.output(gateway)[-2000:]
