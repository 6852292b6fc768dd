"""The soak (bench/soak): its verdict rule on made-up series, its order ledger on a real Redis, and a
20 s run of the whole stack that writes the CSV, the summary and the plot (it checks the soak works,
never how much memory anything uses)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from bench.soak.ledger import Ledger
from bench.soak.sampler import FIELDS, Sample
from bench.soak.stack import programs
from bench.soak.verdict import judge, slope_per_h
from core.keys import Keys

REPO = Path(__file__).resolve().parent.parent
KEYS = Keys()


def series(process: str, mb_per_h: float, *, start_mb: float = 40) -> list[Sample]:
    """An hour of samples every 10 s, growing linearly."""
    return [Sample(t, process, 1, start_mb + mb_per_h * t / 3600, 1.0) for t in range(0, 3601, 10)]


def test_slope_is_per_hour_and_zero_without_enough_points() -> None:
    assert slope_per_h([(0, 10), (1800, 13)]) == pytest.approx(6.0)
    assert slope_per_h([(5, 10)]) == 0.0
    assert slope_per_h([(5, 10), (5, 12)]) == 0.0


def test_flat_memory_passes_and_growth_over_the_limit_fails() -> None:
    verdict = judge(series("hub", 0.5) + series("spotter", 7.5), warmup_s=600)
    assert verdict.growth_mb_per_h["hub"] == pytest.approx(0.5)
    assert not verdict.passed
    assert [p.split(":")[0] for p in verdict.problems] == ["spotter"]


def test_growth_during_warmup_is_not_judged() -> None:
    warming = [Sample(t, "gateway", 1, 30 + min(t, 300) / 5, 1.0) for t in range(0, 3601, 10)]  # +60 MB, then flat
    assert judge(warming, warmup_s=600).passed
    assert not judge(warming, warmup_s=0).passed


def test_redis_memory_is_reported_not_judged_but_lost_orders_and_early_exits_fail() -> None:
    verdict = judge(series("redis", 50.0), warmup_s=0)
    assert verdict.passed and verdict.growth_mb_per_h["redis"] == pytest.approx(50.0)
    assert not judge([], 0, lost=["lost: intent a-1 has no order hash"]).passed
    assert judge([], 0, exits={"hub": 70}).problems == ("hub exited early with code 70",)


def test_ledger_finds_an_intent_without_an_order_and_a_fill_missing_from_the_hash(sync_redis: redis.Redis) -> None:
    for coid in ("kept-1", "lost-1"):
        sync_redis.xadd(KEYS.order_intents(), {"v": "1", "kind": "submit", "agent": "a", "client_order_id": coid})
    sync_redis.xadd(KEYS.order_events(), {"client_order_id": "kept-1", "status": "filled", "symbol": "AAPL",
                                          "side": "buy", "fill_qty": "5"})
    sync_redis.hset(KEYS.order("kept-1"), mapping={"status": "filled", "filled_qty": "4"})
    sync_redis.hset(KEYS.position("AAPL"), "qty", "5")
    ledger = Ledger(sync_redis, KEYS)
    ledger.poll()
    ledger.poll()  # reading again adds nothing: the cursor moved on
    assert ledger.check() == ["lost: intent lost-1 has no order hash",
                              "order kept-1: filled_qty 4 but fills add up to 5"]
    assert ledger.summary() == {"orders_sent": 2, "fill_events": 1, "filled": 1}


def test_the_soak_runs_every_program_of_the_deploy_file() -> None:
    names = [p.name for p in programs(50)]
    assert names == ["hub", "gateway", "spotter", "spread_calculator", "volatility", "quote_manager",
                     "delta_hedger", "pnl"]
    hub = next(p for p in programs(50) if p.name == "hub")
    assert hub.argv[hub.argv.index("--sim-rate") + 1] == "50" and hub.argv[0] == sys.executable


@pytest.mark.timeout(240)
def test_a_short_soak_writes_samples_summary_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--duration", "10s", "--interval", "1s",
                           "--warmup", "3s", "--max-growth-mb-per-h", "1000000", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "samples.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(FIELDS)
    assert {r["process"] for r in rows} == {p.name for p in programs(1)} | {"redis"}
    assert all(float(r["rss_mb"]) > 0 for r in rows)
    assert any(r["used_mb"] for r in rows if r["process"] == "redis")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["problems"] == []
    assert summary["orders"]["orders_sent"] > 0  # the market maker traded, and the ledger found every order
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
