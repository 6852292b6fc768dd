"""What the dashboard knows: filled by the reader, read by the page and the metrics.

Everything lives in one process and one event loop, so there are no locks: the
reader replaces whole values and bumps ``version``; readers see either the old
or the new value.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Fields = dict[str, str]
#: One chart point: wall-clock ms first, then values (None = no value; uPlot leaves a gap).
Sample = tuple[float | None, ...]

#: Columns of a symbol's samples (``Series.columns``); fills are marked at the poll they arrived in.
PRICE_COLUMNS = ("t_ms", "bid", "ask", "fair_price", "own_bid", "own_ask", "fill_buy", "fill_sell",
                 "volatility", "spread")
PNL_COLUMNS = ("t_ms", "realized", "unrealized", "total")
#: A process whose heartbeat has been gone this long is no longer listed (nor alerted on as down).
FORGET_GONE_NS = 600_000_000_000


class Series:
    """A bounded run of samples with a sequence number, so each client asks only for what it has not seen."""

    def __init__(self, columns: tuple[str, ...], maxlen: int) -> None:
        self.columns = columns
        self.samples: deque[Sample] = deque(maxlen=maxlen)
        self.seq = 0  # samples ever appended

    def append(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.seq += 1

    def since(self, seq: int) -> tuple[list[Sample], bool]:
        """Samples after ``seq`` and whether the client must start over (it fell behind the buffer)."""
        missing = self.seq - seq
        if seq <= 0 or missing > len(self.samples) or missing < 0:
            return list(self.samples), True
        return list(self.samples)[len(self.samples) - missing:], False


@dataclass
class Process:
    """One heartbeat (hub, gateway or agent) as last read, with what the dashboard derives from it."""

    kind: str
    name: str
    fields: Fields
    seen_ns: int
    gone: bool = False
    restarts: int = 0  # a new ``instance`` under the same name, seen by this dashboard
    rate_per_s: float = 0.0
    _last: tuple[int, int] = (0, 0)  # (seen_ns, runs) for the run rate

    def update(self, fields: Fields, now_ns: int) -> None:
        if fields.get("instance") != self.fields.get("instance"):
            self.restarts += 1
            self._last = (0, 0)
        runs = _int(fields.get("runs", fields.get("submitted")))  # agents run, the gateway submits
        then_ns, then_runs = self._last
        if then_ns and now_ns > then_ns:
            self.rate_per_s = round((runs - then_runs) / ((now_ns - then_ns) / 1e9), 1)
        self._last = (now_ns, runs)
        self.fields, self.seen_ns, self.gone = fields, now_ns, False


@dataclass
class State:
    history_samples: int
    max_fills: int = 200
    redis_up: bool = False
    redis_error: str = "not connected yet"
    redis_down_since_ns: int = 0
    redis_reconnects: int = 0
    processes: dict[tuple[str, str], Process] = field(default_factory=dict)
    quotes: dict[str, Fields] = field(default_factory=dict)
    cache: dict[str, Fields] = field(default_factory=dict)
    portfolio: Fields = field(default_factory=dict)
    positions: dict[str, Fields] = field(default_factory=dict)
    open_orders: list[Fields] = field(default_factory=list)
    fills: deque[Fields] = field(default_factory=deque)
    halt: str | None = None
    reduce_only: str | None = None
    symbols: list[str] = field(default_factory=list)
    requested: dict[str, int] = field(default_factory=dict)  # symbols pages asked for -> last ask (ns)
    series: dict[str, Series] = field(default_factory=dict)
    pnl: Series = field(init=False)
    order_events: Counter[str] = field(default_factory=Counter)  # execution events read, by event
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.fills = deque(maxlen=self.max_fills)
        self.pnl = Series(PNL_COLUMNS, self.history_samples)

    # the reader's side -----------------------------------------------------------

    def series_for(self, symbol: str) -> Series:
        series = self.series.get(symbol)
        if series is None:
            series = self.series[symbol] = Series(PRICE_COLUMNS, self.history_samples)
        return series

    def set_processes(self, kind: str, found: dict[str, Fields], now_ns: int) -> None:
        """Replace one kind's heartbeats; a process seen before and now missing is kept, marked gone."""
        for name, fields in found.items():
            process = self.processes.get((kind, name))
            if process is None:
                self.processes[(kind, name)] = Process(kind, name, fields, now_ns)
            else:
                process.update(fields, now_ns)
        for (k, name), process in list(self.processes.items()):
            if k == kind and name not in found:
                process.gone = True
                if now_ns - process.seen_ns > FORGET_GONE_NS:  # stopped on purpose, or renamed
                    del self.processes[(k, name)]

    def mark_down(self, error: str, now_ns: int) -> None:
        if self.redis_up or not self.redis_down_since_ns:
            self.redis_down_since_ns = now_ns
        self.redis_up, self.redis_error = False, error
        self.bump()

    def mark_up(self) -> None:
        if not self.redis_up and self.redis_down_since_ns and self.redis_error != "not connected yet":
            self.redis_reconnects += 1
        self.redis_up, self.redis_error, self.redis_down_since_ns = True, "", 0

    def bump(self) -> None:
        """A new version: wake every page waiting for one."""
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, version: int, timeout_s: float) -> bool:
        """Wait until ``version`` is no longer current; False on timeout."""
        if self.version != version:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def want(self, symbol: str, now_ns: int) -> None:
        self.requested[symbol] = now_ns

    def processes_of(self, kinds: Iterable[str]) -> list[Process]:
        wanted = set(kinds)
        return [p for p in self.processes.values() if p.kind in wanted]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
