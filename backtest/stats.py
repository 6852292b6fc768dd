"""Statistics of a run, from its samples and fills (definitions in docs/backtest.md)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from backtest.recorder import Sample


def _round(value: float, places: int = 8) -> float:
    return 0.0 if not math.isfinite(value) else round(value, places)


def ratios(equity: Sequence[float], periods_per_year: float) -> tuple[float, float]:
    """Annualized Sharpe and Sortino of the per-sample simple returns (risk-free rate 0)."""
    returns = [b / a - 1.0 for a, b in itertools.pairwise(equity) if a]
    if len(returns) < 2:
        return 0.0, 0.0
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    scale = math.sqrt(periods_per_year)
    return (mean / std * scale if std else 0.0), (mean / downside * scale if downside else 0.0)


def drawdown(samples: Sequence[Sample]) -> tuple[float, float, float]:
    """(max drawdown in dollars, as a fraction of the peak, longest time under a peak in seconds)."""
    peak, peak_ts, worst, worst_frac, longest_ns = -math.inf, 0, 0.0, 0.0, 0
    for s in samples:
        if s.equity >= peak:
            peak, peak_ts = s.equity, s.ts_ns
        else:
            longest_ns = max(longest_ns, s.ts_ns - peak_ts)
        worst = max(worst, peak - s.equity)
        if peak > 0:
            worst_frac = max(worst_frac, (peak - s.equity) / peak)
    return worst, worst_frac, longest_ns / 1e9


def compute(samples: Sequence[Sample], fills: Sequence[Mapping[str, str]], orders: Sequence[Mapping[str, str]],
            start_equity: float, periods_per_year: float, interval_ns: int, extra: Mapping[str, Any]
            ) -> dict[str, Any]:
    last = samples[-1]
    equity = [s.equity for s in samples]
    sharpe, sortino = ratios(equity, periods_per_year / (interval_ns / 1e9))
    dd, dd_frac, dd_s = drawdown(samples)
    notional = sum(float(f["fill_qty"]) * float(f["fill_price"]) for f in fills)
    accepted = {o["client_order_id"] for o in orders if o["event"] == "new"}
    filled = {f["client_order_id"] for f in fills}
    inventory = [sum(abs(q) for q in s.positions) for s in samples]
    return {
        "pnl_total": _round(last.equity - start_equity, 6),
        "pnl_realized": _round(last.realized, 6),
        "pnl_unrealized": _round(last.unrealized, 6),
        "fees": _round(last.fees, 6),
        "start_equity": _round(start_equity, 6),
        "end_equity": _round(last.equity, 6),
        "return": _round(last.equity / start_equity - 1.0, 10),
        "sharpe": _round(sharpe, 6),
        "sortino": _round(sortino, 6),
        "ratio_sampling": f"simple returns of the equity curve every {interval_ns / 1e9:g}s of data time, "
                          f"annualized with {periods_per_year:g} trading seconds per year, risk-free rate 0",
        "max_drawdown": _round(dd, 6),
        "max_drawdown_fraction": _round(dd_frac, 10),
        "max_drawdown_duration_s": _round(dd_s, 3),
        "turnover": _round(notional / start_equity, 8),
        "traded_notional": _round(notional, 6),
        "orders_accepted": len(accepted),
        "orders_rejected": sum(1 for o in orders if o["event"] == "rejected"),
        "fills": len(fills),
        "fill_ratio": _round(len(filled & accepted) / len(accepted), 8) if accepted else 0.0,
        "average_inventory": _round(sum(inventory) / len(inventory), 6),
        "time_in_market": _round(sum(1 for q in inventory if q) / len(inventory), 8),
        **extra,
    }
