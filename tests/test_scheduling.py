"""Throttle and periodic semantics, driven by a FakeClock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from agents.events import Event, Tick
from agents.scheduling import AgentStats, Slot, event_driven_loop, periodic_loop
from core.clock import FakeClock, settle
from core.codec import Quote

MS = 1_000_000


def quote(bid: float, symbol: str = "AAPL") -> Quote:
    return Quote(symbol, bid, 100.0, bid + 0.01, 100.0, 0, 0)


class Recorder:
    def __init__(self, clock: FakeClock, run_ms: int = 0) -> None:
        self.clock = clock
        self.run_ms = run_ms
        self.calls: list[tuple[int, Event]] = []

    async def __call__(self, event: Event) -> None:
        self.calls.append((self.clock.monotonic_ns() // MS, event))
        if self.run_ms:
            await self.clock.sleep_until_ns(self.clock.monotonic_ns() + self.run_ms * MS)

    @property
    def bids(self) -> list[float]:
        return [e.bid for _, e in self.calls if isinstance(e, Quote)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stats() -> AgentStats:
    return AgentStats()


async def start(coro: object) -> asyncio.Task[None]:
    task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
    await settle()
    return task


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[None]]]:
    running: list[asyncio.Task[None]] = []
    yield running
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def test_first_event_runs_immediately(clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    slot, rec = Slot(stats, "AAPL"), Recorder(clock)
    tasks.append(await start(event_driven_loop(slot, 500 * MS, clock, rec)))
    slot.offer(quote(1.0))
    await settle()
    assert rec.calls == [(0, quote(1.0))]


async def test_burst_is_conflated_to_latest_and_run_on_trailing_edge(
        clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    slot, rec = Slot(stats, "AAPL"), Recorder(clock)
    tasks.append(await start(event_driven_loop(slot, 500 * MS, clock, rec)))
    slot.offer(quote(1.0))
    await settle()
    for bid in (2.0, 3.0, 4.0):
        await clock.advance(100 * MS)
        slot.offer(quote(bid))
    await clock.advance(199 * MS)  # t=499: still inside the throttle window
    assert rec.bids == [1.0]
    await clock.advance(1 * MS)  # t=500: trailing edge runs the newest
    assert rec.bids == [1.0, 4.0]
    assert rec.calls[-1][0] == 500
    assert stats.conflated == 2


async def test_runs_never_closer_than_throttle(clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    slot, rec = Slot(stats, "AAPL"), Recorder(clock)
    tasks.append(await start(event_driven_loop(slot, 250 * MS, clock, rec)))
    for i in range(100):
        slot.offer(quote(float(i + 1)))
        await clock.advance(10 * MS)
    await clock.advance(500 * MS)
    times = [t for t, _ in rec.calls]
    assert all(b - a >= 250 for a, b in itertools.pairwise(times))
    assert rec.bids[-1] == 100.0  # the last update is never lost
    assert len(times) == 5


async def test_event_during_slow_run_is_run_after_it(clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    slot, rec = Slot(stats, "AAPL"), Recorder(clock, run_ms=800)
    tasks.append(await start(event_driven_loop(slot, 500 * MS, clock, rec)))
    slot.offer(quote(1.0))
    await settle()
    await clock.advance(100 * MS)
    slot.offer(quote(2.0))
    slot.offer(quote(3.0))
    await clock.advance(700 * MS)  # run 1 ends at t=800, past the 500ms throttle
    await settle()
    assert rec.bids == [1.0, 3.0]
    assert rec.calls[-1][0] == 800
    assert stats.conflated == 1


async def test_quiet_instrument_does_not_run(clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    slot, rec = Slot(stats, "AAPL"), Recorder(clock)
    tasks.append(await start(event_driven_loop(slot, 100 * MS, clock, rec)))
    await clock.advance(5_000 * MS)
    assert rec.calls == []


async def test_periodic_runs_on_fixed_grid_without_drift(clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    rec = Recorder(clock, run_ms=30)
    tasks.append(await start(periodic_loop(100 * MS, clock, {}, stats, rec)))
    for _ in range(10):
        await clock.advance(100 * MS)
    assert [t for t, _ in rec.calls] == [100 * k for k in range(1, 11)]
    assert all(isinstance(e, Tick) and e.symbol is None for _, e in rec.calls)


async def test_periodic_overrun_skips_ticks_instead_of_bunching(
        clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    rec = Recorder(clock)
    slow = {"first": True}

    async def invoke(event: Event) -> None:
        await rec(event)
        if slow.pop("first", False):
            await clock.sleep_until_ns(clock.monotonic_ns() + 250 * MS)

    tasks.append(await start(periodic_loop(100 * MS, clock, {}, stats, invoke)))
    for _ in range(6):
        await clock.advance(100 * MS)
    # run at 100 lasts until 350: ticks 200 and 300 are skipped, the grid resumes at 400
    assert [t for t, _ in rec.calls] == [100, 400, 500, 600]
    assert stats.skipped_ticks == 2


async def test_periodic_passes_latest_quote_per_instrument(
        clock: FakeClock, stats: AgentStats, tasks: list) -> None:
    slots = {"AAPL": Slot(stats, "AAPL"), "MSFT": Slot(stats, "MSFT")}
    rec = Recorder(clock)
    tasks.append(await start(periodic_loop(100 * MS, clock, slots, stats, rec)))
    slots["AAPL"].offer(quote(1.0))
    slots["AAPL"].offer(quote(2.0))
    await clock.advance(100 * MS)
    events = [e for _, e in rec.calls]
    assert events[0] == quote(2.0)
    assert isinstance(events[1], Tick) and events[1].symbol == "MSFT"
    assert stats.conflated == 1


def test_quote_rows_conflate_and_become_a_quote_only_when_taken(stats: AgentStats) -> None:
    slot = Slot(stats, "AAPL")
    slot.offer_quote_row([1, 2, 10.0, 100.0, 10.01, 200.0], superseded=4)  # a message of five quotes
    slot.offer_quote_row([3, 4, 10.02, 100.0, 10.03, 200.0])
    assert stats.conflated == 5 and slot.pending
    assert slot.take() == Quote("AAPL", 10.02, 100.0, 10.03, 200.0, 3, 4)
    assert not slot.pending
    slot.offer_quote_row([5, 6, 10.04, 100.0, 10.05, 200.0])
    slot.offer(quote(11.0))  # a later event object replaces the pending row
    assert slot.take() == quote(11.0)
    assert slot.take() == quote(11.0)  # periodic agents see the last event again
