"""Runs one agent: subscribe, drain the socket into latest-wins slots, throttle, heartbeat.

Tasks per agent:

- *reader*: reads pub/sub messages and only decodes and offers them to slots,
  so Redis never sees a slow subscriber, whatever ``run()`` does;
- *workers*: one per instrument (event-driven) or one schedule (periodic)
  that call ``run()`` on the latest event;
- *heartbeat*: ``tf:agent:<name>`` every second.

Quotes are conflated latest-usable-wins: the reader keeps, per instrument,
the newest quote the agent's ``usable_quotes`` filter accepts, so a crossed or
one-sided quote right behind usable ones never hides them (docs/data-quality.md).

When Redis cuts the subscription off (a stalled agent overran
``client-output-buffer-limit pubsub``) the reader reconnects, resubscribes and
restarts from the latest quotes in-process, counting ``cutoffs`` in the
heartbeat; the process, its name and its heartbeat live on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.base import TradingAgent
from agents.events import CacheUpdate, Event
from agents.scheduling import AgentStats, Slot, event_driven_loop, periodic_loop
from core.clock import Clock, SystemClock
from core.cluster import ShardedSubscription, is_cluster
from core.codec import (
    Quote,
    RowCheck,
    decode_cache_change,
    decode_latest_row,
    decode_latest_usable_row,
    quote_from_hash,
)
from core.errors import DecodeError, RedisUnavailableError
from core.failover import FAILOVER_WAIT_S, backoff
from core.heartbeat import Heartbeat
from core.keys import Keys
from core.names import shown
from core.ratelimit import RateLimitedLog
from core.resp import Address, Subscription
from core.sentinel import MasterSubscription, is_sentinel
from core.settings import format_duration_ns

log = logging.getLogger(__name__)

#: How long an in-flight run() may take to finish after a stop signal.
STOP_GRACE_NS = 3_000_000_000
#: How long the reader keeps trying to resubscribe after losing its subscription before the
#: process gives up (exit 69, restarted by its supervisor): the bound of every failover path.
RESUBSCRIBE_DEADLINE_NS = int(FAILOVER_WAIT_S * 1e9)

Handler = Callable[[bytes], None]


class AgentRuntime:
    """Everything around one agent's ``run()``; ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, agent: TradingAgent, *, client: aioredis.Redis, raw_client: aioredis.Redis,
                 keys: Keys, clock: Clock | None = None) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.stats = AgentStats()
        self._client = client
        self._raw_client = raw_client
        self._keys = keys
        self._clock = clock or SystemClock()
        self._slots = {symbol: Slot(self.stats, symbol) for symbol in self.settings.instruments}
        self._usable: RowCheck | None = type(agent).usable_quotes.accepts_row
        self._handlers = self._build_handlers()
        self._pubsub = self._subscription()
        self._bad_input = RateLimitedLog(logging.getLogger(f"agents.{agent.name}.input"))
        self._run_errors = RateLimitedLog(logging.getLogger(f"agents.{agent.name}.run"))
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.heartbeat = Heartbeat(client, keys.agent(agent.name), self._clock, self._heartbeat_fields)
        agent.data_cache.bind(client, keys, self._clock)

    # wiring ------------------------------------------------------------------

    def _build_handlers(self) -> dict[bytes, Handler]:
        handlers: dict[bytes, Handler] = {}
        for symbol, slot in self._slots.items():
            if self.settings.on_quotes:
                handlers[self._keys.quote_channel(symbol).encode()] = self._quote_handler(symbol, slot)
            if self.settings.on_cache:
                handlers[self._keys.cache_changed_channel(symbol).encode()] = self._cache_handler(slot)
        return handlers

    def _quote_handler(self, symbol: str, slot: Slot) -> Handler:
        stats, usable = self.stats, self._usable
        by_symbol = stats.received_by_symbol
        if usable is None:  # every quote is usable: the newest row wins, nothing to judge
            def handle(raw: bytes) -> None:
                sent_for, row, count = decode_latest_row(raw)
                if sent_for != symbol:
                    raise DecodeError(f"message for {shown(sent_for)} on the {symbol} channel", raw)
                stats.received += count
                by_symbol[symbol] = by_symbol.get(symbol, 0) + count
                slot.offer_quote_row(row, count - 1)

            return handle

        def handle_usable(raw: bytes) -> None:
            sent_for, row, count, newer_unusable = decode_latest_usable_row(raw, usable)
            if sent_for != symbol:
                raise DecodeError(f"message for {shown(sent_for)} on the {symbol} channel", raw)
            stats.received += count
            by_symbol[symbol] = by_symbol.get(symbol, 0) + count
            stats.unusable += newer_unusable
            if row is not None:  # else the pending (older, usable) quote stays
                slot.offer_quote_row(row, count - 1 - newer_unusable)

        return handle_usable

    def _cache_handler(self, slot: Slot) -> Handler:
        triggers = set(self.settings.on_cache)

        def handle(raw: bytes) -> None:
            symbol, fields, ts_ns = decode_cache_change(raw)
            if symbol != slot.symbol:  # a forged notice must not run the agent for another symbol
                raise DecodeError(f"cache change for {shown(symbol)} on the {slot.symbol} channel", raw)
            if triggers.intersection(fields):
                self.stats.received += 1
                slot.offer(CacheUpdate(symbol, tuple(fields), ts_ns, self._clock.time_ns()))

        return handle

    # lifecycle ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        agent = self.agent
        await self.heartbeat.claim()
        try:
            await self._announce_demand()
            # A failover while starting is ridden as one mid-run (CI: a master killed while a quote
            # manager was still subscribing ended it with exit 69).
            await self._subscribe_through_failover()
            await agent.on_start()
            log.info("agent %s started: %s %s, throttle %s, usable quotes %s, pid %d", agent.name,
                     self.settings.agent_type, ",".join(self.settings.instruments) or "-",
                     format_duration_ns(self.settings.throttle_ns), type(agent).usable_quotes.name, os.getpid())
            await self._supervise(stop)
        finally:
            await self._shutdown()

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Run reader, workers and heartbeat until stop is set or one of them fails."""
        workers = [self._spawn(coro, name) for name, coro in self._worker_coroutines()]
        others = [self._spawn(self._read(), "reader"), self._spawn(self.heartbeat.run(stop), "heartbeat")]
        stopper = self._spawn(stop.wait(), "stop")
        try:
            done, _ = await asyncio.wait([*workers, *others, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if task is not stopper and error is not None:
                    raise error
        finally:
            stop.set()
            await self._drain(workers)
            for task in (*others, stopper):
                task.cancel()
            await asyncio.gather(*others, stopper, return_exceptions=True)

    def _worker_coroutines(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        if self.settings.agent_type == "periodic":
            return [("periodic", periodic_loop(self.settings.throttle_ns, self._clock, self._slots,
                                               self.stats, self._invoke))]
        return [(f"worker:{symbol}", event_driven_loop(slot, self.settings.throttle_ns, self._clock, self._invoke))
                for symbol, slot in self._slots.items()]

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return asyncio.create_task(coro, name=f"{self.agent.name}:{name}")

    async def _drain(self, workers: list[asyncio.Task[Any]]) -> None:
        """Start no new run, give in-flight runs a moment to finish, then cancel."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOP_GRACE_NS / 1e9)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _shutdown(self) -> None:
        name = self.agent.name
        try:
            await self.agent.on_stop()
        except Exception:
            log.exception("agent %s: on_stop failed", name)
        await self._pubsub.aclose()  # closes a socket: cannot fail
        try:
            await self.agent.data_cache.aclose()  # only what the cache opened before it was bound
        except (OSError, RedisError, RedisUnavailableError) as e:
            log.warning("agent %s: closing the cache connection failed: %s", name, e)
        try:
            await self.heartbeat.release()
        except (OSError, RedisError, RedisUnavailableError) as e:  # Redis gone: the hash expires on its own
            log.warning("agent %s: could not delete its heartbeat (it expires by itself): %s", name, e)
        s = self.stats
        log.info("agent %s stopped: %d runs, %d errors, %d conflated, %d unusable, %d bad messages, %d cutoffs",
                 name, s.runs, s.errors, s.conflated, s.unusable, s.bad_messages, s.cutoffs)

    # the hot path ------------------------------------------------------------

    def _subscription(self) -> Subscription | ShardedSubscription:
        """The agent's own lean subscriber connection (core.resp), configured like the raw client."""
        if is_cluster(self._raw_client):  # SSUBSCRIBE per master (core.cluster)
            return ShardedSubscription(self._raw_client)
        if is_sentinel(self._raw_client):  # on the master the Sentinels name when it subscribes
            return MasterSubscription(self._raw_client)
        return Subscription(Address.from_client(self._raw_client))

    async def _read(self) -> None:
        """Hand every message to its handler straight from the socket callback; no await per message.

        A lost subscription (Redis cut a slow subscriber off, or the connection dropped) is
        counted and re-established in-process; only a Redis that stays away ends the process.
        """
        if not self._handlers:
            await asyncio.Event().wait()
        dispatch = self._dispatcher()
        while True:
            try:
                await self._pubsub.listen(dispatch)
            except RedisUnavailableError as e:
                if self._stopping:
                    raise
                self.stats.cutoffs += 1
                log.warning("agent %s lost its subscription (%s); resubscribing (cutoff %d)",
                            self.agent.name, e, self.stats.cutoffs)
                await self._resubscribe()

    def _dispatcher(self) -> Callable[[bytes, bytes], None]:
        handlers, stats = self._handlers, self.stats

        def dispatch(channel: bytes, data: bytes) -> None:
            handler = handlers.get(channel)
            if handler is None:
                return
            try:
                handler(data)
            except DecodeError as e:
                stats.bad_messages += 1
                self._bad_input.warning("decode", "agent %s skipped a bad message on %s: %s",
                                        self.agent.name, channel.decode(errors="replace"), e)

        return dispatch

    async def _resubscribe(self) -> None:
        """A new subscription after a lost one; the latest quotes fill the gap."""
        await self._pubsub.aclose()
        self._pubsub = self._subscription()
        await self._subscribe_through_failover()
        log.info("agent %s resubscribed to %d channels", self.agent.name, len(self._handlers))

    async def _subscribe_through_failover(self) -> None:
        """Subscribe and prime from the latest quotes, retrying with capped, jittered backoff
        for as long as a failover takes."""
        deadline_ns = time.monotonic_ns() + RESUBSCRIBE_DEADLINE_NS
        waits = backoff()
        failures = 0
        while True:
            try:
                if self._handlers:
                    await self._pubsub.subscribe(*self._handlers)
                await self._prime_from_latest_quotes()
                return
            except (RedisUnavailableError, RedisConnectionError, RedisTimeoutError, OSError) as e:
                await self._pubsub.aclose()
                if time.monotonic_ns() >= deadline_ns:
                    raise RedisUnavailableError(f"could not subscribe within "
                                                f"{format_duration_ns(RESUBSCRIBE_DEADLINE_NS)}: {e}") from e
                failures += 1
                await asyncio.sleep(waits.compute(failures))
                self._pubsub = self._subscription()

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
        self._in_flight += 1
        self._idle.clear()
        started_ns = self._clock.monotonic_ns()
        try:
            await self.agent.run(event)
            self.stats.runs += 1
            self.stats.run_ms.observe((self._clock.monotonic_ns() - started_ns) / 1e6)
        except asyncio.CancelledError:
            raise
        except RedisUnavailableError:
            raise
        except (RedisConnectionError, RedisTimeoutError) as e:
            raise RedisUnavailableError(f"lost Redis during run(): {e}") from e
        except Exception as e:
            self.stats.errors += 1
            self._run_errors.error("run", "agent %s: run() raised %s: %s", self.agent.name,
                                   type(e).__name__, e, exc_info=e)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
            self.stats.last_run_ns = self._clock.time_ns()

    # helpers -------------------------------------------------------------------

    def _wanted(self) -> str:
        """The symbols this agent needs streamed; in the heartbeat, so demand expires with it."""
        return ",".join(self.settings.instruments) if self.settings.on_quotes else ""

    async def _announce_demand(self) -> None:
        """Ask the hub to stream our instruments (it serves the union of all demand).

        The heartbeat (claimed before this) lists them in ``wants``: the hub drops a
        member of the wanted set once no live agent's heartbeat wants it.
        """
        if not self._wanted():
            return
        if is_cluster(self._client):  # redis-py refuses PUBLISH in a cluster pipeline; the set comes first
            await self._client.sadd(self._keys.wanted_symbols(), *self.settings.instruments)
            await self._client.publish(self._keys.symbols_control_channel(), ",".join(self.settings.instruments))
            return
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._keys.wanted_symbols(), *self.settings.instruments)
            pipe.publish(self._keys.symbols_control_channel(), ",".join(self.settings.instruments))
            await pipe.execute()

    async def _prime_from_latest_quotes(self) -> None:
        """Start (and restart after a cut-off) from the hub's latest quotes, so a quiet market
        still gets a run and quotes missed in a gap are replaced by the newest one.

        Offered only when newer than what the slot already has or ran on (a quote that
        arrived first, or a hash nobody updated), and only if the agent's filter accepts it.
        """
        if not self.settings.on_quotes:
            return
        usable_quotes = type(self.agent).usable_quotes
        async with self._client.pipeline(transaction=False) as pipe:  # one round trip, not one per symbol
            for symbol in self._slots:
                pipe.hgetall(self._keys.latest_quote(symbol))
            hashes = await pipe.execute()
        for (symbol, slot), fields in zip(self._slots.items(), hashes, strict=True):
            if not fields:
                continue
            try:
                quote = quote_from_hash(symbol, fields)
            except DecodeError as e:
                self.stats.bad_messages += 1
                self._bad_input.warning("hash", "agent %s skipped a bad latest-quote hash: %s", self.agent.name, e)
                continue
            if quote.ts_event_ns > slot.newest_ts_ns() and usable_quotes.accepts(quote):
                slot.offer(quote)

    def _heartbeat_fields(self) -> dict[str, str | int | float]:
        s = self.stats
        fields: dict[str, str | int | float] = {
            "kind": "agent", "class": type(self.agent).__name__, "agent_type": self.settings.agent_type,
            "instruments": ",".join(self.settings.instruments), "runs": s.runs, "errors": s.errors,
            "conflated": s.conflated, "received": s.received, "bad_messages": s.bad_messages,
            "unusable": s.unusable, "cutoffs": s.cutoffs, "wants": self._wanted(),
            "stale_skipped": s.stale_skipped, "skipped_ticks": s.skipped_ticks, "last_run_ns": s.last_run_ns,
            "lag_ms": round(s.last_lag_ns / 1e6, 3), "max_lag_ms": round(s.max_lag_ns / 1e6, 3),
            "throttle": format_duration_ns(self.settings.throttle_ns),
            **s.run_ms.fields("run_ms"), **s.lag_ms.fields("lag_ms"),
            **{f"received:{symbol}": n for symbol, n in s.received_by_symbol.items()},
        }
        s.max_lag_ns = 0
        return fields


async def run_agents(runtimes: list[AgentRuntime], stop: asyncio.Event,
                     before_stop: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run several agents in one loop; one failing stops them all."""
    tasks = [asyncio.create_task(rt.run(stop), name=f"agent:{rt.agent.name}") for rt in runtimes]
    try:
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
