"""`python -m hub.history` against the local REST stand-in, through alpaca-py's StockHistoricalDataClient."""

from __future__ import annotations

import csv
from pathlib import Path

from core.exitcodes import ExitCode
from hub.history import parse_time_ns
from hub.marketdata.recording import read_recording
from tests.alpaca_data_server import HistoryServer
from tests.helpers import ProcessGroup

BASE_NS = parse_time_ns("2024-07-01T13:30:00Z")
# ts_ns, bid, bid_size, ask, ask_size; odd nanoseconds to prove all nine digits survive
AAPL = [(BASE_NS + i * 90_000_000_007, 210.0 + i / 100, float(i % 4 + 1), 210.02 + i / 100, 2.0) for i in range(45)]
MSFT = [(BASE_NS + i * 130_000_000_003, 450.0 + i / 100, 1.0, 450.05 + i / 100, float(i % 3 + 1)) for i in range(31)]
ARGS = ("-m", "hub.history", "--symbols", "AAPL,MSFT", "--start", "2024-07-01T13:30:00Z",
        "--end", "2024-07-01T14:30:00Z", "--chunk", "20m")


def expected_rows() -> list[tuple[int, str, float, float, float, float]]:
    rows = [(r[0], "AAPL", *r[1:]) for r in AAPL] + [(r[0], "MSFT", *r[1:]) for r in MSFT]
    return sorted(r for r in rows if r[0] < BASE_NS + 3600 * 10**9)


def test_parse_time_keeps_nanoseconds() -> None:
    assert parse_time_ns("1970-01-01T00:00:01.000000007Z") == 1_000_000_007
    assert parse_time_ns("1970-01-01T01:00:00+01:00") == 0


def test_history_pages_into_a_replayable_recording(processes: ProcessGroup, tmp_path: Path) -> None:
    out = tmp_path / "day.tfrec"
    with HistoryServer({"AAPL": AAPL, "MSFT": MSFT}, page_size=7) as rest:
        done = processes.run(*ARGS, "--out", str(out), env={
            "APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret", "APCA_API_DATA_URL": rest.url})
        assert done.returncode == 0, done.stderr
        assert len(rest.requests) > 3 * 2  # three windows, several pages each
        assert any(q.get("page_token") for q in rest.requests)
    replayed = [(row[0], symbol, *row[2:]) for symbol, rows in read_recording(out) for row in rows]
    assert replayed == expected_rows()
    assert "secret" not in done.stderr


def test_history_csv_and_bad_keys(processes: ProcessGroup, tmp_path: Path) -> None:
    out = tmp_path / "day.csv"
    with HistoryServer({"AAPL": AAPL, "MSFT": MSFT}) as rest:
        env = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret", "APCA_API_DATA_URL": rest.url}
        assert processes.run(*ARGS, "--out", str(out), "--format", "csv", env=env).returncode == 0
        refused = processes.run(*ARGS, "--out", str(tmp_path / "x.csv"), env={**env, "APCA_API_SECRET_KEY": "no"})
    with open(out, newline="") as file:
        rows = [(int(r["ts_ns"]), r["symbol"], float(r["bid"]), float(r["bid_size"]), float(r["ask"]),
                 float(r["ask_size"])) for r in csv.DictReader(file)]
    assert rows == expected_rows()
    assert refused.returncode == ExitCode.PROVIDER_REFUSED
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.part").exists()
