"""``python -m backtest CONFIG --out DIR [--sweep KEY=A,B,C ...] [--redis-url URL] [--no-tearsheet]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from backtest.config import BacktestConfig, load_config
from backtest.export import export_to_redis
from backtest.loop import run as run_loop
from backtest.progress import ProgressBar
from backtest.results import BacktestResult
from backtest.run import run_backtest
from backtest.sources import HistoricalSource
from core.errors import ConfigError
from core.exitcodes import ExitCode

PROG = "python -m backtest"
log = logging.getLogger("backtest")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Backtest agents on historical quotes in data time.")
    p.add_argument("config", help="TOML or JSON backtest config (see examples/backtest_market_maker.toml)")
    p.add_argument("--out", required=True, help="results folder (created; files in it are replaced)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=A,B,C",
                   help="run the grid of these values (agent.setting, gateway.setting or backtest.setting); "
                        "repeat for more axes; one process per run on every core")
    p.add_argument("--jobs", type=int, default=0, help="sweep processes (default: every core)")
    p.add_argument("--redis-url", default="", help="also write the final cache and order state to this Redis")
    p.add_argument("--no-tearsheet", action="store_true", help="skip tearsheet.html")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        if args.sweep:
            from backtest.sweep import parse_axes, run_sweep

            return run_sweep(args.config, parse_axes(args.sweep), Path(args.out), jobs=args.jobs,
                             tearsheet=not args.no_tearsheet)
        run_one(config, Path(args.out), tearsheet=not args.no_tearsheet, redis_url=args.redis_url, verbose=True)
    except ConfigError as e:
        print(f"{PROG}: config error: {e}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    return 0


def run_one(config: BacktestConfig, out: Path, *, tearsheet: bool = True, redis_url: str = "",
            verbose: bool = False) -> BacktestResult:
    source = HistoricalSource(*config.backtest.data)
    bar = ProgressBar(source.count() if verbose and sys.stderr.isatty() else None)
    started = time.perf_counter()
    try:
        result = run_loop(run_backtest(config, source, progress=bar if bar.enabled else None))  # the benched loop
    finally:
        bar.close()
    elapsed_s = time.perf_counter() - started
    result.write(out)
    if tearsheet:
        from backtest.tearsheet import write_tearsheet

        write_tearsheet(result, out / "tearsheet.html", title=Path(config.source_path).stem or "backtest")
    if redis_url:
        asyncio.run(export_to_redis(result, config, redis_url))
    if verbose:
        quotes = result.stats["quotes_processed"]
        print(f"{quotes:,} quotes in {elapsed_s:.2f}s ({quotes / elapsed_s:,.0f} quotes/s); "
              f"pnl {result.stats['pnl_total']:+,.2f}, {result.stats['fills']} fills, "
              f"{result.stats['orders_accepted']} orders")
        print(f"results in {out}/")
        print(f"event log digest sha256:{result.digest}")
    return result
