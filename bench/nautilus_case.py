"""Run inside .venv-nautilus (make bench-nautilus): NautilusTrader's BacktestEngine on the bench's day.

A strategy does what Spotter does per quote: the micro-price into a dict. Prints one JSON line:
quotes, seconds of ``engine.run()`` (the data is built into QuoteTicks first, as its API requires)
and seconds including that build. Imports nothing from this project except the data generator.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backtest_data import rows, symbols
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy


class MicroPrice(Strategy):
    def __init__(self, instrument_ids: list) -> None:
        super().__init__()
        self.instrument_ids = instrument_ids
        self.fair: dict = {}
        self.count = 0

    def on_start(self) -> None:
        for instrument_id in self.instrument_ids:
            self.subscribe_quote_ticks(instrument_id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        bid, ask = tick.bid_price.as_double(), tick.ask_price.as_double()
        bid_size, ask_size = tick.bid_size.as_double(), tick.ask_size.as_double()
        self.fair[tick.instrument_id] = (bid * ask_size + ask * bid_size) / (bid_size + ask_size)
        self.count += 1


def main() -> None:
    quotes, symbol_count, span_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    started = time.perf_counter()
    engine = BacktestEngine(config=BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    venue = Venue("XNAS")
    engine.add_venue(venue=venue, oms_type=OmsType.NETTING, account_type=AccountType.CASH, base_currency=USD,
                     starting_balances=[Money(1_000_000, USD)])
    instruments = {name: TestInstrumentProvider.equity(symbol=name, venue="XNAS") for name in symbols(symbol_count)}
    for instrument in instruments.values():
        engine.add_instrument(instrument)
    ids = {name: i.id for name, i in instruments.items()}
    ticks = [QuoteTick(ids[s], Price(b, 2), Price(a, 2), Quantity(bs, 0), Quantity(az, 0), ts, ts)
             for s, ts, b, bs, a, az in rows(quotes, symbol_count, span_s)]
    engine.add_data(ticks)
    strategy = MicroPrice(list(ids.values()))
    engine.add_strategy(strategy)
    built = time.perf_counter()
    engine.run()
    done = time.perf_counter()
    print(json.dumps({"quotes": strategy.count, "run_s": done - built, "total_s": done - started,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    engine.dispose()


if __name__ == "__main__":
    main()
