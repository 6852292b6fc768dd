"""The `make run` market maker: deploy/supervisord.conf's programs (except redis) under a real
supervisord against the suite's Redis. Quotes fill, inventory is hedged, PnL is marked,
the kill switch empties the book, and an orderly shutdown leaves no open order."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.keys import PORTFOLIO, Keys
from core.orders import TERMINAL
from tests.helpers import eventually
from tests.supervisor_stack import deploy_programs, program_section, supervised

KEYS = Keys()
PROGRAMS = ("hub", "gateway", "spotter", "spread_calculator", "volatility", "quote_manager", "delta_hedger", "pnl")


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    deploy = deploy_programs()
    with supervised([program_section(deploy, name, redis_url, tmp_path) for name in PROGRAMS], tmp_path,
                    stop_timeout_s=60) as supervisor:
        yield supervisor.process


def orders(client: redis.Redis) -> list[dict[str, str]]:
    return [client.hgetall(key) for key in client.scan_iter(match=KEYS.order_pattern(), count=1000)]


def open_orders(client: redis.Redis) -> list[dict[str, str]]:
    return [o for o in orders(client) if o.get("status") not in TERMINAL]


def filled(client: redis.Redis, agent: str) -> list[dict[str, str]]:
    return [o for o in orders(client) if o.get("agent") == agent and o.get("status") == "filled"]


def test_stack_makes_markets_hedges_and_honours_the_kill_switch(stack: subprocess.Popen[bytes],
                                                                 sync_redis: redis.Redis) -> None:
    eventually(lambda: filled(sync_redis, "quote_manager"), timeout_s=30, message="a filled quote")
    eventually(lambda: sync_redis.hget(KEYS.position("AAPL"), "qty") not in (None, "0"), timeout_s=30,
               message="an AAPL position")
    hedge = eventually(lambda: filled(sync_redis, "delta_hedger"), timeout_s=45, message="a filled hedge")[0]
    assert hedge["order_type"] == "limit" and hedge["symbol"] in ("AAPL", "MSFT", "SPY")
    portfolio = eventually(lambda: sync_redis.hgetall(KEYS.cache(PORTFOLIO)), message="portfolio PnL")
    assert {"pnl_realized", "pnl_unrealized", "pnl_total"} <= portfolio.keys()
    assert "pnl_total" in sync_redis.hgetall(KEYS.cache("AAPL"))

    halted_at = time.monotonic()
    sync_redis.set(KEYS.risk_halt(), "1")
    eventually(lambda: open_orders(sync_redis) == [], timeout_s=5, message="an empty book after the halt")
    assert time.monotonic() - halted_at < 5
    count = len(orders(sync_redis))
    runs = int(sync_redis.hget(KEYS.agent("quote_manager"), "runs") or 0)
    eventually(lambda: int(sync_redis.hget(KEYS.agent("quote_manager"), "runs") or 0) > runs + 5, timeout_s=15,
               message="the quote manager keeps running while halted")
    assert len(orders(sync_redis)) == count  # and sends nothing: no resubmit or reject loop
    sync_redis.delete(KEYS.risk_halt())
    eventually(lambda: len(open_orders(sync_redis)) >= 2, timeout_s=15, message="quoting after the halt")

    # shutdown (make stop, Ctrl-C of make run) stops by reverse priority: the agents, then the gateway
    stack.terminate()
    assert stack.wait(60) == 0
    assert [o["client_order_id"] for o in open_orders(sync_redis)] == []
