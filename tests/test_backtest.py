"""The backtest engine: data-time semantics, fills, determinism and the results folder."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agents.base import TradingAgent
from agents.events import Event, Tick
from backtest import HistoricalSource, parse_config, run_backtest
from backtest.cli import run_one
from backtest.config import load_config
from core.codec import Quote

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "backtest_market_maker.toml"
ESU4 = ROOT / "tests" / "data" / "futures_cme_esu4_mbp1_20240701.csv"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


class Recording(TradingAgent):
    """Remembers (data time, event) of every run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, Event]] = []

    async def run(self, data: Event) -> None:
        self.seen.append((self.data_cache._clock.time_ns(), data))


class Buyer(TradingAgent):
    """Sends one order on its first run (the order is in the config)."""

    order: ClassVar[dict[str, Any]] = {}

    async def run(self, data: Event) -> None:
        if not getattr(self, "sent", False):
            self.sent = True
            if self.order.get("type") == "market":
                await self.trading.submit_market("XYZ", self.order["side"], self.order["qty"])
            else:
                await self.trading.submit_limit("XYZ", self.order["side"], self.order["qty"], self.order["price"])


def quotes(*rows: tuple[int, float, float, float, float]) -> list[tuple[str, int, float, float, float, float]]:
    """(ms after T0, bid, bid_size, ask, ask_size) -> source events for XYZ."""
    return [("XYZ", T0 + ms * MS, bid, bs, ask, asz) for ms, bid, bs, ask, asz in rows]


def config(gateway: dict[str, Any] | None = None, **backtest: Any) -> Any:
    return parse_config({"backtest": {"cash": 100_000, "end_drain": "0s", **backtest},
                         "gateway": {"require_quote": False, **(gateway or {})}})


