"""The backtest engine: one event loop over quotes, timers and order intents, in data time.

Each step takes the earliest of: an intent due at the gateway, an agent's timer
(a throttle's trailing edge, a periodic tick, a ``wait_for`` timeout) and the next
quote; ties go in that order. The virtual clock jumps to that time and nothing
sleeps. A quote first reaches the sim broker (which fills working orders against
it), then every agent's slot for the symbol. Agents run only when a slot that was
empty gets an event or a timer fires; then the engine runs every queued worker step
(backtest/driver.py: an event-driven agent's runs are called directly, not woken as
tasks) and lets every ready task run, until all wait again (:meth:`Engine._settle`),
before time moves on.

The gateway is the real one (:meth:`hub.execution.gateway.Gateway.handle`: intent
decoding, idempotency, replace, the risk checks of hub/execution/risk.py) over the
real order store and sim broker, all on an in-memory Redis (cache/memory.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from agents.base import TradingAgent
from agents.scheduling import Slot
from backtest.config import BacktestConfig, StartPosition
from backtest.driver import AgentDriver, Runnable
from backtest.recorder import Recorder
from backtest.sources import Event
from backtest.trading import BacktestTradingClient
from cache.memory import MemoryRedis, MemoryRedisBytes
from core.clock import VirtualClock
from core.codec import Quote, quote_to_hash
from core.keys import Keys
from core.orders import Position
from hub.execution.brokers.sim import SimBroker, price_of
from hub.execution.gateway import Gateway
from hub.execution.risk import RiskChecks
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

#: ``settle`` gives up after this many rounds (an agent busy-looping without awaiting the clock).
MAX_SETTLE_ROUNDS = 10_000
Progress = Callable[[int], None]
# what Engine._timers_until left to do
_DONE, _SETTLE, _ASYNC = object(), object(), object()


async def settle() -> None:
    """Let every ready task run until all of them wait on something only the engine can release.

    CPython's event loop keeps its ready callbacks in ``loop._ready``; when that is
    empty as this coroutine resumes, nothing else can make progress. Other loops
    (uvloop) have no such attribute: then the tasks are asked instead (:func:`_tasks_runnable`),
    which sees tasks but not plain callbacks, so one more round follows the last runnable task.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    if ready is None:
        current = asyncio.current_task()
        quiet = 0
        for _ in range(MAX_SETTLE_ROUNDS):
            await asyncio.sleep(0)
            quiet = 0 if _tasks_runnable(loop, current) else quiet + 1
            if quiet >= 2:  # a callback a task's step scheduled has had its round too
                return
    else:
        for _ in range(MAX_SETTLE_ROUNDS):
            await asyncio.sleep(0)
            if not ready:
                return
    log.warning("backtest: tasks still runnable after %d rounds; moving time on", MAX_SETTLE_ROUNDS)


def _tasks_runnable(loop: asyncio.AbstractEventLoop, current: asyncio.Task[Any] | None) -> bool:
    """True when a task other than ``current`` is not done and not blocked on a pending future."""
    for task in asyncio.all_tasks(loop):
        if task is current:
            continue
        waiter = getattr(task, "_fut_waiter", None)  # the future a suspended task waits on
        if waiter is None or waiter.done():
            return True
    return False


