"""Symbol demand: what the hub streams beyond ``--symbols``, and when that demand lapses.

Agents announce their instruments by adding them to ``tf:symbols:wanted`` and
publishing on ``tf:ctl:symbols``; each agent's heartbeat (``tf:agent:<name>``)
also lists them in its ``wants`` field. The heartbeat expires when the agent is
gone, so the hub treats a member of the wanted set that no live heartbeat wants
for ``DEMAND_GRACE_NS`` as lapsed and removes it (an operator's ``SADD`` lasts
that long too: use ``--symbols`` for standing demand).

The set is input, not configuration: a member that is not a valid symbol
(``BAD SYM``, ``*``, 33 characters, bytes that are not UTF-8) is skipped,
counted in the hub heartbeat (``bad_wanted``) and logged once; the rest streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from core import names
from core.cluster import retryable
from core.heartbeat import HEARTBEAT_TTL_MS
from core.keys import Keys
from core.pubsub import follow_channels
from core.tasks import stopped_within
from hub.marketdata.sources import Source

log = logging.getLogger(__name__)

#: How often the symbol-demand loop looks at the stop event.
DEMAND_POLL_S = 0.2
#: How often demand is re-read in full (new members without a notice, lapsed ones).
DEMAND_REFRESH_NS = 2_000_000_000
#: A wanted symbol that no live agent's heartbeat lists for this long is removed: one heartbeat
#: TTL, so an agent between its SADD and its first beat, or one that died a moment ago, is covered.
DEMAND_GRACE_NS = HEARTBEAT_TTL_MS * 1_000_000


class SymbolDemand:
    """The union of configured symbols and those agents asked for (``tf:symbols:wanted``).

    ``raw_client`` must not decode replies: members and heartbeats are untrusted bytes.
    """

    def __init__(self, raw_client: aioredis.Redis, keys: Keys, configured: Sequence[str]) -> None:
        self._client = raw_client
        self._keys = keys
        self._configured = frozenset(configured)
        self.symbols: tuple[str, ...] = tuple(configured)
        self._bad: set[bytes] = set()
        self._unbacked_since_ns: dict[bytes, int] = {}
        self.lapsed = 0
        self._changing = asyncio.Lock()
        #: the streamed symbols the last :meth:`expire` took out of ``symbols`` (for the source)
        self.dropped: tuple[str, ...] = ()

    @property
    def bad_members(self) -> int:
        """Distinct invalid members of the wanted set seen so far."""
        return len(self._bad)

    async def refresh(self) -> tuple[str, ...]:
        """Read the wanted set; return the symbols that are new."""
        wanted = {s for s in map(self._symbol, await self._client.smembers(self._keys.wanted_symbols())) if s}
        new = tuple(s for s in sorted(wanted) if s not in self.symbols)
        self.symbols += new
        return new

    def _symbol(self, member: bytes) -> str | None:
        try:
            return names.check_symbol(member.decode(), "member")
        except (UnicodeDecodeError, names.NameRuleError) as e:
            if member not in self._bad:  # once per member: the set is read every refresh
                self._bad.add(member)
                reason = str(e) if isinstance(e, names.NameRuleError) else f"member {names.shown(member)} is not UTF-8"
                log.warning("skipping a bad member of %s: %s", self._keys.wanted_symbols(), reason)
            return None

    async def live_wants(self) -> set[str]:
        """Every symbol a live agent's heartbeat lists in ``wants``, and the gateway's: the symbols its
        working orders need quotes for (a sim broker matches them only on quotes that keep coming)."""
        keys = [k for pattern in (self._keys.agent_pattern(), self._keys.gateway_pattern())
                async for k in self._client.scan_iter(match=pattern, count=500)]
        if not keys:
            return set()
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, "wants")
            values = await pipe.execute()
        return {s for v in values if isinstance(v, bytes) for s in v.decode(errors="replace").split(",") if s}

    async def expire(self, now_ns: int | None = None) -> list[str]:
        """Remove members no live heartbeat has wanted for ``DEMAND_GRACE_NS``; return them. Those that
        were streamed (not ``--symbols``) leave ``symbols`` and are in ``dropped``."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        members = await self._client.smembers(self._keys.wanted_symbols())
        backed = await self.live_wants() | self._configured
        for member in set(self._unbacked_since_ns) - members:
            del self._unbacked_since_ns[member]
        due = []
        for member in members:
            if member.decode(errors="replace") in backed:
                self._unbacked_since_ns.pop(member, None)
            elif now_ns - self._unbacked_since_ns.setdefault(member, now_ns) >= DEMAND_GRACE_NS:
                due.append(member)
        self.dropped = ()
        if not due:
            return []
        await self._client.srem(self._keys.wanted_symbols(), *due)
        # an agent that claimed its heartbeat while we looked has added its symbols already: put them back
        backed = await self.live_wants()
        back = [m for m in due if m.decode(errors="replace") in backed]
        if back:
            await self._client.sadd(self._keys.wanted_symbols(), *back)
        lapsed = sorted(names.shown(m) if m in self._bad else m.decode() for m in due if m not in back)
        for member in due:
            self._unbacked_since_ns.pop(member, None)
        self.lapsed += len(lapsed)
        self.dropped = tuple(s for s in self.symbols if s in lapsed and s not in self._configured)
        self.symbols = tuple(s for s in self.symbols if s not in self.dropped)
        if lapsed:
            log.info("no live agent wants %s any more: removed from %s", ",".join(lapsed),
                     self._keys.wanted_symbols())
        return lapsed

    async def follow(self, source: Source, stop: asyncio.Event) -> None:
        """Add newly wanted symbols to the live source as agents announce them; expire lapsed demand."""

        async def announced(_data: object = None) -> None:  # also after each (re)subscription: what came meanwhile
            await self._add_new(source)

        tasks = [asyncio.ensure_future(follow_channels(self._client, [self._keys.symbols_control_channel()],
                                                       announced, stop, on_subscribed=announced,
                                                       poll_s=DEMAND_POLL_S)),
                 asyncio.ensure_future(self._refresh_every(source, stop))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure of either ends the hub, as before
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _refresh_every(self, source: Source, stop: asyncio.Event) -> None:
        while not await stopped_within(stop, DEMAND_REFRESH_NS / 1e9):
            await self._refresh_and_expire(source)

    async def _refresh_and_expire(self, source: Source) -> None:
        """The periodic pass; a node down mid-failover (it scans every master) skips one pass, not the hub."""
        try:
            await self._add_new(source)
            async with self._changing:  # an announcement in between must not be dropped with the lapsed
                await self.expire()
                if self.dropped:
                    log.info("no longer streaming %s", ",".join(self.dropped))
                    await source.remove_symbols(self.dropped)
        except Exception as e:
            if not retryable(e):
                raise
            log.warning("symbol demand not refreshed (%s); trying again in %.0f s", e, DEMAND_REFRESH_NS / 1e9)

    async def _add_new(self, source: Source) -> None:
        async with self._changing:  # the periodic pass and an announcement must not both add a symbol
            new = await self.refresh()
            if new:
                log.info("agents asked for %s: adding to the stream", ",".join(new))
                await source.add_symbols(new)
