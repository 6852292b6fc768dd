"""The backtest bench's generated day: a deterministic random walk of top-of-book quotes (stdlib only,
so the NautilusTrader virtualenv generates the very same rows)."""

from __future__ import annotations

import random
from collections.abc import Iterator

START_NS = 1_719_840_600_000_000_000  # 2024-07-01 13:30 UTC, the US open
Row = tuple[str, int, float, float, float, float]  # symbol, ts_ns, bid, bid_size, ask, ask_size


def symbols(count: int) -> list[str]:
    return [f"SYM{i:02d}" for i in range(count)]


def rows(quotes: int, symbol_count: int = 20, span_s: float = 600.0, seed: int = 7) -> Iterator[Row]:
    """``quotes`` quotes spread evenly over ``span_s`` of data time, symbols in turn, prices in cents."""
    rnd = random.Random(seed)
    names = symbols(symbol_count)
    mids_cents = [10_000 + 500 * i for i in range(symbol_count)]  # $100.00, $105.00, ...
    step_ns = int(span_s * 1e9 / quotes)
    choice, randint = rnd.choice, rnd.randint
    for i in range(quotes):
        k = i % symbol_count
        mids_cents[k] += choice((-1, 0, 0, 1))
        half = choice((1, 1, 2))
        yield (names[k], START_NS + i * step_ns, (mids_cents[k] - half) / 100, float(randint(1, 20) * 100),
               (mids_cents[k] + half) / 100, float(randint(1, 20) * 100))
