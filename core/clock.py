"""Clocks. Every timer in the framework goes through one, so tests can inject time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
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
