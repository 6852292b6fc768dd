"""Real processes for the benchmarks: the hub, bench agents, baseline peers; RSS sampling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import redis

from bench.rawresp import RawSubscriber

REPO = Path(__file__).resolve().parent.parent


class Procs:
    """Subprocesses of one measurement; all stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dir = Path(tempfile.mkdtemp(prefix="tf-bench-"))
        self.env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"p{len(self.procs)}-{args[1]}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def hub(self, symbols: list[str], rate: float) -> subprocess.Popen[bytes]:
        return self.start("-m", "hub", "--source", "sim", "--symbols", ",".join(symbols), "--sim-rate", str(rate),
                          "--name", "bench", "--log-level", "WARNING")

    def agent(self, name: str, symbols: list[str], *, cache_write: bool = False,
              run_sleep: str = "0s", throttle: str = "0s") -> tuple[subprocess.Popen[bytes], Path]:
        out = self.dir / f"{name}.json"
        proc = self.start("-m", "bench.agent", "--instruments", ",".join(symbols), "--name", name,
                          "--throttle", throttle, "--out", str(out), "--cache-write", str(cache_write).lower(),
                          "--run-sleep", run_sleep, "--log-level", "WARNING")
        return proc, out

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.procs.index(proc)
        return next(self.dir.glob(f"p{index}-*.log")).read_text(errors="replace")[-2000:]

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):  # consumers first: a server still sending to them is slow to stop
            self.stop(proc, 5.0)


def wait_for(check: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def wait_subscribers(url: str, channels: list[str], count: int) -> None:
    client = redis.Redis.from_url(url)
    wait_for(lambda: all(n >= count for _, n in client.pubsub_numsub(*channels)), f"{count} subscribers")
    client.close()


def _publish_count(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))


def publish_calls(url: str) -> int:
    """How many PUBLISH commands the server has run: tells when a publisher has really started."""
    client = redis.Redis.from_url(url)
    try:
        return _publish_count(client)
    finally:
        client.close()


def wait_publishing(url: str, calls_before: int, what: str) -> None:
    """Wait until a publisher started after ``calls_before`` was read is publishing, so a short
    measurement window is not spent on its interpreter start-up (seconds on a loaded machine)."""
    client = redis.Redis.from_url(url)
    try:
        wait_for(lambda: _publish_count(client) > calls_before, what)
    finally:
        client.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class QuoteCounter:
    """Counts every quote on the channels with the raw reader, in a thread: the reference for loss."""

    def __init__(self, url: str, channels: list[str]) -> None:
        self.count = 0
        self._sub = RawSubscriber(url, [c.encode() for c in channels])
        self._sub.wait_subscribed()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        unpackb = msgpack.unpackb

        def on_message(channel: bytes, data: bytes) -> bool:
            self.count += len(unpackb(data)[2])
            return False

        try:
            self._sub.read(on_message)
        except OSError:
            return

    def close(self) -> None:
        self._sub.sock.shutdown(2)
        self._thread.join(5)
        self._sub.close()
