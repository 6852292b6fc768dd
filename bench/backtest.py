"""Backtest speed: quotes/s of the engine vs NautilusTrader's BacktestEngine and a plain Python loop.

One generated day (bench/backtest_data.py: 1M quotes over 20 symbols, a random walk), written once
as a ``--record`` file; every case runs in its own process on that file (max RSS per process):

- ``floor``: a plain loop over the file's rows, micro-price into a dict;
- ``asyncio``: the floor plus one bare ``asyncio.Event`` wake of a task per row (the least an asyncio
  agent runtime pays per quote that reaches ``run()``);
- ``noop``: our backtest, a no-op event-driven agent at throttle 0 (every quote reaches ``run()``);
- ``spotter``: Spotter at throttle 0 (micro-price into the cache, every quote);
- ``mm``: the layered market maker (Spotter, Volatility, SpreadCalculator, QuoteManager, PnL) at the
  stack's default throttles, trading on the sim broker;
- ``nautilus``: NautilusTrader's BacktestEngine with a strategy computing the micro-price into a dict,
  in its own virtualenv (.venv-nautilus, ``make bench-nautilus``: it pins another uvloop).
  Its engine needs the whole day as QuoteTick objects first: ``run_s`` times ``engine.run()``,
  ``total_s`` includes building them. Ours stream from the file, included in every figure.

``noop_quarter`` repeats ``noop`` on the first quarter of the day: the max RSS of the two shows
whether memory grows with the number of quotes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgpack

from bench.backtest_data import rows

REPO = Path(__file__).resolve().parent.parent
NAUTILUS_PYTHON = REPO / ".venv-nautilus" / "bin" / "python"
SYMBOLS = 20


def write_day(path: Path, quotes: int, span_s: float) -> None:
    pack = msgpack.Packer(use_bin_type=True).pack
    with open(path, "wb") as file:
        file.write(pack({"format": "tf-record", "version": 1, "source": "bench", "started_ns": 0}))
        for symbol, ts_ns, bid, bid_size, ask, ask_size in rows(quotes, SYMBOLS, span_s):
            file.write(pack(("q", symbol, [[ts_ns, ts_ns, bid, bid_size, ask, ask_size]])))


def _case(case: str, path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.backtest_case", case, str(path), str(SYMBOLS)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"bench backtest case {case} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _nautilus(quotes: int, span_s: float) -> dict[str, Any]:
    if not NAUTILUS_PYTHON.exists():
        return {"unavailable": "run 'make bench-nautilus' to install NautilusTrader in .venv-nautilus"}
    done = subprocess.run([str(NAUTILUS_PYTHON), str(REPO / "bench" / "nautilus_case.py"), str(quotes),
                           str(SYMBOLS), str(span_s)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"unavailable": f"nautilus run failed: {done.stderr[-500:]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["quotes_per_s"] = result["quotes"] / result["run_s"]
    result["quotes_per_s_incl_build"] = result["quotes"] / result["total_s"]
    return result  # type: ignore[no-any-return]


def run(redis_url: str, smoke: bool) -> dict[str, Any]:
    quotes = 20_000 if smoke else 1_000_000
    span_s = 600.0 * quotes / 1_000_000  # 1M quotes in 10 minutes: ~83 quotes/s per symbol, a busy open
    result: dict[str, Any] = {"quotes": quotes, "symbols": SYMBOLS, "span_s": span_s}
    with tempfile.TemporaryDirectory() as tmp:
        day, quarter = Path(tmp) / "day.tfrec", Path(tmp) / "quarter.tfrec"
        write_day(day, quotes, span_s)
        write_day(quarter, quotes // 4, span_s / 4)
        for case in ("floor", "asyncio", "noop", "spotter", "mm"):
            result[case] = _case(case, day)
        result["noop_quarter"] = _case("noop", quarter)
    result["nautilus"] = _nautilus(quotes, span_s)
    nautilus = result["nautilus"].get("quotes_per_s")
    for case in ("noop", "spotter", "mm"):
        rate = result[case]["quotes_per_s"]
        result[case]["vs_floor"] = round(rate / result["floor"]["quotes_per_s"], 3)
        if nautilus:
            result[case]["vs_nautilus"] = round(rate / nautilus, 3)
    return result
