"""Runs one agent in a backtest with the live runtime's scheduling pieces.

The throttle, trailing-edge conflation and periodic grid are not reimplemented:
the workers are :func:`agents.scheduling.event_driven_loop` and
:func:`agents.scheduling.periodic_loop` over the same :class:`~agents.scheduling.Slot`,
given the virtual clock. What :mod:`agents.runtime` does around them is mirrored
here without Redis: quotes are offered by the engine instead of a socket reader,
cache-change notices arrive from the in-memory store's publish, and ``_invoke``
applies the same stale-quote check and error counting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from agents.base import TradingAgent
from agents.events import CacheUpdate, Event
from agents.scheduling import AgentStats, Slot, event_driven_loop, periodic_loop
from cache.memory import MemoryRedis
from core.clock import VirtualClock
from core.codec import Quote, decode_cache_change
from core.errors import DecodeError
from core.keys import Keys
from core.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class AgentDriver:
    def __init__(self, agent: TradingAgent, memory: MemoryRedis, keys: Keys, clock: VirtualClock,
                 trading: Any) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.stats = AgentStats()
        self._clock = clock
        self.slots = {symbol: Slot(self.stats, symbol) for symbol in self.settings.instruments}
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._run_errors = RateLimitedLog(logging.getLogger(f"agents.{agent.name}.run"))
        agent.data_cache.bind(memory, keys, clock)
        agent.attach_trading(trading)
        self.trading = trading
        if self.settings.on_cache:
            for symbol, slot in self.slots.items():
                memory.subscribe(keys.cache_changed_channel(symbol), self._cache_listener(slot))

    def quote_slots(self) -> dict[str, Slot]:
        """The slots the engine offers quotes to (none for an agent with on_quotes off)."""
        return self.slots if self.settings.on_quotes else {}

    def _cache_listener(self, slot: Slot) -> Any:
        triggers = set(self.settings.on_cache)

        def listen(channel: str, raw: bytes) -> None:
            try:
                symbol, fields, ts_ns = decode_cache_change(raw)
            except DecodeError:
                self.stats.bad_messages += 1
                return
            if triggers.intersection(fields):
                self.stats.received += 1
                slot.offer(CacheUpdate(symbol, tuple(fields), ts_ns, self._clock.time_ns()))

        return listen

    async def start(self) -> None:
        await self.agent.on_start()
        for name, coro in self._worker_coroutines():
            self._workers.append(asyncio.get_running_loop().create_task(coro, name=f"{self.agent.name}:{name}"))

    def _worker_coroutines(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        if self.settings.agent_type == "periodic":
            return [("periodic", periodic_loop(self.settings.throttle_ns, self._clock, self.slots, self.stats,
                                               self._invoke))]
        return [(f"worker:{symbol}", event_driven_loop(slot, self.settings.throttle_ns, self._clock, self._invoke))
                for symbol, slot in self.slots.items()]

    async def stop_workers(self) -> None:
        """No new run starts; the workers end (runs in the backtest finish before time moves)."""
        self._stopping = True
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    async def on_stop(self) -> None:
        try:
            await self.agent.on_stop()
        except Exception:
            log.exception("agent %s: on_stop failed", self.agent.name)

    def failed_worker(self) -> BaseException | None:
        """An exception that ended a worker (the live runtime would stop the process on it)."""
        for task in self._workers:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    async def _invoke(self, event: Event) -> None:
        if self._stopping:
            return
        now_ns = self._clock.time_ns()
        max_age_ns = self.settings.max_quote_age_ns
        if max_age_ns and isinstance(event, Quote) and now_ns - event.ts_event_ns > max_age_ns:
            self.stats.stale_skipped += 1
            return
        if isinstance(event, (Quote, CacheUpdate)) and event.ts_recv_ns:
            self.stats.record_lag(now_ns - event.ts_recv_ns)
        try:
            await self.agent.run(event)
            self.stats.runs += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.stats.errors += 1
            self._run_errors.error("run", "agent %s: run() raised %s: %s", self.agent.name,
                                   type(e).__name__, e, exc_info=e)
        finally:
            self.stats.last_run_ns = self._clock.time_ns()
