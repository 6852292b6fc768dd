"""The dashboard's cost at 10k quotes/s: its own CPU and what it adds to Redis, with no page and with one.

The hub streams 10 symbols at 1,000 quotes/s each and a spotter writes the cache. Three windows
of equal length: without the dashboard, with it and no page open, with it and one page reading
the live stream (/events). Redis's load is read from INFO: its whole CPU (noisy on a shared
machine), and, exactly, the calls and execution time of the commands only the dashboard sends.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from typing import Any

import redis

from bench.procs import Procs, publish_calls, wait_for, wait_publishing
from bench.server import free_port
from core.keys import Keys

SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "NVDA", "AMZN", "GOOG", "META", "TSLA", "IWM"]
RATE = 10_000
KEYS = Keys()
TICK_S = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115 - a read of /proc
    return (int(fields[11]) + int(fields[12])) / TICK_S


#: The commands only the dashboard sends in this set-up (hub: PUBLISH/HSET; spotter: EVALSHA; heartbeats:
#: MULTI/HSET/PEXPIRE/EXEC), so their counts and times in INFO commandstats are the dashboard's own load.
DASHBOARD_COMMANDS = ("hgetall", "scan", "xread", "smembers", "get", "xrevrange")


def _redis_counters(client: redis.Redis) -> tuple[float, int, int, int, int]:
    cpu, stats, commands = client.info("cpu"), client.info("stats"), client.info("commandstats")
    own = [commands.get(f"cmdstat_{name}", {}) for name in DASHBOARD_COMMANDS]
    return (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), int(stats["total_commands_processed"]),
            int(stats["total_net_output_bytes"]), sum(int(c.get("calls", 0)) for c in own),
            sum(int(c.get("usec", 0)) for c in own))


def _window(client: redis.Redis, duration_s: float, pid: int | None) -> dict[str, float]:
    started, redis_before = time.monotonic(), _redis_counters(client)
    cpu_before = _proc_cpu_s(pid) if pid else 0.0
    quotes_before = int(client.hget(KEYS.hub("bench"), "quotes") or 0)
    time.sleep(duration_s)
    elapsed = time.monotonic() - started
    redis_after = _redis_counters(client)
    out = {"redis_cpu_pct": round(100 * (redis_after[0] - redis_before[0]) / elapsed, 2),
           "redis_commands_per_s": round((redis_after[1] - redis_before[1]) / elapsed, 1),
           "redis_out_kb_per_s": round((redis_after[2] - redis_before[2]) / elapsed / 1024, 1),
           "dashboard_commands_per_s": round((redis_after[3] - redis_before[3]) / elapsed, 1),
           "dashboard_commands_redis_pct": round((redis_after[4] - redis_before[4]) / 1e4 / elapsed, 3),
           "hub_quotes_per_s": round((int(client.hget(KEYS.hub("bench"), "quotes") or 0) - quotes_before) / elapsed)}
    if pid:
        out["dashboard_cpu_pct"] = round(100 * (_proc_cpu_s(pid) - cpu_before) / elapsed, 2)
    return out


class _Page(threading.Thread):
    """One browser's worth of load: reads the live stream and counts pushes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.pushes, self._done = port, 0, threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        connection.request("GET", "/events?symbol=AAPL")
        reply = connection.getresponse()
        while not self._done.is_set():
            line = reply.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                self.pushes += 1
        connection.close()

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def run(url: str, smoke: bool) -> dict[str, Any]:
    duration_s = 3.0 if smoke else 20.0
    client = redis.Redis.from_url(url)
    with Procs(url) as procs:
        before = publish_calls(url)
        procs.hub(SYMBOLS, RATE)
        procs.start("-m", "agents.spotter", "--instruments", ",".join(SYMBOLS), "--throttle", "100ms",
                    "--log-level", "WARNING")
        wait_publishing(url, before, "the hub")
        wait_for(lambda: client.exists(KEYS.cache("AAPL")), "the spotter's cache writes")
        without = _window(client, duration_s, None)
        port = free_port()
        dashboard = procs.start("-m", "hub.dashboard", "--port", str(port), "--log-level", "WARNING")
        wait_for(lambda: _serving(port), "the dashboard")
        idle = _window(client, duration_s, dashboard.pid)
        page = _Page(port)
        page.start()
        with_page = _window(client, duration_s, dashboard.pid)
        page.stop()
    client.close()
    return {"rate": RATE, "symbols": len(SYMBOLS), "window_s": duration_s, "without": without, "idle": idle,
            "one_page": with_page, "pushes_per_s": round(page.pushes / duration_s, 1),
            "redis_cpu_added_pct": round(idle["redis_cpu_pct"] - without["redis_cpu_pct"], 2),
            "redis_commands_added_per_s": idle["dashboard_commands_per_s"],
            "redis_time_in_dashboard_commands_pct": idle["dashboard_commands_redis_pct"]}


def _serving(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/api/snapshot")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok
    except OSError:
        return False
