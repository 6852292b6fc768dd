"""Clocks. Every timer in the framework goes through one, so tests can inject time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def time_ns(self) -> int:
        """Wall-clock time, ns since the Unix epoch (for timestamps)."""

    def monotonic_ns(self) -> int:
        """Monotonic time in ns (for durations and schedules)."""

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        """Sleep until ``monotonic_ns() >= deadline_ns``."""


class SystemClock:
    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        delay_ns = deadline_ns - time.monotonic_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / 1e9)
        else:
            await asyncio.sleep(0)


class FakeClock:
    """A clock that moves only when told to; sleepers wake as ``advance`` passes them."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._wall_offset_ns = start_ns
        self._now_ns = 0
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time_ns(self) -> int:
        return self._wall_offset_ns + self._now_ns

    def monotonic_ns(self) -> int:
        return self._now_ns

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now_ns:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._order), future))
        await future

    async def advance(self, duration_ns: int) -> None:
        """Move time forward, waking each sleeper at its deadline in order."""
        target_ns = self._now_ns + duration_ns
        while self._sleepers and self._sleepers[0][0] <= target_ns:
            deadline_ns, _, future = heapq.heappop(self._sleepers)
            self._now_ns = max(self._now_ns, deadline_ns)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now_ns = target_ns
        await settle()

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run until they block again (for FakeClock-driven tests)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class _Sleeper(Protocol):
    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...


class VirtualTimer:
    """A callback in a :class:`VirtualClock`'s sleeper heap: woken in the same (deadline, order) as a sleeper."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        self._done = True

    def set_result(self, result: None, /) -> None:
        self._done = True
        self._callback()


class VirtualClock:
    """Time taken from the data (a backtest): it moves only when its driver moves it.

    Wall and monotonic time are the same number, the current event's ns since
    the epoch, so an agent's ``throttle`` and a periodic grid are measured in
    data time. Sleepers park in a heap; the driver asks for the next deadline
    (:meth:`next_deadline_ns`) and wakes those due (:meth:`wake_due`).
    """

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = start_ns
        self._sleepers: list[tuple[int, int, _Sleeper]] = []
        self._order = itertools.count()

    def time_ns(self) -> int:
        return self.now_ns

    def monotonic_ns(self) -> int:
        return self.now_ns

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        if deadline_ns <= self.now_ns:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._order), future))
        await future

    def call_at_ns(self, deadline_ns: int, callback: Callable[[], None]) -> VirtualTimer:
        """Call ``callback`` (no task, no loop) when :meth:`wake_due` reaches ``deadline_ns``, in the
        same order as a sleeper with that deadline registered now would wake."""
        timer = VirtualTimer(callback)
        heapq.heappush(self._sleepers, (deadline_ns, next(self._order), timer))
        return timer

    def advance_to(self, now_ns: int) -> None:
        """Move time forward (never back); sleepers are woken only by :meth:`wake_due`."""
        if now_ns > self.now_ns:
            self.now_ns = now_ns

    def next_deadline_ns(self) -> int | None:
        """The earliest deadline of a sleeper still waiting (cancelled ones are dropped)."""
        sleepers = self._sleepers
        while sleepers and sleepers[0][2].done():
            heapq.heappop(sleepers)
        return sleepers[0][0] if sleepers else None

    def wake_due(self) -> int:
        """Wake every sleeper whose deadline is now or earlier, oldest deadline first; returns how many."""
        sleepers, woken = self._sleepers, 0
        while sleepers and sleepers[0][0] <= self.now_ns:
            _, _, future = heapq.heappop(sleepers)
            if not future.done():
                future.set_result(None)
                woken += 1
        return woken
