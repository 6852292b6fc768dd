"""Backtests: the same agents, risk checks and sim broker as live, on historical quotes in data time.

``python -m backtest CONFIG --out DIR`` (see backtest/cli.py and docs/backtest.md), or in Python::

    from backtest import load_config, run_backtest
    result = asyncio.run(run_backtest(load_config("examples/backtest_market_maker.toml")))
"""

from backtest.config import BacktestConfig, load_config, parse_config
from backtest.results import BacktestResult
from backtest.run import run_backtest
from backtest.sources import HistoricalSource

__all__ = ["BacktestConfig", "BacktestResult", "HistoricalSource", "load_config", "parse_config", "run_backtest"]
