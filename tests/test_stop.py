"""`make stop` (deploy/stop.sh) returns only once supervisord and every program have exited; and the
deploy file's `summary` program prints what runs once the stack streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from tests.conftest import REPO
from tests.helpers import eventually
from tests.supervisor_stack import deploy_programs, program_section, supervised

# Takes 2 s to stop after SIGTERM, as a program finishing its last work (or redis-server saving) does.
SLOW_STOPPER = ("import signal, sys, time; "
                "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(2), sys.exit(0))); time.sleep(120)")


def alive(pid: int) -> bool:
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_stop_waits_for_every_program(redis_url: str, tmp_path: Path) -> None:
    deploy = deploy_programs()
    sections = [program_section(deploy, "hub", redis_url, tmp_path),
                f"[program:slow]\ncommand={sys.executable} -c \"{SLOW_STOPPER}\"\nstopwaitsecs=10\nstartsecs=0\n",
                f"[supervisorctl]\nserverurl=unix://{tmp_path}/supervisor.sock\n"]
    with supervised(sections, tmp_path) as supervisor:
        pids = [eventually(lambda name=name: supervisor.rpc.supervisor.getProcessInfo(name)["pid"] or None,
                           message=f"{name} running") for name in ("hub", "slow")]
        conf, pidfile = tmp_path / "supervisord.conf", tmp_path / "supervisord.pid"
        eventually(pidfile.exists, message="supervisord's pid file")
        done = subprocess.run(["bash", "deploy/stop.sh", str(conf), str(pidfile)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [pid for pid in [supervisor.process.pid, *pids] if alive(pid)] == []
        assert "stopped supervisord" in done.stdout
        again = subprocess.run(["bash", "deploy/stop.sh", str(conf), str(pidfile)], cwd=REPO,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "not running" in again.stdout


def test_summary_program_prints_what_runs_once_the_stack_streams(redis_url: str, tmp_path: Path,
                                                                  sync_redis: redis.Redis) -> None:
    deploy = deploy_programs()
    summary = program_section(deploy, "summary", redis_url, tmp_path)  # its output: a file here, not the console
    with supervised([program_section(deploy, "hub", redis_url, tmp_path),
                     program_section(deploy, "spotter", redis_url, tmp_path), summary], tmp_path) as supervisor:
        log = tmp_path / "summary.log"
        eventually(lambda: log.exists() and "market is streaming" in log.read_text(), timeout_s=60,
                   message="the summary")
        # it idles afterwards, so a healthy stack has no EXITED program
        assert supervisor.rpc.supervisor.getProcessInfo("summary")["statename"] == "RUNNING"
    text = log.read_text()
    assert "market is streaming" in text and "AAPL,MSFT,SPY" in text and "spotter" in text
    assert "var/log/" in text and "make status" in text
