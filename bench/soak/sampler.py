"""One sample of every process: RSS and CPU from /proc, lag from the heartbeats, Redis memory from INFO."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from core.keys import Keys

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
FIELDS = ("elapsed_s", "process", "pid", "rss_mb", "cpu_pct", "lag_ms", "backlog", "used_mb", "keys")


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    process: str
    pid: int
    rss_mb: float
    cpu_pct: float
    lag_ms: float | None = None  # agents: the heartbeat's lag_ms
    backlog: int | None = None  # gateway: intents not yet handled
    used_mb: float | None = None  # redis: used_memory
    keys: int | None = None  # redis: DBSIZE

    def row(self) -> dict[str, str]:
        return {name: "" if (value := getattr(self, name)) is None else str(value) for name in FIELDS}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime


class Sampler:
    """CPU is a rate, so each call reports the CPU used since the previous call for that pid."""

    def __init__(self, client: redis.Redis, keys: Keys, started_s: float) -> None:
        self._client = client
        self._keys = keys
        self._started_s = started_s
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (wall s, cpu s)

    def _cpu_pct(self, pid: int, now_s: float) -> float:
        used_s = cpu_s(pid)
        wall_then, used_then = self._last.get(pid, (self._started_s, 0.0))
        self._last[pid] = (now_s, used_s)
        return round(100 * (used_s - used_then) / max(now_s - wall_then, 1e-9), 1)

    def sample(self, pids: Mapping[str, int]) -> list[Sample]:
        now_s = time.monotonic()
        elapsed_s = round(now_s - self._started_s, 1)
        samples = [self._process(name, pid, now_s, elapsed_s) for name, pid in pids.items()]
        info = self._client.info("memory")
        server_pid = int(self._client.info("server")["process_id"])
        samples.append(Sample(elapsed_s, "redis", server_pid, rss_mb(server_pid), self._cpu_pct(server_pid, now_s),
                              used_mb=round(info["used_memory"] / 2**20, 2), keys=int(self._client.dbsize())))
        return samples

    def _process(self, name: str, pid: int, now_s: float, elapsed_s: float) -> Sample:
        rss, cpu = round(rss_mb(pid), 2), self._cpu_pct(pid, now_s)
        if name == "gateway":
            return Sample(elapsed_s, name, pid, rss, cpu, backlog=self._intent_backlog())
        lag = self._client.hget(self._keys.agent(name), "lag_ms")
        return Sample(elapsed_s, name, pid, rss, cpu, lag_ms=None if lag is None else float(lag))

    def _intent_backlog(self) -> int:
        groups = self._client.xinfo_groups(self._keys.order_intents())
        return sum(int(g.get("pending") or 0) + int(g.get("lag") or 0) for g in groups)
