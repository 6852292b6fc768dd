"""Running a process's long-lived tasks together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


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
