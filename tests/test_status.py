"""``python -m hub.status``: every line fits 100 columns, prices on the tick, money in cents."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import redis

from core.keys import CACHE_TS_SUFFIX, PORTFOLIO, Keys
from hub.status import WIDTH, render, shown
from tests.helpers import ProcessGroup

KEYS = Keys()
NOW_NS = 1_800_000_000_000_000_000


@pytest.mark.parametrize(("field", "stored", "expected"), [
    ("avg_price", "468.3862900874635568513119534", "468.39"),  # a position's average cost, exact Decimal
    ("fair_price", "0.123456", "0.1235"),  # sub-dollar: Alpaca's 4-decimal tick
    ("bid", "467.91000000000003", "467.91"),  # a float's repr
    ("pnl_total", "-29.0000000000025", "-29.00"),
    ("realized_pnl", "1.005", "1.00"),  # half-even, like the gateway's own rounding
    ("volatility", "0.24637512", "0.2464"),
    ("qty", "55", "55"),
    ("avg_price", "0", "0"),  # a flat position has no price
    ("conflated", "1234567", "1234567"),
    ("state", "connected", "connected"),
    ("pnl_total", "nan", "nan"),  # not a number we can round: shown as stored
])
def test_values_are_rounded_for_display(field: str, stored: str, expected: str) -> None:
    assert shown(field, stored) == expected


def state() -> dict[str, dict[str, dict[str, str]]]:
    many = ",".join(f"SYM{i:03d}" for i in range(60))
    fresh, old = str(NOW_NS - 1_000_000_000), str(NOW_NS - 600_000_000_000)
    values = [("fair_price", "468.3862900874635568513119534"), ("pnl_total", "-29.0000000000025"),
              ("pnl_unrealized", "-0.379316"), ("spread", "0.0169333"), ("delta", "5"), ("spread_bps", "0.361893"),
              ("volatility", "0.246375"), ("mark", "467.89")]
    cache = {f: v for name, value in values for f, v in [(name, value), (name + CACHE_TS_SUFFIX, fresh)]}
    cache["volatility" + CACHE_TS_SUFFIX] = old
    return {
        "hubs": {"hub": {"source": "sim", "connection": "simulated", "rate_qps": "299.8", "quotes": "31199",
                         "dropped": "0", "symbols": many}},
        "gateways": {"gateway": {"broker": "sim", "intents": "238", "open_orders": "3", "rejected": "0"}},
        "agents": {"spread_calculator_for_a_long_strategy_name": {
            "class": "SpreadCalculator", "agent_type": "event_driven", "runs": "3117", "errors": "0",
            "conflated": "28085", "bad_messages": "0", "lag_ms": "2.455123", "last_run_ns": fresh, "pid": "13800",
            "host": "a-rather-long-host-name.example.internal"}},
        "positions": {"AAPL": {"qty": "55", "avg_price": "468.3862900874635568513119534",
                               "realized_pnl": "-29.0000000000025", "fees": "0"}},
        "quotes": {"AAPL": {"bid": "467.91", "ask": "467.92", "ts_ns": fresh}},
        "cache": {"AAPL": cache, PORTFOLIO: {"pnl_total": "-30.295", "positions": "3"}},
    }


def test_every_line_fits_100_columns_and_no_raw_decimal_is_shown() -> None:
    text = render(state(), NOW_NS)
    assert max(map(len, text.splitlines())) <= WIDTH
    assert "468.3862900874635568513119534" not in text and "-29.0000000000025" not in text
    assert "fair_price=468.39" in text and "pnl_total=-29.00" in text and "468.39" in text
    assert "volatility=0.2464(10m)" in text  # a stale field shows its age; fresh ones do not
    assert "spread=0.01693 " in text or text.rstrip().endswith("spread=0.01693")


def test_status_command_prints_tables_that_fit(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    now = str(time.time_ns())
    sync_redis.hset(KEYS.latest_quote("AAPL"), mapping={"bid": "467.91000000000003", "ask": "467.92", "ts_ns": now})
    sync_redis.hset(KEYS.cache("AAPL"), mapping={"fair_price": "468.3862900874635568513119534",
                                                 "fair_price" + CACHE_TS_SUFFIX: now})
    sync_redis.hset(KEYS.position("AAPL"), mapping={"qty": "10", "avg_price": "468.3862900874635568513119534",
                                                    "realized_pnl": "-29.0000000000025"})
    done = processes.run("-m", "hub.status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= WIDTH
    assert any(line.startswith("AAPL") and "468.39" in line and "-29.00" in line for line in lines)
    assert "467.91 " in done.stdout and "fair_price=468.39" in done.stdout
    snapshot = json.loads(processes.run("-m", "hub.status", "--json").stdout)
    assert snapshot["positions"]["AAPL"]["avg_price"] == "468.3862900874635568513119534"  # JSON keeps full precision


def test_a_reader_that_goes_away_is_no_error(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    sync_redis.hset(KEYS.latest_quote("AAPL"), mapping={"bid": "1", "ask": "2", "ts_ns": str(time.time_ns())})
    # `python -m hub.status --json | head -1`: the pipe closes before the status is written
    proc = subprocess.Popen([processes.python, "-m", "hub.status", "--json"], cwd=processes.cwd, env=processes.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.wait(30) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()
