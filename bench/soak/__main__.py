"""``python -m bench.soak [--duration 1h] [--sim-rate 300] [--interval 10s] [--out DIR]`` (``make soak``).

Exit 0 when the soak passed, 1 when it failed (the reasons are printed and in summary.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import redis

from bench.server import redis_server
from bench.soak import stack
from bench.soak.ledger import Ledger
from bench.soak.sampler import FIELDS, Sample, Sampler
from bench.soak.verdict import MAX_GROWTH_MB_PER_H, Verdict, judge
from core.keys import Keys
from core.settings import parse_duration_ns

KEYS = Keys()


def seconds(text: str) -> float:
    try:
        return parse_duration_ns(text, "duration") / 1e9
    except Exception as e:  # argparse shows the message and exits 2
        raise argparse.ArgumentTypeError(str(e)) from None


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=seconds, default=3600.0, help="how long the stack runs (default 1h)")
    parser.add_argument("--sim-rate", type=float, default=300.0, help="sim quotes/s over all symbols (default 300)")
    parser.add_argument("--interval", type=seconds, default=10.0, help="time between samples (default 10s)")
    parser.add_argument("--warmup", type=seconds, default=None,
                        help="samples before this are not judged (default: a sixth of the duration, at most 10m)")
    parser.add_argument("--max-growth-mb-per-h", type=float, default=MAX_GROWTH_MB_PER_H,
                        help=f"RSS growth that fails the soak (default {MAX_GROWTH_MB_PER_H:g})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/soak-<time>)")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(args.duration / 6, 600.0)
    if args.out is None:
        args.out = stack.REPO / "bench" / "results" / f"soak-{datetime.now():%Y%m%d-%H%M%S}"
    return args


def wait_until(check: object, what: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            print(f"soak: gave up after {timeout_s:g}s waiting for {what}", file=sys.stderr)
            return False
        time.sleep(0.1)
    return True


def run(args: argparse.Namespace) -> tuple[Verdict, list[Sample], dict[str, object]]:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    samples: list[Sample] = []
    with redis_server() as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        progs = stack.programs(args.sim_rate)
        stack.start(progs, url, args.out / "logs")
        ledger = Ledger(client, KEYS)
        exits: dict[str, int] = {}
        try:
            wait_until(lambda: client.exists(KEYS.agent("quote_manager")), "the quote manager's heartbeat", 60)
            exits = sample_until_done(args, client, progs, samples, ledger)
            stack.stop([p for p in progs if p.name in stack.TRADERS])  # they cancel their orders on the way out
            wait_until(lambda: _settled(client), "the gateway to handle the last intents", 30)
        finally:
            codes = stack.stop(progs)  # the rest; the traders' codes are kept from above
        problems = ledger.check()
        exits.update({name: code for name, code in codes.items() if code != 0 and name not in exits})
        orders: dict[str, object] = {**ledger.summary(), "redis_used_mb_end": samples[-1].used_mb if samples else None}
        client.close()
    return judge(samples, args.warmup, problems, exits, args.max_growth_mb_per_h), samples, orders


def _settled(client: redis.Redis) -> bool:
    groups = client.xinfo_groups(KEYS.order_intents())
    return all(int(g.get("pending") or 0) + int(g.get("lag") or 0) == 0 for g in groups)


def sample_until_done(args: argparse.Namespace, client: redis.Redis, progs: list[stack.Program],
                      samples: list[Sample], ledger: Ledger) -> dict[str, int]:
    sampler = Sampler(client, KEYS, time.monotonic())
    pids = {p.name: p.process.pid for p in progs if p.process is not None}
    end_s = time.monotonic() + args.duration
    next_s = time.monotonic() + args.interval
    with open(args.out / "samples.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        while time.monotonic() < end_s:
            time.sleep(max(0.0, min(next_s, end_s) - time.monotonic()))
            next_s += args.interval
            if exits := stack.exited(progs):
                return exits
            ledger.poll()
            batch = sampler.sample(pids)
            samples.extend(batch)
            writer.writerows(s.row() for s in batch)
            f.flush()
            _progress(batch)
    return {}


def _progress(batch: list[Sample]) -> None:
    rss = " ".join(f"{s.process}={s.rss_mb:.0f}" for s in batch)
    print(f"soak: {batch[0].elapsed_s:7.0f}s RSS MB {rss} redis_used={batch[-1].used_mb}MB", flush=True)


def report(args: argparse.Namespace, verdict: Verdict, samples: list[Sample], orders: dict[str, object]) -> None:
    rows = []
    for name, growth in verdict.growth_mb_per_h.items():
        series = [s for s in samples if s.process == name]
        lags = [s.lag_ms for s in series if s.lag_ms is not None]
        rows.append({"process": name, "rss_first_mb": series[0].rss_mb, "rss_last_mb": series[-1].rss_mb,
                     "growth_mb_per_h": growth, "cpu_mean_pct": round(statistics.fmean(s.cpu_pct for s in series), 1),
                     "lag_ms_median": statistics.median(lags) if lags else None, "lag_ms_max": max(lags, default=None)})
    summary = {"passed": verdict.passed, "problems": list(verdict.problems), "duration_s": args.duration,
               "sim_rate_qps": args.sim_rate, "interval_s": args.interval, "warmup_s": args.warmup,
               "max_growth_mb_per_h": args.max_growth_mb_per_h, "orders": orders, "processes": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{'process':<18}{'RSS MB first->last':>20}{'MB/h':>8}{'CPU %':>7}{'lag ms p50/max':>16}")
    for r in rows:
        lag = "" if r["lag_ms_median"] is None else f"{r['lag_ms_median']:g}/{r['lag_ms_max']:g}"
        print(f"{r['process']:<18}{r['rss_first_mb']:>9.1f} -> {r['rss_last_mb']:<7.1f}{r['growth_mb_per_h']:>+8.2f}"
              f"{r['cpu_mean_pct']:>7}{lag:>16}")
    print(f"orders: {json.dumps(orders)}")
    print(f"soak: {'PASSED' if verdict.passed else 'FAILED'}; {args.out}/samples.csv, summary.json, soak.png")
    for problem in verdict.problems:
        print(f"  {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    verdict, samples, orders = run(args)
    report(args, verdict, samples, orders)
    if samples:
        from bench.soak.plot import draw

        draw(samples, args.out / "soak.png", f"soak: {args.duration / 60:g} min at {args.sim_rate:g} quotes/s "
                                             f"({'passed' if verdict.passed else 'FAILED'})")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
