"""The tearsheet opens in headless chromium without console errors and holds the expected points."""

from __future__ import annotations

from pathlib import Path

from backtest.cli import run_one
from backtest.config import load_config
from tests.browser import page, screenshot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "backtest_market_maker.toml"


def test_tearsheet_renders_offline_with_every_point(tmp_path: Path) -> None:
    result = run_one(load_config(str(EXAMPLE)), tmp_path / "mm")
    html = tmp_path / "mm" / "tearsheet.html"
    assert "<script src=" not in html.read_text()  # plotly.js is inside the file, nothing is loaded
    errors: list[str] = []
    with page(errors) as tab:
        tab.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else
                  route.continue_())  # offline: any network request would fail the page
        tab.goto(html.as_uri())
        tab.wait_for_function("document.getElementById('tearsheet') && document.getElementById('tearsheet')"
                              ".querySelectorAll('.scatterlayer .trace').length > 0")
        points = tab.evaluate("Object.fromEntries(document.getElementById('tearsheet').data"
                              ".map(t => [t.name, t.x.length]))")
        rendered = tab.evaluate("document.querySelectorAll('#tearsheet .scatterlayer .trace').length")
        stats_rows = tab.evaluate("document.querySelectorAll('#stats tr').length")
        shot = screenshot(tab, tmp_path / "tearsheet.png")
    assert errors == []
    samples = len(result.samples)
    for name in ("bid ESU4", "ask ESU4", "fair price ESU4", "own bid ESU4", "own ask ESU4", "inventory ESU4",
                 "equity", "drawdown"):
        assert points[name] == samples, name
    fills = result.fills
    assert points["buy fills ESU4"] == sum(1 for f in fills if f["side"] == "buy")
    assert points["sell fills ESU4"] == sum(1 for f in fills if f["side"] == "sell")
    assert points["buy fills ESU4"] + points["sell fills ESU4"] == result.stats["fills"] > 0
    assert rendered == len(points)
    assert stats_rows == len(result.stats)
    assert shot.stat().st_size > 10_000
