"""``python -m bench [--smoke] [--only SECTION,...] [--out FILE]``: measure, print a table, write JSON.

Every figure is shown beside the same figure for bare redis-py code and for
the raw limit (a minimal RESP client), measured in the same run, so the
ratios hold on a noisy machine. ``--smoke`` runs every section briefly
(it checks that the harness works; its numbers mean little).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import backtest, cluster, cluster_tls, dashboard, ingest, intake, latency, orders, publish, retention
from bench.report import table
from bench.server import redis_server

SECTIONS: dict[str, Callable[[str, bool], dict[str, Any]]] = {
    "publish": publish.run,
    "intake": intake.run,
    "latency": latency.latency,
    "fanout": latency.fanout,
    "overload": latency.overload,
    "orders": orders.run,
    "dashboard": dashboard.run,
    "backtest": backtest.run,
    "ingest": ingest.run,
    "cluster": cluster.run,
    "cluster_tls": cluster_tls.run,
    "retention": retention.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    return {"cpu": model, "cores": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version(),
            "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip(),
            "loadavg_at_start": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every section, briefly")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--out", default="", help="JSON result path (default bench/results/<time>.json)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    result: dict[str, Any] = {"smoke": args.smoke, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with redis_server() as url:
        for name in chosen:
            started = time.monotonic()
            print(f"bench: {name} ...", flush=True)
            result[name] = SECTIONS[name](url, args.smoke)
            result[name]["elapsed_s"] = round(time.monotonic() - started, 1)
    out = Path(args.out) if args.out else RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"bench: results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
