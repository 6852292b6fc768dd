"""deploy/supervisord.conf's program settings under a real supervisord: restarts and exit codes.

The programs' options are taken from the deploy file itself; only paths, the Redis
address (the suite's own, never 6379) and the set of programs differ.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from supervisor.xmlrpc import SupervisorTransport

from hub.exitcodes import ExitCode
from tests.conftest import REPO
from tests.helpers import eventually

DEPLOY = REPO / "deploy" / "supervisord.conf"


def deploy_programs() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(DEPLOY)
    return parser


def program_section(deploy: configparser.RawConfigParser, name: str, redis_url: str, tmp: Path,
                    extra_args: str = "", as_name: str | None = None) -> str:
    options = dict(deploy.items(f"program:{name}"))
    options["command"] = (options["command"].replace("%(here)s/../.venv/bin/python", sys.executable)
                          + extra_args)
    options["environment"] = f'REDIS_URL="{redis_url}",PYTHONPATH="{REPO}",PYTHONUNBUFFERED="1"'
    options["stdout_logfile"] = str(tmp / f"{as_name or name}.log")
    options["directory"] = str(REPO)
    body = "\n".join(f"{key}={value}" for key, value in options.items())
    return f"[program:{as_name or name}]\n{body}\n"


@pytest.fixture
def supervisor(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    deploy = deploy_programs()
    sock = tmp_path / "supervisor.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text("\n".join([
        f"[unix_http_server]\nfile={sock}\n",
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"childlogdir={tmp_path}\nnodaemon=true\n",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        program_section(deploy, "hub", redis_url, tmp_path),
        program_section(deploy, "spotter", redis_url, tmp_path),
        program_section(deploy, "spotter", redis_url, tmp_path, " --throttle nonsense", as_name="misconfigured"),
    ]))
    supervisord = Path(sys.executable).parent / "supervisord"
    proc = subprocess.Popen([str(supervisord), "-c", str(conf)], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = xmlrpc.client.ServerProxy("http://127.0.0.1", SupervisorTransport(None, None, f"unix://{sock}"))
    eventually(lambda: sock.exists(), message="supervisord socket")
    yield server
    server("close")()  # closes the transport's unix socket
    proc.terminate()
    proc.wait(30)


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