@dataclass
class EngineCounters:
    quotes: int = 0
    intents: int = 0
    settles: int = 0
    wall_s: float = 0.0
    first_ts_ns: int = 0
    last_ts_ns: int = 0
    agent_errors: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, config: BacktestConfig, source: Iterable[Event], *,
                 agents: Sequence[TradingAgent] | None = None, clock: VirtualClock | None = None,
                 progress: Progress | None = None) -> None:
        self.config = config
        self.clock = clock or VirtualClock()
        self.keys = Keys(config.backtest.namespace)
        self.memory = MemoryRedis()
        self.latest: dict[str, Quote] = {}
        self.memory.add_view(self.keys.latest_quote(""), self._latest_quote_hash)
        self.store = OrderStore(self.memory, self.keys, self.clock)
        self.broker = SimBroker(self.store, MemoryRedisBytes(self.memory), self.keys, config.sim)
        self.gateway = Gateway(self.memory, self.keys, self.store, self.broker, RiskChecks(config.risk, self.clock),
                               self.clock, raw_client=MemoryRedisBytes(self.memory))
        self._source = source
        self._progress = progress
        self._intents: list[tuple[int, int, dict[str, str]]] = []
        self._intent_order = itertools.count()
        self._journal = hashlib.sha256()
        self._journal_lines: list[str] = []
        self.memory.journal = self._journal_write
        self.agents = list(agents) if agents is not None else [spec_build(s, self.clock) for s in config.agents]
        #: worker steps due now, in the order the live loop would wake them (see backtest/driver.py)
        self._runnable = Runnable()
        self.drivers = [AgentDriver(a, self.memory, self.keys, self.clock, self._trading_client(a), self._runnable)
                        for a in self.agents]
        # Per symbol: the agents' slots in agent order, in runs that share a usable-quote filter (None:
        # every quote; one verdict per run), so conflation is latest-usable-wins exactly as in agents.runtime.
        self._routes: dict[str, list[tuple[Any, list[Slot]]]] = {}
        for driver in self.drivers:
            accepts = type(driver.agent).usable_quotes.accepts_row
            for symbol, slot in driver.quote_slots().items():
                runs = self._routes.setdefault(symbol, [])
                if runs and runs[-1][0] is accepts:
                    runs[-1][1].append(slot)
                else:
                    runs.append((accepts, [slot]))
        self.recorder = Recorder(self, config.backtest.sample_interval_ns)
        self.counters = EngineCounters()
        self._next_due_ns: int | None = None
        self._ready: Any = None  # the running loop's ready queue (CPython), see settle()

    def _trading_client(self, agent: TradingAgent) -> BacktestTradingClient:
        return BacktestTradingClient(self.memory, self.keys, agent.name, self.clock, self.store, self.send_intent)

    def _latest_quote_hash(self, key: str) -> dict[str, str] | None:
        quote = self.latest.get(key[len(self.keys.latest_quote("")):])
        return quote_to_hash(quote) if quote is not None else None

    def _journal_write(self, key: str, pairs: list[str]) -> None:
        # Hashed in batches (SHA-256 is a stream: the digest is the same as hashing each line at once).
        lines = self._journal_lines
        lines.append(key + "|" + "|".join(pairs) if pairs else key)  # "|".join((key, *pairs)), no tuple
        if len(lines) >= 1024:
            self._flush_journal()

    def _flush_journal(self) -> None:
        lines = self._journal_lines
        if lines:
            lines.append("")
            self._journal.update("\n".join(lines).encode())
            lines.clear()

    def send_intent(self, fields: dict[str, str]) -> None:
        due_ns = self.clock.now_ns + self.config.backtest.intent_latency_ns
        heapq.heappush(self._intents, (due_ns, next(self._intent_order), fields))
        if self._next_due_ns is None or due_ns < self._next_due_ns:
            self._next_due_ns = due_ns

    # the run ----------------------------------------------------------------------------

    async def run(self) -> EngineCounters:
        started = time.perf_counter()
        self._ready = getattr(asyncio.get_running_loop(), "_ready", None)
        self._runnable.attach(asyncio.get_running_loop())
        events = iter(self._source)
        first = next(events, None)
        if first is None:
            raise ValueError("the backtest data holds no quotes")
        self.clock.advance_to(first[1])
        self.counters.first_ts_ns = first[1]
        await self._start(first)
        await self._loop(itertools.chain([first], events))
        await self._finish()
        self.counters.wall_s = time.perf_counter() - started
        return self.counters

    async def _start(self, first: Event) -> None:
        await self._set_start_positions(self.config.positions, first)
        await self.broker.start()
        self.recorder.start(first[1])
        for driver in self.drivers:
            await driver.start()
        await self._settle_and_drain()

    async def _set_start_positions(self, positions: Sequence[StartPosition], first: Event) -> None:
        mid = (first[2] + first[4]) / 2.0
        for start in positions:
            if start.qty == 0:
                continue
            avg = start.avg_price if start.avg_price is not None else price_of(mid)
            await self.store.set_position(Position(start.symbol, start.qty, avg, updated_ns=first[1]))

    async def _loop(self, events: Iterable[Event]) -> None:
        clock, latest, routes, store, broker = self.clock, self.latest, self._routes, self.store, self.broker
        recorder, counters, progress = self.recorder, self.counters, self._progress
        run_queued, timers_until = self._run_queued, self._timers_until
        no_slots: list[Any] = []
        count = 0
        batch: list[Any] = []
        journal_batch = self._journal_quotes
        for event in events:
            batch.append(event)
            if len(batch) >= 4096:
                journal_batch(batch)
            symbol, ts_ns, bid, bid_size, ask, ask_size = event
            due = self._next_due_ns
            if due is not None and due <= ts_ns:
                due_state = timers_until(ts_ns)  # the timers' steps without an await, then the rest
                if due_state is not _DONE:
                    await self._run_until(ts_ns, due_state)
            if ts_ns > clock.now_ns:
                clock.now_ns = ts_ns
            if ts_ns >= recorder.next_sample_ns:
                recorder.sample_until(ts_ns)
            quote = new_quote(symbol, bid, bid_size, ask, ask_size, ts_ns, ts_ns)
            latest[symbol] = quote
            woke = False
            if broker.take_quote(quote):  # orders work on the symbol: match them
                events_before = store.events_written
                await broker.on_quote(quote)
                woke = store.events_written != events_before
            if (_offer(routes.get(symbol, no_slots), quote) or woke) and run_queued():
                await self._settle_and_drain()
            count += 1
            if progress is not None and not count & 0x3FFF:
                progress(count)
        journal_batch(batch)
        counters.quotes = count
        counters.last_ts_ns = clock.now_ns

    def _run_queued(self) -> bool:
        """The common case of a settle, without awaiting: run the queued worker steps and the timers due
        now; True when a task or an intent is left for the full :meth:`_settle_and_drain`."""
        runnable, ready = self._runnable, self._ready
        while runnable:
            runnable.popleft()()
        if ready is None or ready:
            return True
        self.counters.settles += 1
        if not self._intents:  # _timers_until's first look, for the usual answer: nothing due now
            timer_ns = self.clock.next_deadline_ns()
            if timer_ns is None or timer_ns > self.clock.now_ns:
                self._next_due_ns = timer_ns
                return False
        return self._timers_until(self.clock.now_ns) is not _DONE

    def _journal_quotes(self, batch: list[Any]) -> None:
        """The input is part of the event log: a quote no agent ran on still changes the digest."""
        if batch:
            self._flush_journal()
            self._journal.update(msgpack.packb(batch))
            batch.clear()

    async def _settle_and_drain(self) -> None:
        """Run what is ready, then whatever became due at this same instant (intents at zero latency)."""
        await self._settle()
        if self._intents or self.clock.next_deadline_ns() is not None:
            await self._run_until(self.clock.now_ns)
        else:
            self._next_due_ns = None

    def _next_due(self) -> tuple[int | None, bool]:
        """The earliest time an intent or a timer is due, and whether an intent is due then."""
        timer_ns = self.clock.next_deadline_ns()
        intents = self._intents
        if not intents:
            return timer_ns, False
        intent_ns: int = intents[0][0]
        if timer_ns is not None and timer_ns < intent_ns:
            return timer_ns, False
        return intent_ns, True

    def _timers_until(self, until_ns: int) -> object:
        """The steps of :meth:`_run_until` that need no await, done here: timers due before any intent,
        while no task is ready. ``_DONE``: nothing is due by ``until_ns`` any more; ``_SETTLE``: the last
        step left tasks ready (settle, then ``_run_until``); ``_ASYNC``: an intent is due first (the
        gateway awaits) or the loop's ready queue cannot be seen: ``_run_until`` goes on."""
        clock, runnable, ready, recorder = self.clock, self._runnable, self._ready, self.recorder
        if ready is None:
            return _ASYNC
        while True:
            due, intent = self._next_due()
            if due is None or due > until_ns:
                self._next_due_ns = due
                return _DONE
            if intent:
                return _ASYNC
            clock.advance_to(due)
            if due >= recorder.next_sample_ns:
                recorder.sample_until(due)
            clock.wake_due()
            while runnable:  # the common case of _settle, without awaiting it
                runnable.popleft()()
            if ready:
                return _SETTLE
            self.counters.settles += 1

    async def _run_until(self, until_ns: int, state: object = None) -> None:
        """Handle every intent and timer due at or before ``until_ns``, in time order (``state``: what
        a :meth:`_timers_until` the caller just made returned)."""
        clock, intents = self.clock, self._intents
        while True:
            state = state or self._timers_until(until_ns)
            if state is _DONE:
                return
            if state is _SETTLE:
                await self._settle()
                state = None
                continue
            state = None
            due, intent = self._next_due()
            if due is None or due > until_ns:
                self._next_due_ns = due
                return
            clock.advance_to(due)
            if due >= self.recorder.next_sample_ns:
                self.recorder.sample_until(due)
            if intent:
                while intents and intents[0][0] <= due:
                    _, _, fields = heapq.heappop(intents)
                    self.counters.intents += 1
                    # The live gateway's way: decoded behind the poison boundary, so a bad intent is
                    # rejected exactly as it would be live.
                    await self.gateway.handle_entries([{k.encode(): v.encode() for k, v in fields.items()}])
            else:
                clock.wake_due()
            runnable = self._runnable
            while runnable:  # the common case of _settle, without awaiting it
                runnable.popleft()()
            if self._ready is None or self._ready:
                await self._settle()
            else:
                self.counters.settles += 1

    async def _settle(self) -> None:
        """Run the queued worker steps and the ready tasks until nothing is runnable."""
        self.counters.settles += 1
        runnable, ready = self._runnable, self._ready
        if ready is None:
            await settle()
            while runnable:
                while runnable:
                    runnable.popleft()()
                await settle()
            return
        while True:
            while runnable:
                runnable.popleft()()
            if not ready:
                return
            await asyncio.sleep(0)

    async def _finish(self) -> None:
        """Let timers run ``end_drain`` past the last quote, stop the agents (their on_stop cancels), settle."""
        end_ns = self.counters.last_ts_ns + self.config.backtest.end_drain_ns
        await self._run_until(end_ns)
        self.clock.advance_to(end_ns)
        for driver in self.drivers:
            failed = driver.failed_worker()
            if failed is not None:  # the live runtime stops the process on it: so does a backtest
                raise RuntimeError(f"agent {driver.agent.name}: a worker failed: {failed!r}") from failed
        for driver in self.drivers:
            await driver.stop_workers()
        for driver in self.drivers:
            await self._complete(driver.on_stop())
        while self._intents:  # sent by an on_stop that did not wait for them (latency > 0)
            await self._run_until(max(due for due, _, _ in self._intents))
        await self._settle_and_drain()
        self.recorder.sample_until(self.clock.now_ns, final=True)
        for driver in self.drivers:
            await driver.trading.aclose()

    async def _complete(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` to its end, moving data time through the intents and timers it waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        while True:
            await self._settle_and_drain()
            if task.done():
                break
            due = self._next_due_ns
            if due is None:
                task.cancel()
                log.warning("backtest: an on_stop waited for something that can no longer happen; cancelled")
                break
            await self._run_until(due)
        await asyncio.gather(task, return_exceptions=True)

    @property
    def digest(self) -> str:
        """SHA-256 over every cache write and order event so far (values, fields and data-time stamps)."""
        self._flush_journal()
        combined = self._journal.copy()
        for entry_id, fields in self.memory.streams.get(self.keys.order_events(), []):
            combined.update((entry_id + "|" + "|".join(f"{k}={v}" for k, v in sorted(fields.items())) + "\n").encode())
        return combined.hexdigest()


def spec_build(spec: Any, clock: VirtualClock) -> TradingAgent:
    """Build an agent from its config; a class that takes a ``clock`` (QuoteManager) gets the virtual one."""
    if "clock" in inspect.signature(spec.cls.__init__).parameters:
        return spec.cls(config=dict(spec.config), clock=clock)  # type: ignore[no-any-return]
    return spec.build()  # type: ignore[no-any-return]


def _quote_constructor() -> Callable[[str, float, float, float, float, int, int], Quote]:
    """``Quote(...)`` at about half the cost: a frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` per field; this sets its slots through their descriptors."""
    new = object.__new__
    setters = [Quote.__dict__[f].__set__ for f in ("symbol", "bid", "bid_size", "ask", "ask_size",
                                                   "ts_event_ns", "ts_recv_ns")]
    s_symbol, s_bid, s_bid_size, s_ask, s_ask_size, s_ts_event, s_ts_recv = setters

    def make(symbol: str, bid: float, bid_size: float, ask: float, ask_size: float, ts_event_ns: int,
             ts_recv_ns: int) -> Quote:
        quote: Quote = new(Quote)
        s_symbol(quote, symbol)
        s_bid(quote, bid)
        s_bid_size(quote, bid_size)
        s_ask(quote, ask)
        s_ask_size(quote, ask_size)
        s_ts_event(quote, ts_event_ns)
        s_ts_recv(quote, ts_recv_ns)
        return quote

    return make


new_quote = _quote_constructor()


def _offer(routes: list[tuple[Any, list[Slot]]], quote: Quote) -> bool:
    """Offer a quote to each agent that can use it (latest-usable-wins, as agents.runtime's reader);
    True when an idle slot got work."""
    woke = False
    row: list[Any] | None = None
    for accepts, slots in routes:
        if accepts is not None:
            if row is None:  # the wire row the filter judges (Quote.to_row)
                row = [quote.ts_event_ns, quote.ts_recv_ns, quote.bid, quote.bid_size, quote.ask, quote.ask_size]
            if not accepts(row):  # the pending (older, usable) quotes stay
                for slot in slots:
                    stats = slot.stats
                    stats.received += 1
                    stats.unusable += 1
                continue
        for slot in slots:
            stats = slot.stats
            stats.received += 1
            if slot.pending:  # Slot.offer_one's conflation, inline: this is most offers at a throttle
                slot.latest = quote  # (its held row is always None here: the engine offers events only)
                stats.conflated += 1
            elif slot.offer_one(quote):
                woke = True
    return woke
