"""Pure parts of the dashboard: the heartbeat histogram format, the token, the control checks, chart series."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request

from core.errors import ConfigError
from core.histogram import Histogram, read_histogram
from core.settings import build
from hub.dashboard.control import Refused, check_request
from hub.dashboard.settings import ControlToken, DashboardSettings, load_token
from hub.dashboard.state import Series

TOKEN = "0123456789abcdefXYZ"


def test_histogram_fields_read_back_cumulative() -> None:
    hist = Histogram((1, 10))
    for v in (0.5, 2, 3, 50):
        hist.observe(v)
    fields = {k: str(v) for k, v in hist.fields("run_ms").items()}
    assert fields["run_ms_hist"] == "1:1,10:3,+Inf:4"
    reading = read_histogram(fields, "run_ms")
    assert reading is not None and reading.buckets[-1] == ("+Inf", 4) and reading.sum == 55.5


@pytest.mark.parametrize("text", ["1:3,+Inf:2", "1:x,+Inf:2", "1:1,10:3", ""])
def test_histogram_bad_fields_are_ignored(text: str) -> None:
    assert read_histogram({"h_hist": text, "h_sum": "1"}, "h") is None


def test_token_from_file_or_env_never_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    token = load_token(build(DashboardSettings, {"control_token_file": str(path)}), {})
    assert token is not None and token.matches(TOKEN) and not token.matches(TOKEN + "x")
    assert TOKEN not in repr(token)
    assert load_token(build(DashboardSettings, {}), {"TF_DASHBOARD_TOKEN": TOKEN}) is not None
    assert load_token(build(DashboardSettings, {}), {}) is None
    with pytest.raises(ConfigError) as error:
        load_token(build(DashboardSettings, {}), {"TF_DASHBOARD_TOKEN": "short"})
    assert "short" not in str(error.value)


def test_poll_faster_than_ten_per_second_is_refused() -> None:
    with pytest.raises(ConfigError, match="100ms"):
        build(DashboardSettings, {"poll": "50ms"})


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1:8050", **headers}.items()]
    return Request({"type": "http", "method": "POST", "scheme": "http", "path": "/", "headers": raw,
                    "server": ("127.0.0.1", 8050), "query_string": b""})


def test_control_checks() -> None:
    token = ControlToken(TOKEN)
    good = {"content-type": "application/json", "x-tf-control-token": TOKEN, "origin": "http://127.0.0.1:8050",
            "sec-fetch-site": "same-origin"}
    check_request(_request(good), token, loopback=True)
    for change in ({"x-tf-control-token": "nope"}, {"origin": "http://evil"}, {"sec-fetch-site": "same-site"},
                   {"content-type": "text/plain"}, {"host": "evil:8050"}):
        with pytest.raises(Refused):
            check_request(_request({**good, **change}), token, loopback=True)
    with pytest.raises(Refused, match="read-only"):
        check_request(_request(good), None, loopback=True)


def test_series_gives_each_page_only_what_it_lacks() -> None:
    series = Series(("t_ms", "v"), maxlen=3)
    for i in range(2):
        series.append((float(i), float(i)))
    rows, reset = series.since(0)
    assert reset and len(rows) == 2
    series.append((2.0, 2.0))
    assert series.since(2) == ([(2.0, 2.0)], False)
    for i in range(3, 8):
        series.append((float(i), float(i)))
    rows, reset = series.since(3)  # fell behind the buffer: start over with what is kept
    assert reset and [r[0] for r in rows] == [5.0, 6.0, 7.0]