async def test_event_driven_throttle_is_leading_and_trailing_edge_in_data_time() -> None:
    agent = Recording(config={"instruments": "XYZ", "throttle": "100ms"})
    source = quotes((0, 10, 1, 11, 1), (10, 10, 2, 11, 1), (20, 10, 3, 11, 1), (150, 10, 4, 11, 1),
                    (400, 10, 5, 11, 1))
    result = await run_backtest(config(), HistoricalSource(streams=[source]), agents=[agent])
    runs = [(t - T0) // MS for t, _ in agent.seen]
    sizes = [e.bid_size for _, e in agent.seen if isinstance(e, Quote)]
    assert runs == [0, 100, 200, 400]  # leading edge, trailing edge with the latest, next window, quiet again
    assert sizes == [1, 3, 4, 5]
    assert result.stats["agent_conflated"] == {"recording": 1}


async def test_throttle_zero_runs_on_every_quote() -> None:
    agent = Recording(config={"instruments": "XYZ", "throttle": "0s"})
    source = quotes(*[(i, 10, i + 1, 11, 1) for i in range(50)])
    await run_backtest(config(), HistoricalSource(streams=[source]), agents=[agent])
    assert [e.bid_size for _, e in agent.seen] == [float(i + 1) for i in range(50)]


async def test_periodic_agent_runs_on_its_grid_in_data_time() -> None:
    agent = Recording(config={"instruments": "XYZ", "throttle": "1s", "agent_type": "periodic"})
    source = quotes((0, 10, 1, 11, 1), (1500, 10, 2, 11, 1), (3200, 10, 3, 11, 1))
    await run_backtest(config(end_drain="1s"), HistoricalSource(streams=[source]), agents=[agent])
    assert [(t - T0) // MS for t, _ in agent.seen] == [1000, 2000, 3000, 4000]
    kinds = [type(e).__name__ if isinstance(e, Tick) else e.bid_size for _, e in agent.seen]
    assert kinds == [1.0, 2.0, 2.0, 3.0]  # as live: a tick with nothing new sees the latest quote again


async def test_cache_driven_agent_runs_on_cache_changes() -> None:
    from agents.spotter import Spotter

    spotter = Spotter(config={"instruments": "XYZ", "throttle": "0s"})
    follower = Recording(config={"instruments": "XYZ", "throttle": "0s", "on_quotes": False,
                                 "on_cache": "fair_price", "name": "follower"})
    source = quotes((0, 10, 1, 11, 1), (5, 10, 3, 11, 1))
    await run_backtest(config(), HistoricalSource(streams=[source]), agents=[spotter, follower])
    assert [(t - T0) // MS for t, _ in follower.seen] == [0, 5]
    assert all(e.fields == ("fair_price",) for _, e in follower.seen)


async def test_a_crossed_quote_behind_usable_ones_leaves_the_last_usable_one() -> None:
    """Issue 9's IBM rows: the backtest conflates latest-usable-wins, as the live runtime does."""
    from agents.spotter import Spotter

    spotter = Spotter(config={"instruments": "IBM", "throttle": "1ms"})
    rows = [("IBM", T0, 182.00, 100, 182.10, 300), ("IBM", T0 + MS, 182.01, 200, 182.09, 100),
            ("IBM", T0 + MS, 182.20, 100, 182.05, 100)]
    await run_backtest(config(), HistoricalSource(streams=[rows]), agents=[spotter])
    assert round(await spotter.data_cache.get("IBM", "fair_price"), 4) == 182.0633


class Reuser(TradingAgent):
    """Sends one order, then the same id with another qty: the gateway refuses the second visibly."""

    async def run(self, data: Event) -> None:
        if not getattr(self, "sent", False):
            self.sent = True
            await self.trading.submit_limit("XYZ", "buy", 1, "9", client_order_id="reuser-1")
            await self.trading.submit_limit("XYZ", "buy", 2, "9", client_order_id="reuser-1")
            try:
                await self.trading.wait_for("reuser-1", {"filled"}, timeout_s=0.5)
            except Exception as e:  # the refusal, as live: OrderRejected with the gateway's reason
                self.outcome = e


async def test_a_refused_intent_reaches_the_sender_as_live() -> None:
    agent = Reuser(config={"instruments": "XYZ", "throttle": "0s", "name": "reuser"})
    result = await run_backtest(config(), HistoricalSource(streams=[quotes((0, 10, 1, 11, 1), (10, 10, 1, 11, 1))]),
                                agents=[agent])
    assert type(agent.outcome).__name__ == "OrderRejected"
    assert "different order" in (agent.trading.rejection("reuser-1") or "")
    # the first order stands: no row of it is rejected (before the fix the refusal raised inside the
    # gateway's publish and was counted as a poison intent with a second rejection)
    assert {o["client_order_id"] for o in result.orders} == {"reuser-1"}
    assert "rejected" not in {o.get("status") for o in result.orders}


async def run_order(order: dict[str, Any], rows: list[Any], **gateway: Any) -> Any:
    Buyer.order = order
    agent = Buyer(config={"instruments": "XYZ", "throttle": "0s", "name": "buyer"})
    return await run_backtest(config(gateway), HistoricalSource(streams=[quotes(*rows)]), agents=[agent])


async def test_resting_buy_fills_on_touch_but_not_through_mode_never_beyond_displayed_size() -> None:
    rows = [(0, 10.0, 5, 10.2, 5), (10, 10.0, 5, 10.1, 3), (20, 9.9, 5, 10.0, 2)]
    touch = await run_order({"side": "buy", "qty": 10, "price": 10.1}, rows, sim_fill="touch")
    assert [(f["fill_qty"], f["fill_price"]) for f in touch.fills] == [("3", "10.1"), ("2", "10.1")]
    through = await run_order({"side": "buy", "qty": 10, "price": 10.1}, rows, sim_fill="through")
    assert [(f["fill_qty"], f["fill_price"]) for f in through.fills] == [("2", "10.1")]


async def test_order_reaches_the_book_after_the_latency_in_data_time() -> None:
    rows = [(0, 10.0, 5, 10.1, 5), (1, 10.0, 5, 10.1, 5), (6, 10.0, 5, 10.3, 5)]
    result = await run_order({"side": "buy", "qty": 1, "price": 10.1}, rows, sim_latency="5ms")
    assert result.fills == []  # the quotes at 0 and 1 ms were gone when it arrived; the one at 6 ms is above
    result = await run_order({"side": "buy", "qty": 1, "price": 10.1}, rows[:2], sim_latency="0s")
    assert [f["fill_price"] for f in result.fills] == ["10.1"]


async def test_market_order_walks_the_rest_at_the_slippage_and_sells_pay_sec_and_taf() -> None:
    rows = [(0, 100.0, 30, 100.1, 30), (1, 100.0, 30, 100.1, 30)]
    result = await run_order({"side": "sell", "qty": 100, "type": "market"}, rows, sim_market_walk=True,
                             sim_market_slippage_bps=10, sim_sec_fee_per_million=27.8, sim_taf_per_share=0.000166,
                             sim_taf_max=8.3)
    fills = [(f["fill_qty"], f["fill_price"]) for f in result.fills]
    assert fills == [("30", "100"), ("70", "99.9")]
    fee_30 = 30 * 0.000166 + 30 * 100 * 27.8e-6
    assert float(result.fills[0]["fee"]) == pytest.approx(fee_30)


def test_same_config_twice_gives_byte_identical_results(tmp_path: Path) -> None:
    cfg = load_config(str(EXAMPLE))
    first = run_one(cfg, tmp_path / "a", tearsheet=False)
    second = run_one(load_config(str(EXAMPLE)), tmp_path / "b", tearsheet=False)
    assert first.digest == second.digest
    for name in ("orders.csv", "fills.csv", "positions.csv", "equity.csv", "prices.csv", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.stats["fills"] > 0 and first.stats["orders_accepted"] > 0


def test_two_processes_with_different_hash_seeds_write_identical_files(tmp_path: Path) -> None:
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}"
        done = subprocess.run([sys.executable, "-m", "backtest", str(EXAMPLE), "--out", str(out)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONHASHSEED": seed})
        assert done.returncode == 0, done.stderr
        outputs.append(out)
    for name in ("orders.csv", "fills.csv", "positions.csv", "equity.csv", "prices.csv", "stats.json",
                 "tearsheet.html"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name


def test_changing_one_quote_changes_the_digest(tmp_path: Path) -> None:
    lines = ESU4.read_text().splitlines(keepends=True)
    ts, symbol, bid, bid_size, ask, ask_size = lines[10].strip().split(",")
    lines[10] = ",".join([ts, symbol, bid, str(int(bid_size) + 7), ask, ask_size]) + "\n"
    changed = tmp_path / "changed.csv"
    changed.write_text("".join(lines))
    raw = load_config(str(EXAMPLE)).raw
    base = parse_config(raw)
    other = parse_config({**raw, "backtest": {**raw["backtest"], "data": [str(changed)]}})
    assert run_one(base, tmp_path / "a", tearsheet=False).digest != \
        run_one(other, tmp_path / "b", tearsheet=False).digest


def test_example_config_runs_as_written_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "mm"
    done = subprocess.run([sys.executable, "-m", "backtest", str(EXAMPLE.relative_to(ROOT)), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "digest sha256:" in done.stdout
    for name in ("orders.csv", "fills.csv", "positions.csv", "equity.csv", "stats.json", "tearsheet.html"):
        assert (out / name).stat().st_size > 0, name
    stats = json.loads((out / "stats.json").read_text())
    for key in ("pnl_realized", "pnl_unrealized", "fees", "return", "sharpe", "sortino", "max_drawdown",
                "max_drawdown_duration_s", "turnover", "fill_ratio", "average_inventory", "time_in_market",
                "quotes_processed", "agent_runs"):
        assert key in stats, key
    assert stats["quotes_processed"] == 2288
    assert set(stats["agent_runs"]) == {"spotter", "volatility", "spread_calculator", "quote_manager", "pnl"}
    with open(out / "fills.csv") as file:
        assert len(list(csv.DictReader(file))) == stats["fills"]


def test_unknown_agent_setting_is_a_config_error_naming_it(tmp_path: Path) -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="spred"):
        parse_config({"agents": [{"agent": "spotter", "instruments": "X", "spred": 1}]})


async def test_trading_hub_runs_a_backtest_and_returns_when_the_data_ends() -> None:
    from agents.quote_manager import QuoteManager
    from agents.spotter import Spotter
    from cache import DataCache
    from core.clock import VirtualClock
    from hub.trading_hub import TradingHub

    cache, clock = DataCache(), VirtualClock()
    hub = TradingHub(cache=cache, source=HistoricalSource(ESU4), clock=clock,
                     gateway_settings={"max_order_notional": 1e6, "order_rate": 20},
                     backtest_settings={"cash": 1e6, "sample_interval": "1s"})
    hub.add_agent(Spotter(config={"instruments": "ESU4", "throttle": "50ms"}, data_cache=cache))
    hub.add_agent(QuoteManager(config={"instruments": "ESU4", "throttle": "100ms", "quote_size": 1,
                                       "min_spread": 0.25, "max_inventory": 5, "max_data_age": "10s"},
                               data_cache=cache, clock=clock))
    await hub.start()
    result = hub.result
    assert result.stats["quotes_processed"] == 2288
    assert result.orders and result.equity[0][1] == 1e6
    assert await cache.get_float("ESU4", "fair_price") is not None  # the cache holds the final state
    assert clock.time_ns() >= result.stats["data_end_ns"]


def test_redis_url_writes_the_final_cache_and_order_state(tmp_path: Path, redis_url: str, sync_redis: Any) -> None:
    from core.keys import Keys

    result = run_one(load_config(str(EXAMPLE)), tmp_path / "mm", tearsheet=False, redis_url=redis_url)
    keys = Keys()
    assert float(sync_redis.hget(keys.cache("ESU4"), "fair_price")) > 5000
    assert sync_redis.xlen(keys.order_events()) == len(result.events)
    first = result.orders[0]["client_order_id"]
    assert sync_redis.hget(keys.order(first), "agent") == "quote_manager"
    assert sync_redis.hget(keys.position("ESU4"), "qty") == result.positions[0]["qty"]


def test_sweep_runs_every_combination_and_ranks_them(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "backtest", str(EXAMPLE), "--out", str(out), "--no-tearsheet",
                           "--sweep", "quote_manager.min_spread=0.25,1.0", "--sweep", "gateway.sim_fill=touch,through"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    with open(out / "sweep.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 4 and all((out / r["run"] / "stats.json").exists() for r in rows)
    pnls = [float(r["pnl_total"]) for r in rows]
    assert pnls == sorted(pnls, reverse=True)
    assert {(r["quote_manager.min_spread"], r["gateway.sim_fill"]) for r in rows} == {
        ("0.25", "touch"), ("0.25", "through"), ("1.0", "touch"), ("1.0", "through")}


def test_progress_bar_is_silent_off_a_terminal() -> None:
    import io

    from backtest import progress

    quiet = io.StringIO()
    bar = progress.ProgressBar(100, quiet)
    bar(50)
    bar.close()
    assert quiet.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    loud = Terminal()
    bar = progress.ProgressBar(100, loud)
    bar._started -= progress.QUIET_FOR_S
    bar(50)
    bar.close()
    assert "50/100 quotes" in loud.getvalue() and "ETA" in loud.getvalue()


async def test_intents_an_on_stop_sends_without_waiting_are_still_handled() -> None:
    class Quoter(TradingAgent):
        async def run(self, data: Event) -> None:
            if not getattr(self, "sent", False):
                self.sent = True
                await self.trading.submit_limit("XYZ", "buy", 1, 9.0)

        async def on_stop(self) -> None:
            await self.trading.cancel_all("XYZ")  # fire and forget

    agent = Quoter(config={"instruments": "XYZ", "throttle": "0s", "name": "quoter"})
    result = await run_backtest(config(intent_latency="5ms"), HistoricalSource(streams=[quotes((0, 10, 1, 11, 1))]),
                                agents=[agent])
    assert [o["event"] for o in result.orders] == ["new", "canceled"]


class Waiter(TradingAgent):
    """On its first run submits a limit order and waits for the gateway's answer: a run() that really suspends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, float]] = []
        self.answered_ns = 0

    async def run(self, data: Event) -> None:
        assert isinstance(data, Quote)
        self.seen.append(((self.data_cache._clock.time_ns() - T0) // MS, data.bid_size))
        if len(self.seen) == 1:
            coid = await self.trading.submit_limit("XYZ", "buy", 1, 5)
            await self.trading.wait_for(coid, statuses={"new", "rejected"})
            self.answered_ns = self.data_cache._clock.time_ns()


async def test_a_run_that_waits_holds_its_worker_and_the_newest_quote_runs_when_it_ends() -> None:
    agent = Waiter(config={"instruments": "XYZ", "throttle": "0s"})
    source = quotes(*[(i, 10, i + 1, 11, 1) for i in range(10)])
    result = await run_backtest(config(intent_latency="5ms"), HistoricalSource(streams=[source]), agents=[agent])
    assert (agent.answered_ns - T0) // MS == 5  # the run resumed when the gateway had the order, in data time
    # while it waited, quotes 1..4 were conflated; then the newest (ts 4ms) ran, then every quote as usual
    assert agent.seen == [(0, 1.0), (5, 5.0), (5, 6.0), (6, 7.0), (7, 8.0), (8, 9.0), (9, 10.0)]
    assert result.stats["agent_conflated"] == {"waiter": 3}


def test_the_engines_quote_constructor_builds_the_same_quote() -> None:
    from backtest.engine import new_quote

    made = new_quote("XYZ", 10.5, 2.0, 10.75, 3.0, T0, T0 + 1)
    assert made == Quote("XYZ", 10.5, 2.0, 10.75, 3.0, T0, T0 + 1)
    assert hash(made) == hash(Quote("XYZ", 10.5, 2.0, 10.75, 3.0, T0, T0 + 1))
    with pytest.raises(AttributeError):
        made.bid = 1.0  # type: ignore[misc]


class Logging(TradingAgent):
    """Appends (ms after T0, its name) of each run to a log shared by the agents of one test."""

    runs: ClassVar[list[tuple[int, str]]] = []

    async def run(self, data: Event) -> None:
        self.runs.append(((self.data_cache._clock.time_ns() - T0) // MS, self.name))


async def test_runs_due_at_one_instant_keep_the_order_their_timers_were_set_in() -> None:
    """A periodic agent (a task) and an event-driven agent's trailing edge (a step the engine calls) both
    due at 100 ms: the periodic tick was scheduled first (at the start), so it runs first, as it would if
    every worker were a task."""
    Logging.runs = []
    edge = Logging(config={"instruments": "XYZ", "throttle": "100ms", "name": "edge"})
    tick = Logging(config={"instruments": "XYZ", "throttle": "100ms", "agent_type": "periodic",
                                   "name": "tick"})
    source = quotes((0, 10, 1, 11, 1), (50, 10, 2, 11, 1), (120, 10, 3, 11, 1))
    await run_backtest(config(), HistoricalSource(streams=[source]), agents=[edge, tick])
    assert [entry for entry in Logging.runs if entry[0] == 100] == [(100, "tick"), (100, "edge")]


async def test_option_positions_are_marked_per_contract_in_equity_and_positions() -> None:
    option = "AAPL240621C00190000"
    source = [(option, T0, 1.4, 10.0, 1.6, 10.0), ("XYZ", T0 + MS, 10.0, 1.0, 11.0, 1.0),
              (option, T0 + 1500 * MS, 1.4, 10.0, 1.6, 10.0)]
    cfg = parse_config({"backtest": {"cash": 100_000, "end_drain": "0s"}, "gateway": {"require_quote": False},
                        "positions": {option: {"qty": 2, "avg_price": 1.0}, "XYZ": {"qty": 10, "avg_price": 10.0}}})
    result = await run_backtest(cfg, HistoricalSource(streams=[source]))
    rows = {r["symbol"]: r for r in result.positions}
    assert float(rows[option]["unrealized_pnl"]) == 2 * (1.5 - 1.0) * 100  # a contract is 100 shares
    assert float(rows["XYZ"]["unrealized_pnl"]) == 10 * (10.5 - 10.0)  # a stock: per share
    assert result.samples[0].equity == 100_000 + 2 * 1.0 * 100 + 10 * 10.0  # the cost, per contract too
    assert result.samples[-1].unrealized == 100 + 5


class Yielder(TradingAgent):
    """A run that yields to the loop many times (more rounds than a fixed settle would give) before writing."""

    async def run(self, data: Event) -> None:
        for _ in range(120):
            await asyncio.sleep(0)
        await self.data_cache.set("XYZ", "seen_ns", data.ts_event_ns if isinstance(data, Quote) else -1)


def test_runs_that_yield_settle_before_time_moves_on_any_loop() -> None:
    """Without CPython's ready queue (uvloop) the engine asks the tasks whether any can still run."""
    import uvloop

    def one(loop_factory: Any) -> tuple[str, list[int]]:
        agent = Yielder(config={"instruments": "XYZ", "throttle": "0s"})
        source = quotes(*((ms, 10, 1, 11, 1) for ms in range(0, 50, 10)))
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(run_backtest(config(), HistoricalSource(streams=[source]), agents=[agent]))
        written = result.state.hashes["tf:cache:XYZ"]
        return result.digest, [int(written["seen_ns"]) - T0, int(written["seen_ns:ts_ns"]) - T0]

    default, on_uvloop = one(None), one(uvloop.new_event_loop)
    assert default[1] == [40 * MS, 40 * MS]  # the last run wrote at its own quote's data time
    assert on_uvloop == default


async def test_cache_notices_reach_agents_decoded_or_raw_and_a_forged_symbol_is_dropped() -> None:
    from agents.events import CacheUpdate
    from backtest.driver import AgentDriver
    from cache.memory import MemoryRedis
    from core.clock import VirtualClock
    from core.codec import encode_cache_change
    from core.keys import Keys

    memory, keys, clock = MemoryRedis(), Keys("tf"), VirtualClock(T0)
    agent = Recording(config={"instruments": "XYZ", "on_cache": "fair_price", "on_quotes": False})
    driver = AgentDriver(agent, memory, keys, clock, trading=None)
    slot, channel = driver.slots["XYZ"], keys.cache_changed_channel("XYZ")
    memory.publish_now(channel, encode_cache_change("ABC", ["fair_price"], T0))  # another symbol's notice
    memory.publish_now(channel, b"\xc1")  # not msgpack
    assert (driver.stats.bad_messages, slot.pending) == (2, False)
    await agent.data_cache.set("XYZ", "volatility", 0.2)  # a field the agent does not run on
    assert not slot.pending
    await agent.data_cache.set("XYZ", "fair_price", 101.5)  # the in-memory write: handed over decoded
    assert slot.take() == CacheUpdate("XYZ", ("fair_price",), T0, T0)
    memory.publish_now(channel, encode_cache_change("XYZ", ["fair_price"], T0 + 1))  # raw bytes still work
    assert slot.take() == CacheUpdate("XYZ", ("fair_price",), T0 + 1, T0)
    assert (driver.stats.received, driver.stats.bad_messages) == (2, 2)
