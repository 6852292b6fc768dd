"""Running a process's long-lived tasks together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def stopped_within(stop: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``stop``; True if it is set: a loop's pause that a stop cuts short."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout_s)
    return stop.is_set()


async def finished_before_stop(stop: asyncio.Event, coro: Coroutine[Any, Any, Any]) -> bool:
    """True once ``coro`` has finished (its error is raised); False if ``stop`` is set first, and
    ``coro`` is cancelled: a process told to stop while it waits (for Redis, a failover) exits then."""
    work, stopping = asyncio.ensure_future(coro), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            return False
        work.result()
        return True
    finally:
        stopping.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)


async def run_until_stopped(stop: asyncio.Event, *coros: Coroutine[Any, Any, Any], grace_s: float) -> None:
    """Run ``coros`` until all have finished after ``stop`` is set.

    The first failure sets ``stop`` and is raised; tasks still running then get
    ``grace_s`` to finish on their own (flush, cancel orders) before they are cancelled.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        for finished in asyncio.as_completed(tasks):
            await finished
    finally:
        stop.set()
        for task in tasks:
            if not task.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), grace_s)
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
