"""`python -m bench --smoke` runs every section and writes the JSON (it checks the harness works, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_bench_smoke_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True
    assert result["dashboard"]["pushes_per_s"] > 0
    for section in ("publish", "intake", "latency", "fanout", "overload", "orders", "dashboard", "ingest", "cluster"):
        assert section in result, section
    for row in ("project", "bare", "raw", "sim", "alpaca"):
        assert result["publish"][row] > 0, row
    for row in ("project", "bare", "raw", "project_1", "raw_1"):
        assert result["intake"][row] > 0, row
    for rate in ("10000",):  # the full run measures 1,000 and 50,000 too
        figures = result["latency"][rate]
        assert figures["project"]["run"]["n"] > 0 and figures["bare"]["n"] > 0 and figures["raw"]["n"] > 0
        assert figures["project_cache"]["cache_visible"]["n"] > 0
    for agents in ("1", "4"):  # the full run also measures 8
        assert result["fanout"][agents]["project"]["run"]["n"] > 0
    overload = result["overload"]
    assert overload["agent_rss_kb"]["peak"] > 0 and overload["hub_rss_kb"]["peak"] > 0
    assert overload["agent_alive"] is True
    assert result["ingest"]["sdk"] > 0 and result["ingest"]["hub"] > 0
    assert result["cluster"]["cluster"] > 0 and result["cluster"]["failover_recovery_s"] > 0
    fanout = result["cluster"]["fanout"]
    assert fanout["node_delivered_per_s"] > 0 and fanout["cluster_delivered_per_s"] > 0
    assert len(fanout["cluster_masters_cpu_s"]) == 3 and all(fanout["cluster_masters_cpu_s"])
    assert fanout["lost"] == {"node": 0, "cluster": 0}  # every message reached every subscriber
    assert result["retention"]["removed"] == result["retention"]["orders"] > 0
    assert result["orders"]["ack"]["n"] > 0 and result["orders"]["intents_per_s"] > 0
    assert str(out) in done.stdout and "hub publish" in done.stdout
