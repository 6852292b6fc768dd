"""The dashboard in a real browser (Debian chromium through playwright) on the `make run` stack.

deploy/supervisord.conf's programs run under a real supervisord against the suite's Redis, the
dashboard among them with a control token: the charts gain points, every process is listed, the
market maker's fills appear, the page logs no console error, and the kill switch toggled from the
page sets tf:risk:halt and empties the book.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page

from core.keys import Keys
from tests.browser import page, screenshot
from tests.conftest import REPO, free_port
from tests.dashboard_helpers import TOKEN, snapshot, wait_until_serving
from tests.helpers import eventually
from tests.supervisor_stack import deploy_programs, program_section, supervised

KEYS = Keys()
AGENTS = ("spotter", "spread_calculator", "volatility", "quote_manager", "delta_hedger", "pnl")
PROGRAMS = ("hub", "gateway", *AGENTS)
#: Where the test leaves its screenshot for people (docs/img/dashboard.png is picked from these).
SCREENSHOTS = REPO / "var" / "screenshots"


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    deploy = deploy_programs()
    sections = [program_section(deploy, name, redis_url, tmp_path) for name in PROGRAMS]
    sections.append(program_section(deploy, "dashboard", redis_url, tmp_path,
                                    f" --port {port} --control-token-file {token_file}"))
    with supervised(sections, tmp_path, stop_timeout_s=60):
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base)
        yield base


def chart_points(tab: Page, chart: str) -> int:
    return int(tab.eval_on_selector(f"#{chart}", "e => e.dataset.points"))


def table_column(tab: Page, table: str, column: int) -> list[str]:
    cells = tab.eval_on_selector_all(f"#{table} tr td:nth-child({column})", "cells => cells.map(c => c.textContent)")
    return list(cells)


def fill_rows(tab: Page) -> int:
    return int(tab.eval_on_selector_all("#fills tr td:not(.muted)", "cells => cells.length"))


@pytest.mark.timeout(240)
def test_page_shows_the_live_stack_and_its_kill_switch_empties_the_book(stack: str, sync_redis: redis.Redis,
                                                                       tmp_path: Path) -> None:
    errors: list[str] = []
    with page(errors) as tab:
        tab.goto(stack + "/#AAPL")
        eventually(lambda: set(PROGRAMS) <= set(table_column(tab, "processes", 2)), timeout_s=30,
                   message="every process in the table")
        eventually(lambda: set(table_column(tab, "processes", 3)) == {"running"}, message="every process running")
        first = eventually(lambda: chart_points(tab, "price-chart"), timeout_s=15, message="price points")
        eventually(lambda: chart_points(tab, "price-chart") >= first + 10, timeout_s=15, message="more price points")
        eventually(lambda: chart_points(tab, "vol-chart") > 0, message="volatility/spread points")
        eventually(lambda: fill_rows(tab), timeout_s=45, message="a fill in the fills table")
        eventually(lambda: chart_points(tab, "pnl-chart") >= 2, timeout_s=30, message="PnL points")
        eventually(lambda: "fair_price" in table_column(tab, "cache", 1), message="cache fields")
        assert tab.is_visible("#control")
        shot = screenshot(tab, tmp_path / "dashboard.png")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / "dashboard.png")

        tab.fill("#token", TOKEN)
        tab.click("#halt-toggle")
        eventually(lambda: sync_redis.get(KEYS.risk_halt()), timeout_s=5, message="tf:risk:halt set from the page")
        eventually(lambda: sync_redis.scard(KEYS.open_orders()) == 0, timeout_s=10, message="an empty book")
        eventually(lambda: tab.is_visible("#banners [data-id=halt]"), message="the page shows the halt")
        eventually(lambda: (snapshot(stack) or {}).get("orders") == [], message="no open order on the page")
        eventually(lambda: "OFF" in tab.inner_text("#halt-toggle"), message="the toggle offers to clear it")
        screenshot(tab, SCREENSHOTS / "dashboard-halted.png")
        tab.click("#halt-toggle")
        eventually(lambda: sync_redis.get(KEYS.risk_halt()) is None, timeout_s=5, message="halt cleared from the page")
        eventually(lambda: sync_redis.scard(KEYS.open_orders()) > 0, timeout_s=20, message="quoting again")
        tab.click("#cancel-all")
        eventually(lambda: [f for _, f in sync_redis.xrange(KEYS.operator_intents())
                            if f.get("kind") == "cancel_all" and f.get("agent") == "operator"],
                   message="an operator cancel-all from the page")
    assert errors == []
