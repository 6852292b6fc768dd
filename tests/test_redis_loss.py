"""Losing Redis mid-run ends hub and agents with exit 69, which supervisord restarts."""

from __future__ import annotations

from pathlib import Path

import redis

from bench.server import start_redis_server
from core.exitcodes import ExitCode
from tests.helpers import ProcessGroup, eventually


def test_hub_and_agent_exit_69_when_redis_goes_away(processes: ProcessGroup, tmp_path: Path) -> None:
    server = start_redis_server(workdir=tmp_path)
    try:
        client = redis.Redis(port=server.port, decode_responses=True)
        env = {"REDIS_URL": server.url}
        hub = processes.start("-m", "hub", "--symbols", "AAPL", env=env)
        agent = processes.start("-m", "agents.spotter", "--instruments", "AAPL", env=env)
        eventually(lambda: client.hget("tf:cache:AAPL", "fair_price"), message="stack running")
        client.close()
    finally:
        server.kill()
    assert agent.wait(20) == ExitCode.REDIS_UNAVAILABLE
    assert hub.wait(20) == ExitCode.REDIS_UNAVAILABLE

