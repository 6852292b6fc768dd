"""``--sweep KEY=A,B,C``: the grid of every combination, one process per run on every core.

Each run writes its own results folder (``DIR/run-001`` ...); ``DIR/sweep.csv`` holds
one row of statistics per combination, best total PnL first (ties: higher Sharpe,
then the grid order), and the same table is printed.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from backtest.config import load_config
from core.errors import ConfigError

Axis = tuple[str, list[Any]]
COLUMNS = ["pnl_total", "return", "sharpe", "sortino", "max_drawdown", "fees", "fills", "fill_ratio", "turnover"]


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_axes(items: Sequence[str]) -> list[Axis]:
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ConfigError(f"--sweep {item!r}: use KEY=A,B,C, e.g. quote_manager.min_spread=0.25,0.5")
        axes.append((key.strip(), [_value(v.strip()) for v in values.split(",") if v.strip()]))
    return axes


def _run(job: tuple[str, list[tuple[str, Any]], str, bool]) -> dict[str, Any]:
    from backtest.cli import run_one

    config_path, point, out, tearsheet = job
    result = run_one(load_config(config_path, point), Path(out), tearsheet=tearsheet)
    return {"run": Path(out).name, **{k: v for k, v in point}, **{c: result.stats[c] for c in COLUMNS}}


def run_sweep(config_path: str, axes: list[Axis], out: Path, *, jobs: int = 0, tearsheet: bool = False) -> int:
    points = [list(zip([k for k, _ in axes], combo, strict=True))
              for combo in itertools.product(*(values for _, values in axes))]
    for point in points:
        load_config(config_path, point)  # every combination is valid before any run starts
    out.mkdir(parents=True, exist_ok=True)
    work = [(config_path, point, str(out / f"run-{i:03d}"), tearsheet) for i, point in enumerate(points, 1)]
    workers = jobs or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(max_workers=min(workers, len(work))) as pool:
        rows = list(pool.map(_run, work))
    rows.sort(key=lambda r: (-r["pnl_total"], -r["sharpe"], r["run"]))
    columns = ["run", *(k for k, _ in axes), *COLUMNS]
    with open(out / "sweep.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(_table(columns, rows))
    print(f"sweep of {len(rows)} runs in {out}/ (sweep.csv, run-*/)")
    return 0


def _table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
