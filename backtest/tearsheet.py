"""``tearsheet.html``: one self-contained page (plotly.js embedded, opens offline).

Per symbol (the first four): bid and ask, fair price (the ``fair_price`` cache field),
the strategy's own working bid and ask, and its fills (triangles up for buys, down
for sells); then inventory, equity and drawdown on the sample grid, and a table of
the statistics. The figure's div has the id ``tearsheet``; trace names are stable,
so a test can count the points of each.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backtest.results import BacktestResult

MAX_SYMBOLS = 4
DIV_ID = "tearsheet"


def _times(ns: Sequence[int]) -> list[str]:
    return [dt.datetime.fromtimestamp(t / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for t in ns]


def figure(result: BacktestResult) -> go.Figure:
    symbols = result.symbols[:MAX_SYMBOLS]
    rows = len(symbols) + 3
    titles = [f"{s}: bid/ask, fair price, own quotes and fills" for s in symbols] + \
        ["inventory", "equity", "drawdown"]
    heights = [0.4 / max(len(symbols), 1)] * len(symbols) + [0.2, 0.2, 0.2]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles, row_heights=heights,
                        vertical_spacing=0.05)
    x = _times([s.ts_ns for s in result.samples])
    for row, symbol in enumerate(symbols, start=1):
        _price_traces(fig, result, symbol, x, row)
    for i, symbol in enumerate(result.symbols):
        fig.add_trace(go.Scatter(x=x, y=[_at(s.positions, i) or 0.0 for s in result.samples],
                                 name=f"inventory {symbol}", line={"shape": "hv"}), row=len(symbols) + 1, col=1)
    equity = [s.equity for s in result.samples]
    fig.add_trace(go.Scatter(x=x, y=equity, name="equity"), row=len(symbols) + 2, col=1)
    fig.add_trace(go.Scatter(x=x, y=_drawdown(equity), name="drawdown", fill="tozeroy"), row=len(symbols) + 3,
                  col=1)
    fig.update_layout(height=320 * rows, template="plotly_white", hovermode="x unified",
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
                      margin={"l": 60, "r": 20, "t": 80, "b": 40})
    return fig


def _price_traces(fig: go.Figure, result: BacktestResult, symbol: str, x: list[str], row: int) -> None:
    i = result.symbols.index(symbol)
    samples = result.samples
    series = {
        "bid": ([_at(s.bids, i) or None for s in samples], {"color": "#1f77b4", "shape": "hv"}),
        "ask": ([_at(s.asks, i) or None for s in samples], {"color": "#d62728", "shape": "hv"}),
        "fair price": ([_at(s.fair, i) for s in samples], {"color": "#2ca02c"}),
        "own bid": ([_at(s.own_bids, i) for s in samples], {"color": "#1f77b4", "dash": "dot", "shape": "hv"}),
        "own ask": ([_at(s.own_asks, i) for s in samples], {"color": "#d62728", "dash": "dot", "shape": "hv"}),
    }
    for name, (values, line) in series.items():
        fig.add_trace(go.Scatter(x=x, y=values, name=f"{name} {symbol}", line=line, connectgaps=False),
                      row=row, col=1)
    for side, marker in (("buy", "triangle-up"), ("sell", "triangle-down")):
        fills = [f for f in result.fills if f["symbol"] == symbol and f["side"] == side]
        fig.add_trace(go.Scatter(x=_times([int(f["ts_ns"]) for f in fills]), y=[float(f["fill_price"]) for f in fills],
                                 mode="markers", name=f"{side} fills {symbol}",
                                 marker={"symbol": marker, "size": 11, "color": "#2ca02c" if side == "buy" else
                                         "#9467bd", "line": {"width": 1, "color": "black"}},
                                 text=[f"{f['fill_qty']} @ {f['fill_price']} ({f['client_order_id']})" for f in fills]),
                      row=row, col=1)


def _at(values: Sequence[float | None], i: int) -> float | None:
    """A sample taken before the symbol's first quote has no value for it."""
    return values[i] if i < len(values) else None


def _drawdown(equity: Sequence[float]) -> list[float]:
    peak, out = float("-inf"), []
    for value in equity:
        peak = max(peak, value)
        out.append(value - peak)
    return out


def _stats_table(stats: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_cell(v))}</td></tr>"
                   for k, v in sorted(stats.items()))
    return f'<table id="stats">{rows}</table>'


def _cell(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;font-size:13px;margin-top:16px}th,td{border:1px solid #ddd;padding:4px 10px;
text-align:left}th{background:#f6f6f6;font-weight:600}"""


def write_tearsheet(result: BacktestResult, path: Path, *, title: str = "backtest") -> Path:
    body = figure(result).to_html(full_html=False, include_plotlyjs=True, div_id=DIV_ID,
                                  config={"displaylogo": False})
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)} tearsheet</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>digest sha256:{result.digest}</p>{body}<h2>Statistics</h2>{_stats_table(result.stats)}"
            "</body></html>\n")
    path.write_text(page)
    return path
