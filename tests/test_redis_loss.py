"""Losing Redis mid-run ends hub and agents with exit 69, which supervisord restarts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from core.exitcodes import ExitCode
from tests.conftest import free_port
from tests.helpers import ProcessGroup, eventually


def test_hub_and_agent_exit_69_when_redis_goes_away(processes: ProcessGroup, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port, decode_responses=True)
        eventually(lambda: _pings(client), message="private redis up")
        env = {"REDIS_URL": url}
        hub = processes.start("-m", "hub", "--symbols", "AAPL", env=env)
        agent = processes.start("-m", "agents.spotter", "--instruments", "AAPL", env=env)
        eventually(lambda: client.hget("tf:cache:AAPL", "fair_price"), message="stack running")
        client.close()
    finally:
        server.kill()
        server.wait()
    assert agent.wait(20) == ExitCode.REDIS_UNAVAILABLE
    assert hub.wait(20) == ExitCode.REDIS_UNAVAILABLE


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
