"""The sim stack on a Sentinel-managed primary/replica: a failover mid-run and the stack is back."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import redis

from core.errors import ConfigError
from core.exitcodes import ExitCode
from core.sentinel import parse_sentinel_url
from tests.conftest import REPO
from tests.helpers import ProcessGroup, eventually
from tests.sentinel import redis_sentinel

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
def test_failover_mid_run_stack_is_back_within_seconds(tmp_path: Path) -> None:
    with redis_sentinel() as sentinel:
        env = {**os.environ, "REDIS_URL": sentinel.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
        programs = [("-m", "hub", "--source", "sim", "--symbols", ",".join(SYMBOLS), "--sim-rate", "500"),
                    ("-m", "agents.spotter", "--instruments", ",".join(SYMBOLS), "--throttle", "50ms")]
        running = [group.start(*args) for args in programs]
        try:
            primary = sentinel.ports["primary"]
            eventually(lambda: all(_stamps(primary)), timeout_s=30, message="the stack on the primary")
            sentinel.kill("primary")
            killed_ns = time.time_ns()
            restarts = 0

            def back() -> bool:
                nonlocal restarts
                for i, proc in enumerate(running):  # as supervisord does: exit 69 -> restart
                    code = proc.poll()
                    if code is not None:
                        assert code == ExitCode.REDIS_UNAVAILABLE, group.output(proc)[-3000:]
                        running[i] = group.start(*programs[i])
                        restarts += 1
                new = sentinel.master_port()
                return new is not None and new != primary and all(ts > killed_ns for ts in _stamps(new))

            eventually(back, timeout_s=60, interval_s=0.1, message="caches updating on the promoted replica")
            print(f"sentinel failover: caches updating again {(time.time_ns() - killed_ns) / 1e9:.2f}s after the "
                  f"primary was killed ({restarts} supervised restarts; down-after 1s)")
            assert sentinel.master_port() == sentinel.ports["replica"]
        finally:
            group.stop_all()
