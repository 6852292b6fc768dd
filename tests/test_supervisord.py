"""deploy/supervisord.conf's program settings under a real supervisord: restarts and exit codes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.exitcodes import ExitCode
from tests.helpers import eventually
from tests.supervisor_stack import deploy_programs, program_section, supervised


@pytest.fixture
def supervisor(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    deploy = deploy_programs()
    with supervised([
        program_section(deploy, "hub", redis_url, tmp_path),
        program_section(deploy, "spotter", redis_url, tmp_path),
        program_section(deploy, "spotter", redis_url, tmp_path, " --throttle nonsense", as_name="misconfigured"),
    ], tmp_path) as supervisor:
        yield supervisor.rpc


def test_config_error_stops_and_kill_9_restarts(supervisor: Any, sync_redis: redis.Redis) -> None:
    info = eventually(lambda: _state(supervisor, "misconfigured", "EXITED"), message="misconfigured exits")
    assert info["exitstatus"] == ExitCode.CONFIG
    eventually(lambda: sync_redis.hget("tf:cache:AAPL", "fair_price"), message="stack producing fair prices")
    first_pid = eventually(lambda: _state(supervisor, "spotter", "RUNNING"))["pid"]
    os.kill(first_pid, 9)
    restarted = eventually(lambda: _restarted(supervisor, first_pid), message="spotter restarted")
    eventually(lambda: sync_redis.hget("tf:agent:spotter", "pid") == str(restarted["pid"]),
               message="restarted spotter owns its heartbeat")
    # the config error was expected: still EXITED, never respawned
    again = supervisor.supervisor.getProcessInfo("misconfigured")
    assert again["statename"] == "EXITED" and again["start"] == info["start"]


def _state(server: Any, name: str, state: str) -> dict[str, Any] | None:
    info: dict[str, Any] = server.supervisor.getProcessInfo(name)
    return info if info["statename"] == state else None


def _restarted(server: Any, old_pid: int) -> dict[str, Any] | None:
    info = _state(server, "spotter", "RUNNING")
    return info if info and info["pid"] not in (0, old_pid) else None
