"""examples/shadow_market_making_algo.py runs as written beside the `make run` stack: in-process (its own
namespace), and against the stack's hub and gateway (agents of its own names); an expected failure is one line."""

from __future__ import annotations

import signal
import subprocess

import redis

from core.keys import PORTFOLIO, Keys
from core.orders import TERMINAL
from tests.helpers import ProcessGroup, eventually

KEYS = Keys()
SHADOW = Keys("shadow")
QM = "shadow_quote_manager"  # --external: the example's agents take names of their own beside the stack's
EXAMPLE = "examples/shadow_market_making_algo.py"


def orders(client: redis.Redis, keys: Keys = KEYS) -> list[dict[str, str]]:
    return [client.hgetall(key) for key in client.scan_iter(match=keys.order_pattern(), count=1000)]


def open_orders(client: redis.Redis, keys: Keys = KEYS) -> list[dict[str, str]]:
    return [o for o in orders(client, keys) if o.get("status") not in TERMINAL]


def start_stack_names(processes: ProcessGroup) -> None:
    """Processes under the names `make run` gives them (hub, gateway, spotter), as the stack would hold them."""
    processes.start("-m", "hub", "--source", "sim", "--symbols", "AAPL,MSFT", "--sim-rate", "200",
                    "--sim-volatility", "0.6")
    processes.start("-m", "hub.execution", "--broker", "sim", "--order-rate", "20", "--order-burst", "40")
    processes.start("-m", "agents.spotter", "--instruments", "AAPL,MSFT", "--throttle", "100ms")


def test_example_runs_in_process_beside_the_stack_in_its_own_namespace(processes: ProcessGroup,
                                                                         sync_redis: redis.Redis) -> None:
    start_stack_names(processes)
    eventually(lambda: sync_redis.exists(KEYS.agent("spotter")), message="the stack's spotter")
    result = processes.run(EXAMPLE, "--seconds", "6", timeout_s=60)
    assert result.returncode == 0, result.stderr[-3000:]
    placed = orders(sync_redis, SHADOW)
    assert {o["agent"] for o in placed} >= {"quote_manager"}
    assert any(o["status"] == "filled" for o in placed), "no quote was filled in 6 s of simulated market"
    assert open_orders(sync_redis, SHADOW) == []  # quotes cancelled on the way out
    for symbol in ("AAPL", "MSFT"):
        cache = sync_redis.hgetall(SHADOW.cache(symbol))
        for field in ("fair_price", "spread", "volatility", "delta", "pnl_total"):
            assert field in cache, f"{symbol} has no {field}: {sorted(cache)}"
    assert "pnl_total" in sync_redis.hgetall(SHADOW.cache(PORTFOLIO))
    assert "portfolio pnl:" in result.stdout
    assert orders(sync_redis) == []  # nothing reached the stack's namespace
    assert sync_redis.exists(KEYS.agent("spotter"))  # and the stack's spotter kept its name


def test_example_fails_in_one_line_with_the_exit_code(processes: ProcessGroup) -> None:
    result = processes.run(EXAMPLE, "--seconds", "1", "--sim-rate", "-5", timeout_s=60)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr


def test_example_against_the_stacks_processes_honours_the_kill_switch(processes: ProcessGroup,
                                                                      sync_redis: redis.Redis) -> None:
    start_stack_names(processes)
    example = processes.start(EXAMPLE, "--external")
    eventually(lambda: any(o["status"] == "filled" for o in orders(sync_redis)), timeout_s=30,
               message="a filled quote")

    sync_redis.set(KEYS.risk_halt(), "1")
    eventually(lambda: open_orders(sync_redis) == [], timeout_s=5, message="no open order after the halt")
    count = len(orders(sync_redis))
    # the quote manager keeps running but sends nothing while halted (no resubmit/reject loop)
    eventually(lambda: sync_redis.hget(KEYS.agent(QM), "runs"), message="quote manager alive")
    runs_before = int(sync_redis.hget(KEYS.agent(QM), "runs") or 0)
    eventually(lambda: int(sync_redis.hget(KEYS.agent(QM), "runs") or 0) > runs_before + 3,
               timeout_s=10, message="quote manager runs while halted")
    assert len(orders(sync_redis)) == count

    sync_redis.delete(KEYS.risk_halt())
    eventually(lambda: len(open_orders(sync_redis)) >= 2, timeout_s=10, message="quoting resumes")

    example.send_signal(signal.SIGTERM)
    try:
        assert example.wait(20) == 0, processes.output(example)[-3000:]
    except subprocess.TimeoutExpired:
        raise AssertionError(processes.output(example)[-3000:]) from None
    eventually(lambda: [o for o in open_orders(sync_redis) if o["agent"] == QM] == [],
               timeout_s=5, message="quotes cancelled at shutdown")


def test_custom_trading_agent_example(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    processes.start("-m", "hub", "--symbols", "AAPL", "--sim-rate", "300")
    processes.start("-m", "hub.execution", "--broker", "sim")
    processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--throttle", "50ms")
    agent = processes.start("examples/fair_value_taker.py", "--instruments", "AAPL", "--throttle", "100ms",
                            "--edge", "0.001", "--clip", "10", "--max-position", "30")
    taken = eventually(lambda: [o for o in orders(sync_redis) if o["agent"] == "fair_value_taker"
                                and o["status"] == "filled"], timeout_s=20, message="a filled taker order")
    assert taken[0]["time_in_force"] == "ioc" and taken[0]["qty"] == "10"
    eventually(lambda: len(orders(sync_redis)) >= 4, timeout_s=20, message="several orders")
    assert abs(float(sync_redis.hget(KEYS.position("AAPL"), "qty") or 0)) <= 30
    assert agent.poll() is None, processes.output(agent)[-2000:]
