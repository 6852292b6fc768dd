"""The dashboard's one background Redis reader.

It polls, whatever the market does: every ``poll`` (100 ms) one pipeline reads
the latest quote and cache hash of each followed symbol, the open orders, the
kill switch and new execution events (``XREAD`` on ``tf:orders:events``, so no
fill is missed across a reconnect); every ``processes_poll`` (1 s) it scans the
heartbeats and positions. So its Redis load is a constant few commands per poll,
independent of the quote rate, and hub and agents never see it: it subscribes
to nothing they publish on. Pages only read what it gathered.

Losing Redis never stops the process: the state says so, and the reader retries
with capped, jittered backoff until Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ClusterDownError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.clock import Clock, SystemClock
from core.keys import PORTFOLIO, Keys
from core.tasks import stopped_within
from hub.dashboard.settings import DashboardSettings
from hub.dashboard.state import Fields, State

log = logging.getLogger(__name__)

#: A symbol a page asked for is followed this long after the last ask.
REQUEST_TTL_NS = 60_000_000_000
MAX_BACKOFF_S = 2.0
EVENTS_PER_POLL = 1_000
KINDS = ("hub", "gateway", "agent")
FILL_EVENTS = ("fill", "partial_fill")
#: What a lost Redis looks like: a dropped or silent connection, or a cluster without a master for a slot
#: (mid-failover). The page shows it and the reader retries; anything else (a command redis-py refuses on
#: a cluster, say) is a bug and ends the process rather than passing for an outage.
REDIS_LOST = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, SlotNotCoveredError,
              TryAgainError)


class Reader:
    def __init__(self, client: aioredis.Redis, keys: Keys, state: State, settings: DashboardSettings,
                 clock: Clock | None = None) -> None:
        self._client = client
        self._keys = keys
        self._state = state
        self._settings = settings
        self._clock = clock or SystemClock()
        self._events_id: str | None = None  # None: (re)seed from the stream's tail first
        self._wanted: set[str] = set()
        self.polls = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; Redis errors mark the state down and back off, never end the loop."""
        clock, state = self._clock, self._state
        delay_s, next_slow_ns, next_ns = 0.1, 0, clock.monotonic_ns()
        while not stop.is_set():
            try:
                slow = clock.monotonic_ns() >= next_slow_ns
                await self.poll(slow)
                if slow:
                    next_slow_ns = clock.monotonic_ns() + self._settings.processes_poll_ns
                delay_s, next_ns = 0.1, next_ns + self._settings.poll_ns
                wait_s = max(0.0, (next_ns - clock.monotonic_ns()) / 1e9)
            except REDIS_LOST as e:
                if state.redis_up:
                    log.warning("Redis lost (%s); the page shows it, retrying", e)
                state.mark_down(f"{type(e).__name__}: {e}", clock.time_ns())
                self._events_id = None
                wait_s, delay_s = delay_s * (0.5 + random.random()), min(delay_s * 2, MAX_BACKOFF_S)
                next_ns, next_slow_ns = clock.monotonic_ns(), 0
            await stopped_within(stop, wait_s)

    async def poll(self, slow: bool) -> None:
        """One round: heartbeats and positions when ``slow``, then quotes, cache, orders, kill switch, events."""
        state, now_ns = self._state, self._clock.time_ns()
        if self._events_id is None:
            await self._seed_events()
        if slow:
            await self._read_slow(now_ns)
        symbols = self._symbols(now_ns)
        replies = await self._read_fast(symbols)
        if not state.redis_up:  # only once a whole round answered: a cluster mid-failover answers some nodes
            log.info("Redis reachable; reading the stack")
            state.mark_up()
        open_ids = replies.pop()
        state.open_orders = await self._open_orders(open_ids)
        fills = self._take_events(replies.pop())
        state.reduce_only, state.halt = replies.pop(), replies.pop()
        state.portfolio = replies.pop()
        ours = _best_own_quotes(state.open_orders)
        for i, symbol in enumerate(symbols):
            quote, cache = replies[2 * i], replies[2 * i + 1]
            state.quotes[symbol], state.cache[symbol] = quote, cache
            if quote:
                state.series_for(symbol).append(_sample(now_ns, quote, cache, ours.get(symbol, (None, None)),
                                                        fills.get(symbol, {})))
        if slow and state.portfolio:
            p = state.portfolio
            state.pnl.append((now_ns / 1e6, _num(p.get("pnl_realized")), _num(p.get("pnl_unrealized")),
                              _num(p.get("pnl_total"))))
        self._forget_unfollowed(symbols)
        state.symbols = symbols
        self.polls += 1
        state.bump()

    # reading -------------------------------------------------------------------------

    async def _read_slow(self, now_ns: int) -> None:
        keys, state = self._keys, self._state
        patterns = {"hub": (keys.hub_pattern(), keys.hub("")), "gateway": (keys.gateway_pattern(), keys.gateway("")),
                    "agent": (keys.agent_pattern(), keys.agent(""))}
        for kind, (pattern, prefix) in patterns.items():
            state.set_processes(kind, await self._hashes(pattern, prefix), now_ns)
        state.positions = await self._hashes(keys.position_pattern(), keys.position(""))
        self._wanted = set(await self._client.smembers(keys.wanted_symbols()))

    async def _hashes(self, pattern: str, prefix: str) -> dict[str, Fields]:
        found = sorted([k async for k in self._client.scan_iter(match=pattern, count=1000)])
        if not found:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for key in found:
                pipe.hgetall(key)
            values = await pipe.execute()
        return {key[len(prefix):]: value for key, value in zip(found, values, strict=True) if value}

    async def _read_fast(self, symbols: list[str]) -> list[Any]:
        keys = self._keys
        async with self._client.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.hgetall(keys.latest_quote(symbol))
                pipe.hgetall(keys.cache(symbol))
            pipe.hgetall(keys.cache(PORTFOLIO))
            pipe.get(keys.risk_halt())  # two GETs: redis-py's cluster pipeline refuses MGET, even in one slot
            pipe.get(keys.risk_reduce_only())
            pipe.xread({keys.order_events(): self._events_id or "0-0"}, count=EVENTS_PER_POLL)
            pipe.smembers(keys.open_orders())
            return list(await pipe.execute())

    async def _open_orders(self, ids: set[str]) -> list[Fields]:
        if not ids:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for coid in sorted(ids):
                pipe.hgetall(self._keys.order(coid))
            orders: list[Fields] = await pipe.execute()
        return sorted((o for o in orders if o), key=lambda o: (o.get("symbol", ""), o.get("side", ""),
                                                                o.get("limit_price", "")))

    async def _seed_events(self) -> None:
        """Start from the tail of the event stream: the last fills for the table, then only new events."""
        tail = await self._client.xrevrange(self._keys.order_events(), count=self._state.max_fills * 5)
        self._state.fills.clear()
        for _, fields in reversed(tail):
            if fields.get("event") in FILL_EVENTS:
                self._state.fills.appendleft(fields)
        self._events_id = tail[0][0] if tail else "0-0"

    def _take_events(self, reply: Any) -> dict[str, dict[str, float]]:
        """Count new execution events, keep the fills; the latest fill price per symbol and side."""
        marks: dict[str, dict[str, float]] = {}
        for _, entries in reply or ():
            for entry_id, fields in entries:
                self._events_id = entry_id
                event = fields.get("event", "")
                self._state.order_events[event] += 1
                if event in FILL_EVENTS:
                    self._state.fills.appendleft(fields)
                    price = _num(fields.get("fill_price"))
                    if price is not None:
                        marks.setdefault(fields.get("symbol", ""), {})[fields.get("side", "")] = price
        return marks

    # deriving --------------------------------------------------------------------------

    def _forget_unfollowed(self, symbols: list[str]) -> None:
        """Drop what is kept for symbols no longer followed: their quote age would grow forever
        (a false "feed stale") and their series would hold memory nobody looks at."""
        state, followed = self._state, set(symbols)
        for table in (state.quotes, state.cache, state.series):
            for symbol in [s for s in table if s not in followed]:
                del table[symbol]

    def _symbols(self, now_ns: int) -> list[str]:
        """Streamed symbols first, then demanded, held and asked-for ones, up to ``max_symbols``."""
        state = self._state
        streamed = [s for p in state.processes_of(["hub"]) if not p.gone
                    for s in p.fields.get("symbols", "").split(",") if s]
        for symbol, asked_ns in list(state.requested.items()):
            if now_ns - asked_ns > REQUEST_TTL_NS:
                del state.requested[symbol]
        ordered = dict.fromkeys([*streamed, *sorted(self._wanted), *sorted(state.positions), *state.requested])
        return list(ordered)[: self._settings.max_symbols]


def _best_own_quotes(orders: list[Fields]) -> dict[str, tuple[float | None, float | None]]:
    """Per symbol, our highest resting buy and lowest resting sell limit."""
    best: dict[str, tuple[float | None, float | None]] = {}
    for o in orders:
        price = _num(o.get("limit_price"))
        if price is None:
            continue
        bid, ask = best.get(o.get("symbol", ""), (None, None))
        if o.get("side") == "buy":
            bid = price if bid is None else max(bid, price)
        else:
            ask = price if ask is None else min(ask, price)
        best[o.get("symbol", "")] = (bid, ask)
    return best


def _sample(now_ns: int, quote: Fields, cache: Fields, ours: tuple[float | None, float | None],
            fills: dict[str, float]) -> tuple[float | None, ...]:
    """One chart point in the order of state.PRICE_COLUMNS."""
    return (now_ns / 1e6, _price(quote.get("bid")), _price(quote.get("ask")), _num(cache.get("fair_price")),
            ours[0], ours[1], fills.get("buy"), fills.get("sell"), _num(cache.get("volatility")),
            _num(cache.get("spread")))


def _num(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _price(value: str | None) -> float | None:
    """A quote side: 0 means no quote on that side."""
    number = _num(value)
    return number if number else None
