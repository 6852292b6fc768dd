"""The backtest's event loop: CPython's selector loop without a poll per iteration.

A backtest does no I/O: its tasks wait only on futures the engine resolves. The
standard loop still calls ``epoll`` (with a zero timeout) on every iteration,
which was half of the cost of a quote that wakes an agent. This loop runs the
ready callbacks in the same FIFO order as the standard one (so results are the
same with either), and falls back to the standard iteration whenever a real
timer or file descriptor is involved (an agent calling ``asyncio.sleep`` or
``asyncio.wait_for``: those still work, in wall-clock time).

It relies on two CPython internals, ``_ready`` (a deque of handles) and
``_scheduled`` (the timer heap); :func:`run` uses the standard loop where they
are missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BacktestLoop(asyncio.SelectorEventLoop):
    def _run_once(self) -> None:
        ready = self._ready  # type: ignore[attr-defined]
        if not ready or self._scheduled:  # type: ignore[attr-defined]
            super()._run_once()  # type: ignore[misc]
            return
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on :class:`BacktestLoop` (or the standard loop if this Python lacks its internals)."""
    probe = asyncio.SelectorEventLoop()
    usable = hasattr(probe, "_ready") and hasattr(probe, "_scheduled") and hasattr(asyncio.BaseEventLoop, "_run_once")
    probe.close()
    with asyncio.Runner(loop_factory=BacktestLoop if usable else None) as runner:
        return runner.run(coro)
