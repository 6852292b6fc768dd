"""What a run leaves: orders, fills, positions, equity curve, price samples and statistics.

Files (``--out DIR``), all written in a fixed order with fixed formatting, so the
same config and data give byte-identical files:

- ``orders.csv``: every order event the gateway's store wrote (new, replaced,
  canceled, rejected, fill, partial_fill), in order;
- ``fills.csv``: the fills, with fee and the position after each;
- ``positions.csv``: the final positions with their mark and PnL;
- ``equity.csv``: the equity curve and inventory on the sample grid;
- ``prices.csv``: bid, ask, fair price and the strategy's own quotes on the grid;
- ``stats.json``: the statistics (backtest/stats.py), including the event-log digest.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backtest.recorder import Sample

ORDER_COLUMNS = ["ts_ns", "event", "client_order_id", "agent", "symbol", "side", "order_type", "qty",
                 "limit_price", "time_in_force", "status", "filled_qty", "filled_avg_price", "fees", "replaces",
                 "reason"]
FILL_COLUMNS = ["ts_ns", "client_order_id", "agent", "symbol", "side", "fill_qty", "fill_price", "fee",
                "position_qty"]


@dataclass
class BacktestResult:
    orders: list[dict[str, str]]
    fills: list[dict[str, str]]
    positions: list[dict[str, str]]
    samples: list[Sample]
    symbols: list[str]
    stats: dict[str, Any]
    digest: str
    #: Every order event as the store wrote it on ``tf:orders:events`` (what a live gateway writes there).
    events: list[dict[str, str]] = field(default_factory=list, repr=False, compare=False)
    #: The final in-memory state (cache, orders, positions, events): what ``--redis-url`` writes out.
    state: Any = field(default=None, repr=False, compare=False)

    @property
    def equity(self) -> list[tuple[int, float]]:
        """(ts_ns, equity) on the sample grid."""
        return [(s.ts_ns, s.equity) for s in self.samples]

    def write(self, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "orders.csv": _csv(ORDER_COLUMNS, self.orders),
            "fills.csv": _csv(FILL_COLUMNS, self.fills),
            "positions.csv": _csv(["symbol", "qty", "avg_price", "realized_pnl", "fees", "mark", "unrealized_pnl"],
                                  self.positions),
            "equity.csv": _csv(["ts_ns", "equity", "pnl_realized", "pnl_unrealized", "fees",
                                *(f"position:{s}" for s in self.symbols)], [_equity_row(s, self.symbols)
                                                                             for s in self.samples]),
            "prices.csv": _csv(["ts_ns", "symbol", "bid", "ask", "fair_price", "own_bid", "own_ask"],
                               [row for s in self.samples for row in _price_rows(s, self.symbols)]),
            "stats.json": json.dumps(self.stats, indent=1, sort_keys=True) + "\n",
        }
        written = []
        for name, text in files.items():
            path = out / name
            path.write_text(text)
            written.append(path)
        return written


def order_rows(events: Sequence[tuple[str, Mapping[str, str]]]) -> list[dict[str, str]]:
    rows = []
    for _, fields in events:
        row = {c: fields.get(c, "") for c in ORDER_COLUMNS}
        row["ts_ns"] = fields.get("updated_ns", "")
        row["reason"] = fields.get("reason", "")
        rows.append(row)
    return rows


def fill_rows(events: Sequence[tuple[str, Mapping[str, str]]]) -> list[dict[str, str]]:
    return [{**{c: fields.get(c, "") for c in FILL_COLUMNS}, "ts_ns": fields.get("updated_ns", "")}
            for _, fields in events if fields.get("event") in ("fill", "partial_fill")]


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


def _equity_row(sample: Sample, symbols: Sequence[str]) -> dict[str, str]:
    row = {"ts_ns": str(sample.ts_ns), "equity": _num(sample.equity), "pnl_realized": _num(sample.realized),
           "pnl_unrealized": _num(sample.unrealized), "fees": _num(sample.fees)}
    for i, symbol in enumerate(symbols):
        row[f"position:{symbol}"] = _num(sample.positions[i]) if i < len(sample.positions) else "0.0"
    return row


def _price_rows(sample: Sample, symbols: Sequence[str]) -> list[dict[str, str]]:
    return [{"ts_ns": str(sample.ts_ns), "symbol": symbol, "bid": _num(sample.bids[i]), "ask": _num(sample.asks[i]),
             "fair_price": _num(sample.fair[i]), "own_bid": _num(sample.own_bids[i]),
             "own_ask": _num(sample.own_asks[i])}
            for i, symbol in enumerate(symbols) if i < len(sample.bids)]


def _csv(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
