"""A synthetic market: random-walk mids with realistic ticks, spreads, sizes and rate.

Each quote picks a symbol, moves its mid by a log-normal step whose size
matches ``sim_volatility`` (annualized, over US-equity seconds per year) at the
per-symbol quote interval, and quotes around it on the tick grid (0.01 at or
above $1, 0.0001 below) with a spread of 1 to 4 ticks, mostly 1, and sizes in
round lots. The same seed gives the same sequence of prices.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

from core.errors import ConfigError
from core.settings import option
from hub.marketdata.publisher import Publisher

SECONDS_PER_YEAR = 252 * 6.5 * 3600
#: The generator wakes at most this often; quotes due meanwhile are emitted together with one
#: receive stamp, so the step is also the sim's added latency (1 ms, like the bench's baseline publishers).
STEP_NS = 1_000_000
MAX_IDLE_NS = 50_000_000
#: After a stall (a paused process, a busy core) at most this much backlog is caught up; the rest is skipped.
MAX_CATCH_UP_NS = 100_000_000
MAX_BURST = 2_000  # most quotes emitted without yielding, so the publisher keeps flushing at any rate
SPREAD_TICKS = (1, 1, 1, 1, 1, 1, 2, 2, 3, 4)
#: Standard-normal quantiles at evenly spaced probabilities: drawing one uniformly is a normal
#: draw (tails cut at ~4 sigma) for a fifth of the cost of random.gauss.
_NORMAL = tuple(NormalDist().inv_cdf((i + 0.5) / 16_384) for i in range(16_384))


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    sim_rate: float = option(200.0, help="simulated quotes per second, over all symbols")
    sim_seed: int = option(0, help="random seed of the simulated market (same seed, same prices)")
    sim_volatility: float = option(0.3, help="annualized volatility of the simulated mids")

    def __post_init__(self) -> None:
        if not 0 < self.sim_rate <= 5_000_000:
            raise ConfigError("setting 'sim_rate' must be in (0, 5000000] quotes/s")
        if not 0 <= self.sim_volatility < 10:
            raise ConfigError("setting 'sim_volatility' must be in [0, 10), e.g. 0.3 for 30%")


def tick_size(price: float) -> float:
    return 0.01 if price >= 1.0 else 0.0001


def start_price(symbol: str) -> float:
    """A stable, symbol-specific price between $20 and $520."""
    return 20.0 + zlib.crc32(symbol.encode()) % 50_000 / 100.0


class SimMarket:
    """The price process, separate from pacing so it can be tested on its own."""

    def __init__(self, symbols: tuple[str, ...], seed: int, volatility: float, rate: float) -> None:
        self._rng = random.Random(seed)
        self.symbols = list(symbols)
        self._mids = {s: start_price(s) for s in symbols}
        self._volatility = volatility
        self._rate = rate
        self._sigma = 0.0
        self._rescale()

    def add(self, symbols: tuple[str, ...]) -> None:
        for symbol in symbols:
            if symbol not in self._mids:
                self.symbols.append(symbol)
                self._mids[symbol] = start_price(symbol)
        self._rescale()

    def remove(self, symbols: tuple[str, ...]) -> None:
        gone = set(symbols)
        self.symbols = [s for s in self.symbols if s not in gone]
        for symbol in gone:
            self._mids.pop(symbol, None)
        self._rescale()

    def _rescale(self) -> None:
        per_symbol_interval_s = max(len(self.symbols), 1) / self._rate
        self._sigma = self._volatility * math.sqrt(per_symbol_interval_s / SECONDS_PER_YEAR)

    def next_quote(self) -> tuple[str, float, float, float, float]:
        """(symbol, bid, bid_size, ask, ask_size) of the next quote."""
        return self.take(1)[0]

    def take(self, count: int) -> list[tuple[str, float, float, float, float]]:
        """The next ``count`` quotes. One tight loop with everything bound locally: at high
        sim rates this generator, not the publisher, was the hub's bottleneck."""
        rand = self._rng.random
        symbols, mids, sigma, normal = self.symbols, self._mids, self._sigma, _NORMAL
        n_symbols, n_normal = len(symbols), len(_NORMAL)
        exp, floor = math.exp, math.floor
        out = []
        for _ in range(count):
            symbol = symbols[int(rand() * n_symbols)]
            mid = mids[symbol] * exp(sigma * normal[int(rand() * n_normal)])
            mids[symbol] = mid
            ticks_per_dollar = 100.0 if mid >= 1.0 else 10_000.0  # 1/tick_size(mid), exact
            spread_ticks = SPREAD_TICKS[int(rand() * 10)]
            bid_ticks = floor(mid * ticks_per_dollar - spread_ticks / 2.0 + 0.5)
            # integer ticks / ticks-per-dollar is the double nearest the decimal price, like round()
            out.append((symbol, bid_ticks / ticks_per_dollar, float(int(rand() * 20) * 100 + 100),
                        (bid_ticks + spread_ticks) / ticks_per_dollar, float(int(rand() * 20) * 100 + 100)))
        return out


class SimSource:
    """Emits ``sim_rate`` quotes per second, paced against the monotonic clock."""

    def __init__(self, symbols: tuple[str, ...], settings: SimSettings) -> None:
        self.market = SimMarket(symbols, settings.sim_seed, settings.sim_volatility, settings.sim_rate)
        self._rate = settings.sim_rate
        self.emitted = 0
        #: quotes never generated because the rate asked for more than this process can make
        self.shortfall = 0

    async def add_symbols(self, symbols: tuple[str, ...]) -> None:
        self.market.add(symbols)

    async def remove_symbols(self, symbols: tuple[str, ...]) -> None:
        self.market.remove(symbols)

    def status(self) -> Mapping[str, str | int | float]:
        return {"connection": "simulated", "emitted": self.emitted, "shortfall": self.shortfall}

    async def run(self, publisher: Publisher, stop: asyncio.Event) -> None:
        started_ns = time.monotonic_ns()
        ns_per_quote = 1e9 / self._rate
        while not stop.is_set():
            due = 0
            if self.market.symbols:
                due = int((time.monotonic_ns() - started_ns) / ns_per_quote) - self.emitted
                if due > self._rate:  # over a second behind: beyond capacity, give the backlog up
                    self.emitted += due - MAX_BURST
                    self.shortfall += due - MAX_BURST
                    due = MAX_BURST
                self._emit(publisher, min(due, MAX_BURST))
            if due > MAX_BURST:  # still behind: yield (the publisher must run) but do not sleep
                await asyncio.sleep(0)
                continue
            # at low rates sleep until the next quote is due instead of waking every step for nothing
            # (capped, so a stop or a new symbol is seen promptly)
            next_due_ns = started_ns + (self.emitted + 1) * ns_per_quote
            await asyncio.sleep(min(max(STEP_NS, next_due_ns - time.monotonic_ns()), MAX_IDLE_NS) / 1e9)

    def _emit(self, publisher: Publisher, count: int) -> None:
        now_ns = time.time_ns()
        add = publisher.add_quote
        for symbol, bid, bid_size, ask, ask_size in self.market.take(count):
            add(symbol, now_ns, bid, bid_size, ask, ask_size, now_ns)
        self.emitted += max(count, 0)
