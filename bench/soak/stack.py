"""The stack's programs, read from deploy/supervisord.conf, as plain child processes.

Plain children rather than supervisord: the soak needs each pid, and a process that dies must
fail the soak instead of being restarted quietly (a restart would also reset its RSS).
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "supervisord.conf"
#: Not part of the running stack: Redis is the soak's own, the summary prints once and exits; the
#: dashboard reads the stack (it has its own bench row) and would collide with make run's port 8050.
SKIPPED = ("redis", "summary", "dashboard")
#: Stopped first (they cancel their orders on the way out), then the rest; as supervisord's priorities do.
TRADERS = ("quote_manager", "delta_hedger", "pnl")


@dataclass
class Program:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def programs(sim_rate_qps: float) -> list[Program]:
    """Every program of the deploy file (except SKIPPED), with this interpreter and the given sim rate."""
    parser = configparser.RawConfigParser()
    parser.read(DEPLOY)
    found = []
    for section in parser.sections():
        if not section.startswith("program:") or section.removeprefix("program:") in SKIPPED:
            continue
        argv = shlex.split(parser.get(section, "command").replace("%(here)s/../.venv/bin/python", sys.executable))
        if "--sim-rate" in argv:
            argv[argv.index("--sim-rate") + 1] = str(sim_rate_qps)
        found.append(Program(section.removeprefix("program:"), argv))
    return found


def start(progs: Sequence[Program], redis_url: str, log_dir: Path) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    for prog in progs:
        with open(log_dir / f"{prog.name}.log", "wb") as log:
            prog.process = subprocess.Popen(prog.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def exited(progs: Sequence[Program]) -> dict[str, int]:
    """Programs that have ended, with their exit codes."""
    return {p.name: code for p in progs if p.process is not None and (code := p.process.poll()) is not None}


def stop(progs: Sequence[Program], timeout_s: float = 15.0) -> dict[str, int]:
    """SIGTERM each, wait, SIGKILL what is left; the exit codes."""
    codes = {}
    for prog in progs:
        if prog.process is not None and prog.process.poll() is None:
            prog.process.send_signal(signal.SIGTERM)
    for prog in progs:
        if prog.process is None:
            continue
        try:
            codes[prog.name] = prog.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            prog.process.kill()
            codes[prog.name] = prog.process.wait()
    return codes
