"""Throttling and schedules: when ``run()`` is called, on what data.

The reader task only ever calls :meth:`Slot.offer` (no awaits), so a slow
``run()`` never stops the socket from being drained. Each instrument has one
slot holding just the latest event; a worker task per instrument (event-driven)
or one schedule task (periodic) takes from the slots and calls ``run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.events import Event, Tick
from core.clock import Clock
from core.codec import Quote, quote_from_valid_row
from core.histogram import Histogram


@dataclass
class AgentStats:
    """Counters that the heartbeat publishes."""

    runs: int = 0
    errors: int = 0
    conflated: int = 0
    received: int = 0
    bad_messages: int = 0
    #: quotes the agent's usable_quotes filter refused (newer than the quote kept, or with none kept)
    unusable: int = 0
    #: times the subscription was lost (e.g. Redis cut off a stalled agent) and re-established in-process
    cutoffs: int = 0
    stale_skipped: int = 0
    skipped_ticks: int = 0
    last_run_ns: int = 0
    last_lag_ns: int = 0
    max_lag_ns: int = 0
    #: run() durations and lags in ms, and quotes received per symbol (heartbeat -> dashboard metrics).
    run_ms: Histogram = field(default_factory=Histogram)
    lag_ms: Histogram = field(default_factory=Histogram)
    received_by_symbol: dict[str, int] = field(default_factory=dict)

    def record_lag(self, lag_ns: int) -> None:
        self.last_lag_ns = lag_ns
        if lag_ns > self.max_lag_ns:
            self.max_lag_ns = lag_ns
        self.lag_ms.observe(lag_ns / 1e6)


class Slot:
    """Latest-wins holder for one instrument's newest event (the newest *usable* quote: the
    reader offers only quotes the agent's filter accepted, so a refused one never replaces it).

    Quotes arrive as validated wire rows and become :class:`Quote` objects only
    when taken: under conflation most are replaced unseen, and building the
    object was a third of the reader's cost per message.
    """

    __slots__ = ("_row", "latest", "pending", "stats", "symbol", "wake")

    def __init__(self, stats: AgentStats, symbol: str) -> None:
        self.symbol = symbol
        self.latest: Event | None = None
        self._row: list[Any] | None = None
        self.pending = False
        self.wake = asyncio.Event()
        self.stats = stats

    def offer(self, event: Event, superseded: int = 0) -> None:
        """Replace the pending event; ``superseded`` counts events folded in before this one."""
        self.latest = event
        self._replace_pending(None, superseded)

    def offer_one(self, event: Event) -> bool:
        """``offer(event)`` in one call (a backtest's hot path); True when the slot was idle (now woken)."""
        self.latest = event
        self._row = None
        if self.pending:
            self.stats.conflated += 1
            return False
        self.pending = True
        self.wake.set()
        return True

    def offer_quote_row(self, row: list[Any], superseded: int = 0) -> None:
        """``offer`` for a row that ``core.codec.decode_latest_row`` returned for this slot's symbol."""
        self._replace_pending(row, superseded)

    def _replace_pending(self, row: list[Any] | None, superseded: int) -> None:
        self._row = row
        if self.pending:  # the wake is set already (pending and the set wake change together)
            self.stats.conflated += superseded + 1
            return
        self.stats.conflated += superseded
        self.pending = True
        self.wake.set()

    def newest_ts_ns(self) -> int:
        """Event time of the newest quote this slot holds or last handed out; -1 before any."""
        if self._row is not None:
            ts_ns: int = self._row[0]
            return ts_ns
        latest = self.latest
        return latest.ts_event_ns if isinstance(latest, Quote) else -1

    def take(self) -> Event | None:
        self.pending = False
        self.wake.clear()
        if self._row is not None:
            self.latest = quote_from_valid_row(self.symbol, self._row)
            self._row = None
        return self.latest


Invoke = Callable[[Event], Awaitable[None]]


class Throttle:
    """The event-driven worker's throttle decision, without a clock or a task.

    Shared by :func:`event_driven_loop` and the backtest's synchronous worker
    (backtest/driver.py), so both run ``run()`` on exactly the same instants:
    a run may start when ``now >= next_allowed_ns``; starting one at ``now``
    forbids the next until ``now + throttle_ns`` (the trailing edge then takes
    the newest event the slot holds).
    """

    __slots__ = ("next_allowed_ns", "throttle_ns")

    def __init__(self, throttle_ns: int) -> None:
        self.throttle_ns = throttle_ns
        self.next_allowed_ns = 0

    def must_wait(self, now_ns: int) -> bool:
        return now_ns < self.next_allowed_ns

    def started(self, now_ns: int) -> None:
        self.next_allowed_ns = now_ns + self.throttle_ns


async def event_driven_loop(slot: Slot, throttle_ns: int, clock: Clock, invoke: Invoke) -> None:
    """Run ``invoke`` at most once per ``throttle_ns`` on the latest event, trailing edge included.

    The first event after a quiet period runs at once; events arriving during a
    run or the wait after it are conflated and the newest runs when the wait ends.
    """
    throttle = Throttle(throttle_ns)
    while True:
        await slot.wake.wait()
        if throttle.must_wait(clock.monotonic_ns()):
            await clock.sleep_until_ns(throttle.next_allowed_ns)
        event = slot.take()
        if event is None:
            continue
        throttle.started(clock.monotonic_ns())
        await invoke(event)


async def periodic_loop(period_ns: int, clock: Clock, slots: dict[str, Slot], stats: AgentStats,
                        invoke: Invoke) -> None:
    """Run on the fixed grid ``start + k * period``; an overrun skips ticks instead of bunching."""
    start_ns = clock.monotonic_ns()
    tick = 1
    while True:
        scheduled_ns = start_ns + tick * period_ns
        await clock.sleep_until_ns(scheduled_ns)
        for event in _periodic_events(slots, clock, scheduled_ns):
            await invoke(event)
        next_tick = (clock.monotonic_ns() - start_ns) // period_ns + 1
        stats.skipped_ticks += max(0, next_tick - tick - 1)
        tick = max(tick + 1, next_tick)


def _periodic_events(slots: dict[str, Slot], clock: Clock, scheduled_ns: int) -> Iterable[Event]:
    if not slots:
        yield Tick(None, scheduled_ns, clock.time_ns())
        return
    for symbol, slot in slots.items():
        event = slot.take()
        yield event if event is not None else Tick(symbol, scheduled_ns, clock.time_ns())
