"""Recovery times of the market-making stack under supervisord after kill -9 of each part.

    python -m bench.faults [--rounds 2] [--appendfsync always|everysec]

Runs deploy/supervisord.conf's programs (redis with deploy/redis.conf and a generated ACL, hub,
gateway, spotter, quote_manager, delta_hedger, pnl, each as its Redis role) on a free port in a temp
dir, then kills with SIGKILL, in turn: an agent, the hub, the gateway, redis-server. For each it
prints how long until supervisord had restarted it and until its output was fresh again; for
redis also how many order hashes were lost. Figures go to docs/failure-modes.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.server import free_port
from core.acl import setup
from tests.helpers import eventually
from tests.supervisor_stack import REPO, deploy_programs, program_section, supervised

PROGRAMS = ("hub", "gateway", "spotter", "quote_manager", "delta_hedger", "pnl")


def sections(tmp: Path, port: int, appendfsync: str | None) -> list[str]:
    deploy = deploy_programs()
    policy = f" --appendfsync {appendfsync}" if appendfsync else ""
    redis_program = (f"[program:redis]\ncommand=redis-server {REPO}/deploy/redis.conf --dir {tmp}/redis --port {port}"
                     f"{policy}\n"
                     f"priority=10\nautorestart=true\nstartsecs=1\nredirect_stderr=true\n"
                     f"stdout_logfile={tmp}/redis.log\n")
    out = [redis_program]
    for name in PROGRAMS:
        role = re.search(r'REDIS_URL="redis://(\w+)@', deploy.get(f"program:{name}", "environment"))
        assert role, name
        section = program_section(deploy, name, f"redis://{role.group(1)}@127.0.0.1:{port}/0", tmp)
        out.append(section.replace('PYTHONUNBUFFERED="1"', f'PYTHONUNBUFFERED="1",REDIS_PASSWORD_FILE='
                                   f'"{tmp}/secrets/{role.group(1)}.password"'))
    return out


def newer(client: redis.Redis, key: str, field: str, after_ns: int) -> bool:
    try:
        value = client.hget(key, field)
    except redis.RedisError:
        return False
    return value is not None and int(value) > after_ns


def new_event(client: redis.Redis, after_ns: int) -> bool:
    try:
        newest = client.xrevrange("tf:orders:events", count=1)
    except redis.RedisError:
        return False
    return bool(newest) and int(newest[0][0].split("-")[0]) > after_ns // 1_000_000


def orders(client: redis.Redis) -> set[str]:
    return set(client.scan_iter(match="tf:order:*", count=1000))


def kill_and_time(rpc: Any, name: str, fresh: Callable[[int], bool]) -> tuple[float, float]:
    pid = rpc.getProcessInfo(name)["pid"]
    started, started_ns = time.monotonic(), time.time_ns()
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: rpc.getProcessInfo(name)["pid"] not in (0, pid), timeout_s=60, interval_s=0.01)
    restarted = time.monotonic() - started
    eventually(lambda: fresh(started_ns), timeout_s=60, interval_s=0.01)
    return restarted, time.monotonic() - started


def one_round(tmp: Path, appendfsync: str | None) -> None:
    port = free_port()
    (tmp / "redis").mkdir()
    setup(tmp)  # var-style layout: tmp/secrets, tmp/redis/users.acl
    with supervised(sections(tmp, port, appendfsync), tmp, stop_timeout_s=60) as supervisor:
        rpc = supervisor.rpc.supervisor
        admin = redis.Redis(port=port, username="admin", password=(tmp / "secrets" / "admin.password").read_text()
                            .strip(), decode_responses=True, socket_timeout=1)
        eventually(lambda: len(orders(admin)) > 10, timeout_s=60, message="orders flowing")
        print(f"appendfsync {admin.config_get('appendfsync')['appendfsync']}:")
        checks = {"spotter": lambda t: newer(admin, "tf:cache:AAPL", "fair_price:ts_ns", t),
                  "hub": lambda t: newer(admin, "tf:quote:AAPL", "ts_recv_ns", t),
                  "gateway": lambda t: newer(admin, "tf:gateway:gateway", "started_ns", t) and new_event(admin, t)}
        for name, check in checks.items():
            restarted, fresh = kill_and_time(rpc, name, check)
            print(f"kill -9 {name}: restarted after {restarted:.2f} s, output fresh after {fresh:.2f} s")
        before = orders(admin)
        restarted, fresh = kill_and_time(rpc, "redis", lambda t: newer(admin, "tf:cache:AAPL", "fair_price:ts_ns", t)
                                         and new_event(admin, t))
        lost = before - orders(admin)
        again = [n for n in PROGRAMS if rpc.getProcessInfo(n)["start"] > time.time() - fresh - 1]
        print(f"kill -9 redis: restarted after {restarted:.2f} s, fair prices and executions fresh after "
              f"{fresh:.2f} s; {len(lost)} of {len(before)} order hashes lost; restarted (exit 69): "
              f"{', '.join(again) or 'none'}")
        admin.close()
        supervisor.process.terminate()
        supervisor.process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--appendfsync", choices=("always", "everysec", "no"), default=None,
                        help="override deploy/redis.conf's policy")
    args = parser.parse_args()
    for _ in range(args.rounds):
        tmp = Path(tempfile.mkdtemp(prefix="tf-faults-"))
        try:
            one_round(tmp, args.appendfsync)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
