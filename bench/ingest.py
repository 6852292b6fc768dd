"""Wildcard ingest: the hub's ``--source alpaca`` beside bare alpaca-py, from the same frames.

Both read the local Alpaca-protocol server's blast mode (pre-encoded frames of
``BATCH`` quotes, as fast as the client reads), one server per client:

- ``sdk``: bare alpaca-py as its README shows it, ``raw_data=True``, an async
  handler that counts, ``stream.run()``; it does nothing with the quotes, so it
  is the most the SDK's receive path can deliver;
- ``hub``: ``python -m hub --source alpaca``, quotes that reached Redis
  (PUBLISH + HSET), read from the hub's heartbeat.

``hub_vs_sdk`` is the issue's target (>= 1.0). ``python -m bench.ingest sdk URL
SYMBOLS SECONDS`` runs the bare SDK alone and prints quotes/s.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import redis

from bench.procs import Procs, wait_for
from bench.server import free_port

BATCH = 100
SYMBOLS = ",".join(f"S{i:02d}" for i in range(20))
CREDENTIALS = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret"}


def bare_sdk(stream_url: str, symbols: list[str], seconds: float, out: Path) -> None:
    """Bare alpaca-py: count quotes in the handler; writes quotes per second and per CPU second after a
    warm-up to ``out`` as soon as they are measured (the SDK's close handshake with a server that is still
    blasting then takes ~30 s, which is not part of the figure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.data.live.stock import StockDataStream
    stream = StockDataStream("key", "secret", raw_data=True, url_override=stream_url)
    count = [0]

    async def on_quote(_: Any) -> None:
        count[0] += 1

    stream.subscribe_quotes(on_quote, *symbols)

    def measure() -> None:
        while count[0] == 0:
            time.sleep(0.01)
        time.sleep(0.3)
        first = (time.monotonic(), time.process_time(), count[0])
        time.sleep(seconds)
        quotes = count[0] - first[2]
        written = out.with_suffix(".tmp")
        written.write_text(f"{quotes / (time.monotonic() - first[0])} {quotes / (time.process_time() - first[1])}\n")
        written.rename(out)
        stream.stop()

    threading.Thread(target=measure, daemon=True).start()
    stream.run()


def _server(procs: Procs) -> str:
    port = free_port()
    procs.start("-m", "tests.alpaca_data_server", "--port", str(port), "--rate", "max", "--batch", str(BATCH))
    procs.env.update(CREDENTIALS)
    return f"ws://127.0.0.1:{port}/v2/iex"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sdk_rate(url: str, seconds: float) -> tuple[float, float]:
    with Procs(url) as procs:
        stream_url = _server(procs)
        time.sleep(0.5)
        out = procs.dir / "sdk.txt"
        procs.start("-m", "bench.ingest", "sdk", stream_url, SYMBOLS, str(seconds), str(out))
        wait_for(out.exists, "the bare SDK's figures", timeout_s=seconds + 60)
        wall, cpu = out.read_text().split()
        return float(wall), float(cpu)


def hub_rate(url: str, seconds: float) -> tuple[float, float]:
    with Procs(url) as procs:
        procs.env["APCA_DATA_STREAM_URL"] = _server(procs)
        time.sleep(0.5)
        hub = procs.start("-m", "hub", "--source", "alpaca", "--symbols", SYMBOLS, "--name", "bench", "--log-level",
                    "WARNING")
        client = redis.Redis.from_url(url)
        quotes = lambda: int(client.hget("tf:hub:bench", "quotes") or 0)  # noqa: E731
        wait_for(lambda: quotes() > 0, "alpaca quotes in Redis")
        first = quotes()
        wait_for(lambda: quotes() > first, "a later heartbeat")
        first_t, first_cpu, first = time.monotonic(), cpu_s(hub.pid), quotes()
        time.sleep(seconds)
        last = quotes()
        wait_for(lambda: quotes() > last, "a later heartbeat")
        last_t, last_cpu, last = time.monotonic(), cpu_s(hub.pid), quotes()
        client.close()
    # the heartbeat's count lags by up to a beat on both ends alike, so the window's length holds
    return (last - first) / (last_t - first_t), (last - first) / (last_cpu - first_cpu)


def run(url: str, smoke: bool) -> dict[str, Any]:
    """Alternating SDK and hub runs (3, or 1 with --smoke); medians, so one noisy window cannot decide."""
    seconds, rounds = (1.0, 1) if smoke else (4.0, 3)
    runs = [(sdk_rate(url, seconds), hub_rate(url, seconds)) for _ in range(rounds)]
    sdk, sdk_cpu = (statistics.median(r[0][i] for r in runs) for i in (0, 1))
    hub, hub_cpu = (statistics.median(r[1][i] for r in runs) for i in (0, 1))
    return {"unit": "quotes/s", "batch": BATCH, "symbols": 20, "rounds": rounds, "sdk": round(sdk), "hub": round(hub),
            "hub_vs_sdk": round(hub / sdk, 2), "sdk_per_cpu_s": round(sdk_cpu), "hub_per_cpu_s": round(hub_cpu),
            "hub_vs_sdk_cpu": round(hub_cpu / sdk_cpu, 2)}


if __name__ == "__main__":
    role, stream_url, symbols, seconds, out = sys.argv[1:6]
    if role != "sdk":
        raise SystemExit(f"unknown role {role!r}")
    bare_sdk(stream_url, symbols.split(","), float(seconds), Path(out))
