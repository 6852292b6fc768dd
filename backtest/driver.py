"""Runs one agent in a backtest with the live runtime's scheduling pieces.

The throttle, trailing-edge conflation and periodic grid are not reimplemented:
a periodic agent's worker is :func:`agents.scheduling.periodic_loop` as a task on
the virtual clock; an event-driven agent's is :class:`SyncWorker`, the steps of
:func:`agents.scheduling.event_driven_loop` with its decision
(:class:`agents.scheduling.Throttle`) over the same :class:`~agents.scheduling.Slot`,
but called by the engine instead of woken as a task (a task wake per run was most
of the cost of a quote). What :mod:`agents.runtime` does around them is mirrored
here without Redis: quotes are offered by the engine instead of a socket reader,
cache-change notices arrive from the in-memory store's publish, and ``_invoke``
applies the same stale-quote check and error counting.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from agents.base import TradingAgent
from agents.events import CacheUpdate, Event
from agents.scheduling import AgentStats, Slot, Throttle, periodic_loop
from cache.memory import MemoryRedis
from core.clock import VirtualClock
from core.codec import Quote, decode_cache_change
from core.errors import DecodeError
from core.keys import Keys
from core.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class Runnable(deque[Callable[[], None]]):
    """The engine's queue of worker steps, kept in one order with the event loop's ready tasks.

    A step is queued where the live loop would have a task woken. While tasks are
    ready on the loop (a periodic agent, order-update callbacks, a run that
    suspended), a step goes behind them on the loop (``call_soon``), so work at
    one instant runs in exactly the order an all-task run would give; otherwise it
    goes on this deque, which the engine drains without a loop round trip.
    """

    _loop_ready: Any = None
    _call_soon: Any = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_ready = getattr(loop, "_ready", None)  # CPython's; without it steps only use the deque
        self._call_soon = loop.call_soon

    def append(self, step: Callable[[], None]) -> None:
        if self._loop_ready:
            self._call_soon(step)
        else:
            _push(self, step)


_push = deque.append


class _Wake(asyncio.Event):
    """A slot's wake signal that, instead of waking a task, queues the worker's next step."""

    def __init__(self, worker: SyncWorker) -> None:
        super().__init__()
        self._worker = worker

    def set(self) -> None:
        worker = self._worker
        if worker.idle and not worker.queued and not worker.stopped:
            worker.queued = True
            worker.runnable.append(worker.after_wake)


class SyncWorker:
    """:func:`agents.scheduling.event_driven_loop` for one slot, stepped by the engine.

    The loop's states: waiting for the slot's wake (``idle``), sleeping until the
    throttle allows a run (a :class:`~core.clock.VirtualTimer`), running. Its steps
    are queued on the engine's :class:`Runnable` where the live loop would be woken
    (the slot's wake, the timer), and run in the same FIFO order as woken tasks.

    ``run()`` is a coroutine, but in a backtest what it awaits (the in-memory cache,
    the backtest trading client) normally completes at once: it is driven with
    ``send(None)``. Only if it really suspends (``wait_for``, a sleep) does the rest of
    that run, and the loop after it, continue as a task on the event loop.
    """

    def __init__(self, slot: Slot, throttle_ns: int, clock: VirtualClock, driver: AgentDriver, runnable: Runnable,
                 name: str) -> None:
        self.slot = slot
        self.throttle = Throttle(throttle_ns)
        self.name = name
        self._clock = clock
        # AgentDriver._invoke in its three parts, so run()'s coroutine is the only one per run
        self._admit, self._run, self._ran = driver.admit, driver.agent.run, driver.ran
        self.runnable = runnable
        self.idle = True
        self.queued = False
        self.stopped = False
        self._timer: Any = None
        self.task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        self.after_wake = self._after_wake  # bound once: queued on every wake
        self._queue_after_sleep = functools.partial(runnable.append, self._after_sleep)  # the timer's callback
        slot.wake = _Wake(self)
        if slot.pending:
            slot.wake.set()

    def _after_wake(self) -> None:
        self.queued = False
        if self.idle and not self.stopped:
            self.idle = False
            self._loop()

    def _after_sleep(self) -> None:
        self._timer = None
        if not self.stopped and self._run_one():
            self._wait_again()

    def _wait_again(self) -> None:
        """Back at ``await slot.wake.wait()``: it returns at once when the slot got an event meanwhile."""
        if self.slot.pending:
            self._loop()
        else:
            self.idle = True

    def _loop(self) -> None:
        """From ``await slot.wake.wait()`` returning, until the loop waits on something."""
        clock, throttle, slot = self._clock, self.throttle, self.slot
        while not self.stopped:
            if throttle.must_wait(clock.now_ns):
                self._timer = clock.call_at_ns(throttle.next_allowed_ns, self._queue_after_sleep)
                return
            if not self._run_one():
                return
            if not slot.pending:
                self.idle = True
                return

    def _run_one(self) -> bool:
        """Take and run; False when the run went on as a task (or failed): the loop is not waiting here."""
        event = self.slot.take()
        if event is None:
            return True
        self.throttle.started(self._clock.now_ns)
        if not self._admit(event):
            return True
        coro: Any = self._run(event)
        if type(coro) is not CoroutineType:  # an awaitable that is not a coroutine: await it as one
            coro = _awaiting(coro)
        try:
            yielded = coro.send(None)
        except StopIteration:
            self._ran(None)
            return True
        except Exception as e:
            self._ran(e)
            return True
        except BaseException as e:  # the live worker task would end on it
            self._ran(e)
            self._fail(e)
            return False
        self.task = asyncio.get_running_loop().create_task(self._finish(coro, yielded), name=self.name)
        return False

    async def _finish(self, coro: Any, yielded: Any) -> None:
        try:
            await _resume(coro, yielded)
        except asyncio.CancelledError as e:
            self._ran(e)
            raise
        except Exception as e:
            self._ran(e)
        except BaseException as e:
            self._ran(e)
            self._fail(e)
            return
        else:
            self._ran(None)
        finally:
            self.task = None
        self._wait_again()

    def _fail(self, error: BaseException) -> None:
        self.failed = error
        self.stop()

    def stop(self) -> None:
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _awaiting(awaitable: Any) -> None:
    await awaitable


async def _resume(coro: Any, yielded: Any) -> None:
    """Drive ``coro`` on from a suspension (it yielded ``yielded``) to its end, as a task would."""
    while True:
        try:
            if yielded is None:  # a bare yield: asyncio.sleep(0)
                await asyncio.sleep(0)
            else:  # a future; a task clears the flag its yield set before waiting on it, so must this
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError as e:
            if yielded is None or not yielded.done():  # cancelled here, not the future it awaited
                try:
                    yielded = coro.throw(e)
                except StopIteration:
                    return
                continue
        except BaseException:
            pass
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class AgentDriver:
    def __init__(self, agent: TradingAgent, memory: MemoryRedis, keys: Keys, clock: VirtualClock,
                 trading: Any, runnable: Runnable | None = None) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.stats = AgentStats()
        self._clock = clock
        self._runnable: Runnable = runnable if runnable is not None else Runnable()
        self.slots = {symbol: Slot(self.stats, symbol) for symbol in self.settings.instruments}
        self._workers: list[asyncio.Task[None]] = []
        self._sync_workers: list[SyncWorker] = []
        self._stopping = False
        self._run_errors = RateLimitedLog(logging.getLogger(f"agents.{agent.name}.run"))
        agent.data_cache.bind(memory, keys, clock)
        agent.attach_trading(trading)
        self.trading = trading
        if self.settings.on_cache:
            for symbol, slot in self.slots.items():
                on_change, on_raw = self._cache_listeners(slot)
                memory.subscribe_changes(keys.cache_changed_channel(symbol), on_change, on_raw)

    def quote_slots(self) -> dict[str, Slot]:
        """The slots the engine offers quotes to (none for an agent with on_quotes off)."""
        return self.slots if self.settings.on_quotes else {}

    def _cache_listeners(self, slot: Slot) -> tuple[Any, Any]:
        """agents.runtime's cache handler: for a DataCache write's notice (its parts) and for raw bytes."""
        triggers = frozenset(self.settings.on_cache)
        stats, clock, expected = self.stats, self._clock, slot.symbol

        def on_change(symbol: str, fields: tuple[str, ...], ts_ns: int) -> None:
            if symbol != expected:  # as live: a notice for another symbol must not run the agent
                stats.bad_messages += 1
                return
            if not triggers.isdisjoint(fields):
                stats.received += 1
                slot.offer(CacheUpdate(symbol, fields, ts_ns, clock.now_ns))

        def on_raw(channel: str, raw: bytes) -> None:
            try:
                symbol, fields, ts_ns = decode_cache_change(raw)
            except DecodeError:
                stats.bad_messages += 1
                return
            on_change(symbol, tuple(fields), ts_ns)

        return on_change, on_raw

    async def start(self) -> None:
        await self.agent.on_start()
        if self.settings.agent_type == "periodic":
            coro = periodic_loop(self.settings.throttle_ns, self._clock, self.slots, self.stats, self._invoke)
            self._workers.append(asyncio.get_running_loop().create_task(coro, name=f"{self.agent.name}:periodic"))
            return
        self._sync_workers = [SyncWorker(slot, self.settings.throttle_ns, self._clock, self,
                                         self._runnable, f"{self.agent.name}:worker:{symbol}")
                              for symbol, slot in self.slots.items()]

    async def stop_workers(self) -> None:
        """No new run starts; the workers end (runs in the backtest finish before time moves)."""
        self._stopping = True
        for worker in self._sync_workers:
            worker.stop()
            if worker.task is not None:
                self._workers.append(worker.task)
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
        for worker in self._sync_workers:
            if worker.failed is not None:
                return worker.failed
        return None

    async def _invoke(self, event: Event) -> None:
        if not self.admit(event):
            return
        try:
            await self.agent.run(event)
        except Exception as e:
            self.ran(e)
            return
        except BaseException as e:
            self.ran(e)
            raise
        self.ran(None)

    def admit(self, event: Event) -> bool:
        """``_invoke`` before ``run()`` (agents.runtime's checks): False when the event does not run."""
        if self._stopping:
            return False
        now_ns = self._clock.now_ns
        if isinstance(event, Quote):
            max_age_ns = self.settings.max_quote_age_ns
            if max_age_ns and now_ns - event.ts_event_ns > max_age_ns:
                self.stats.stale_skipped += 1
                return False
        elif not isinstance(event, CacheUpdate):
            return True
        if event.ts_recv_ns:
            self.stats.record_lag(now_ns - event.ts_recv_ns)
        return True

    def ran(self, error: BaseException | None) -> None:
        """``_invoke`` after ``run()`` ended, with what it raised (None: it returned)."""
        if error is None:
            self.stats.runs += 1
        elif isinstance(error, Exception):
            self.stats.errors += 1
            self._run_errors.error("run", "agent %s: run() raised %s: %s", self.agent.name,
                                   type(error).__name__, error, exc_info=error)
        self.stats.last_run_ns = self._clock.now_ns
