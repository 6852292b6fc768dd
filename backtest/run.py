"""One backtest from a config: engine, then the result object (and nothing written yet)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agents.base import TradingAgent
from backtest import stats
from backtest.config import BacktestConfig
from backtest.engine import Engine, Progress
from backtest.marks import mark_of
from backtest.results import BacktestResult, fill_rows, order_rows
from backtest.sources import Event, HistoricalSource
from core.clock import VirtualClock
from core.errors import ConfigError
from core.orders import fmt


async def run_backtest(config: BacktestConfig, source: Iterable[Event] | None = None, *,
                       agents: Sequence[TradingAgent] | None = None, clock: VirtualClock | None = None,
                       progress: Progress | None = None) -> BacktestResult:
    if source is None and not config.backtest.data:
        raise ConfigError("setting 'data' is empty: list at least one quote file, e.g. data = [\"quotes.csv\"]")
    engine = Engine(config, source if source is not None else HistoricalSource(*config.backtest.data),
                    agents=agents, clock=clock, progress=progress)
    await engine.run()
    return collect(engine)


def collect(engine: Engine) -> BacktestResult:
    events = engine.memory.streams.get(engine.keys.order_events(), [])
    orders, fills = order_rows(events), fill_rows(events)
    recorder = engine.recorder
    counters = engine.counters
    extra = {
        "quotes_processed": counters.quotes,
        "intents_handled": counters.intents,
        "data_start_ns": counters.first_ts_ns,
        "data_end_ns": counters.last_ts_ns,
        "agent_runs": {d.agent.name: d.stats.runs for d in engine.drivers},
        "agent_errors": {d.agent.name: d.stats.errors for d in engine.drivers},
        "agent_conflated": {d.agent.name: d.stats.conflated for d in engine.drivers},
        "risk_rejections": engine.gateway.stats.rejected,
    }
    summary = stats.compute(recorder.samples, fills, orders, float(recorder.start_equity),
                            engine.config.backtest.periods_per_year, recorder.interval_ns, extra)
    digest = engine.digest
    summary["digest"] = digest
    return BacktestResult(orders, fills, _positions(engine), recorder.samples, list(recorder.symbols), summary,
                          digest, events=[dict(f) for _, f in events], state=engine.memory)


def _positions(engine: Engine) -> list[dict[str, str]]:
    rows = []
    multipliers = engine.recorder.multipliers
    for symbol, position in sorted(engine.store.positions.items()):
        mark = mark_of(engine.latest.get(symbol))
        rows.append({"symbol": symbol, "qty": fmt(position.qty), "avg_price": fmt(position.avg_price),
                     "realized_pnl": fmt(multipliers.realized(position)), "fees": fmt(position.fees),
                     "mark": fmt(mark), "unrealized_pnl": fmt(multipliers.unrealized(position, mark))})
    return rows
