"""The quotes every benchmark feeds: the sim market's, generated up front so generation is not timed."""

from __future__ import annotations

import time

from hub.marketdata.sources.sim import SimMarket

QuoteTuple = tuple[str, int, float, float, float, float]

SYMBOLS = tuple(f"S{i:02d}" for i in range(20))


def symbols(count: int) -> tuple[str, ...]:
    return SYMBOLS[:count]


def make_quotes(count: int, symbol_count: int = 20, seed: int = 1) -> list[QuoteTuple]:
    """(symbol, ts_event_ns, bid, bid_size, ask, ask_size), in sim order."""
    market = SimMarket(symbols(symbol_count), seed, 0.3, 100_000.0)
    now_ns = time.time_ns()
    out: list[QuoteTuple] = []
    for i in range(count):
        symbol, bid, bid_size, ask, ask_size = market.next_quote()
        out.append((symbol, now_ns + i, bid, bid_size, ask, ask_size))
    return out


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50/p99/p99.9 and max in microseconds."""
    if not samples_ns:
        return {"n": 0}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1e3, 1)

    return {"n": n, "p50_us": at(0.5), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": at(1.0)}
