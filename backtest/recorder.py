"""Samples of the run on a fixed data-time grid: equity, inventory, prices, fair price, own quotes.

A sample at grid time ``g`` shows the state after every event before ``g`` and
none at or after it. Between two events the state does not change, so a quiet
stretch gives identical samples, one per grid step (what the Sharpe ratio's
per-interval returns need).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from backtest.marks import Multipliers, mark_of
from core.orders import ZERO

if TYPE_CHECKING:
    from backtest.engine import Engine


@dataclass(frozen=True, slots=True)
class Sample:
    ts_ns: int
    equity: float
    realized: float
    unrealized: float
    fees: float
    positions: tuple[float, ...]  # per symbol, in Recorder.symbols order
    bids: tuple[float, ...]
    asks: tuple[float, ...]
    fair: tuple[float | None, ...]
    own_bids: tuple[float | None, ...]
    own_asks: tuple[float | None, ...]


class Recorder:
    def __init__(self, engine: Engine, interval_ns: int) -> None:
        self._engine = engine
        self.interval_ns = interval_ns
        self.next_sample_ns = 1 << 62  # nothing before start()
        self.samples: list[Sample] = []
        self.symbols: list[str] = []
        self.start_equity = Decimal(0)
        self.multipliers = Multipliers.of(engine.config.backtest.contract_multiplier)

    def start(self, first_ts_ns: int) -> None:
        engine = self._engine
        self.start_equity = Decimal(repr(engine.config.backtest.cash)) + sum(
            (self.multipliers.cost(p) for p in engine.store.positions.values()), ZERO)
        self.next_sample_ns = first_ts_ns

    def sample_until(self, ts_ns: int, *, final: bool = False) -> None:
        """Samples for every grid time <= ``ts_ns`` not yet taken (and one at ``ts_ns`` when ``final``)."""
        if self.next_sample_ns > ts_ns and not final:
            return
        sample = self._take(self.next_sample_ns)
        while self.next_sample_ns <= ts_ns:
            self.samples.append(sample if sample.ts_ns == self.next_sample_ns else _at(sample, self.next_sample_ns))
            self.next_sample_ns += self.interval_ns
        if final and (not self.samples or self.samples[-1].ts_ns < ts_ns):
            self.samples.append(_at(sample, ts_ns))

    def _take(self, ts_ns: int) -> Sample:
        engine = self._engine
        latest, store = engine.latest, engine.store
        for symbol in sorted(set(latest) | set(store.positions)):
            if symbol not in self.symbols:
                self.symbols.append(symbol)
        realized = unrealized = fees = ZERO
        multipliers = self.multipliers
        for symbol, position in store.positions.items():
            realized += multipliers.realized(position)
            fees += position.fees
            if position.qty:
                open_pnl = multipliers.unrealized(position, mark_of(latest.get(symbol)))
                if open_pnl is not None:
                    unrealized += open_pnl
        cache = engine.memory.hashes
        prefix = engine.keys.cache("")
        bids, asks, fair, own_bids, own_asks, qtys = [], [], [], [], [], []
        for symbol in self.symbols:
            quote = latest.get(symbol)
            bids.append(quote.bid if quote else 0.0)
            asks.append(quote.ask if quote else 0.0)
            text = cache.get(prefix + symbol, {}).get("fair_price")
            fair.append(float(text) if text is not None else None)
            own_bid, own_ask = _own_quotes(engine, symbol)
            own_bids.append(own_bid)
            own_asks.append(own_ask)
            qtys.append(float(store.position(symbol).qty))
        # average-cost accounting: cash + qty * avg == start equity + realized (net of fees)
        equity = self.start_equity + realized + unrealized
        return Sample(ts_ns, float(equity), float(realized), float(unrealized), float(fees), tuple(qtys),
                      tuple(bids), tuple(asks), tuple(fair), tuple(own_bids), tuple(own_asks))


def _own_quotes(engine: Engine, symbol: str) -> tuple[float | None, float | None]:
    bid: float | None = None
    ask: float | None = None
    for order in engine.store.by_symbol.get(symbol, {}).values():
        if order.limit_price is None:
            continue
        price = float(order.limit_price)
        if order.side == "buy":
            bid = price if bid is None else max(bid, price)
        else:
            ask = price if ask is None else min(ask, price)
    return bid, ask


def _at(sample: Sample, ts_ns: int) -> Sample:
    return Sample(ts_ns, sample.equity, sample.realized, sample.unrealized, sample.fees, sample.positions,
                  sample.bids, sample.asks, sample.fair, sample.own_bids, sample.own_asks)
