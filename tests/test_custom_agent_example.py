"""The README's custom-agent example runs as written."""

from __future__ import annotations

import redis

from tests.helpers import ProcessGroup, eventually


def test_imbalance_example_writes_to_the_cache(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    processes.start("-m", "hub", "--symbols", "AAPL", "--sim-rate", "300")
    agent = processes.start("examples/imbalance_agent.py", "--instruments", "AAPL", "--throttle", "50ms")
    value = eventually(lambda: sync_redis.hget("tf:cache:AAPL", "imbalance"), message="imbalance written",
                       timeout_s=15)
    assert -1.0 <= float(value) <= 1.0
    assert agent.poll() is None
    assert sync_redis.hget("tf:agent:imbalance", "class") == "Imbalance"
