"""Run one agent process as a member of a sharded group (``--shard K/N`` or ``--shard auto``).

The agent's instruments become its *share* of a universe: the configured
``--instruments``, or the Redis set named by ``--instruments-from`` (re-read at
every renewal, so symbols added later are served too). A
:class:`~agents.runtime.AgentRuntime` runs over the current share; when the
share changes (a member joined, left or died; the universe changed) that
runtime stops cleanly and a new one starts over the new share, priming from
the latest quotes. The runtime itself knows nothing of sharding.

Each member heartbeats as ``tf:agent:<name>.<member>`` (``spotter.2of4``,
``spotter.host-1234``) with its share in ``instruments``; the group is
``<name>``. ``on_start``/``on_stop`` run at every reshard.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket

import redis.asyncio as aioredis

from agents.base import TradingAgent
from agents.membership import Membership, ShardSpec, parse_shard, share_of, static_share
from agents.runtime import AgentRuntime
from agents.trading import TradingClient
from core.clock import Clock, SystemClock
from core.connection import ProcessSettings, redis_client, redis_up_before_stop
from core.settings import parse_symbols

log = logging.getLogger(__name__)


def is_sharded(agent: TradingAgent) -> bool:
    return bool(agent.settings.shard or agent.settings.instruments_from)


class ShareSource:
    """Computes this member's share: universe (configured or from a Redis set) x membership."""

    def __init__(self, client: aioredis.Redis, agent: TradingAgent, spec: ShardSpec | None,
                 membership: Membership | None) -> None:
        self._client = client
        self._configured = agent.settings.instruments
        self._universe_key = agent.settings.instruments_from
        self._spec = spec
        self.membership = membership

    async def universe(self) -> tuple[str, ...]:
        if not self._universe_key:
            return self._configured
        members = await self._client.smembers(self._universe_key)
        return parse_symbols(sorted(members), f"instruments_from {self._universe_key}")

    async def share(self) -> tuple[str, ...]:
        symbols = await self.universe()
        if self._spec is None:
            return tuple(sorted(symbols))
        if self.membership is None:
            return static_share(self._spec, symbols)
        live = await self.membership.renew()
        return share_of(self.membership.member, symbols, live)


def member_id(spec: ShardSpec | None) -> str:
    """Static shards are named by index; auto members by host and pid (unique while alive)."""
    if spec is not None and not spec.auto:
        return spec.label
    return f"{socket.gethostname()}-{os.getpid()}"


async def serve_sharded(agent: TradingAgent, settings: ProcessSettings, stop: asyncio.Event,
                        clock: Clock | None = None) -> None:
    """Serve this member's share until ``stop``, re-sharding whenever the share changes."""
    clock = clock or SystemClock()
    spec = parse_shard(agent.settings.shard)
    group, member = agent.name, member_id(spec)
    client = redis_client(settings.redis_spec)
    raw_client = redis_client(settings.redis_spec, decode=False)
    membership = None
    try:
        if not await redis_up_before_stop(client, settings, stop):
            return
        if spec is not None and spec.auto:
            membership = Membership(client, settings.keys.agent_members(group), member,
                                    agent.settings.shard_lease_ns // 1_000_000)
        source = ShareSource(client, agent, spec, membership)
        agent.name = f"{group}.{member}"
        trading = TradingClient(client, settings.keys, agent.name, clock)
        agent.attach_trading(trading)
        try:
            await _reshard_loop(agent, source, stop, client, raw_client, settings, clock)
        finally:
            with contextlib.suppress(Exception):
                await trading.aclose()
            if membership is not None:
                with contextlib.suppress(Exception):
                    await membership.leave()
    finally:
        with contextlib.suppress(Exception):
            await raw_client.aclose()
        with contextlib.suppress(Exception):
            await client.aclose()


async def _reshard_loop(agent: TradingAgent, source: ShareSource, stop: asyncio.Event, client: aioredis.Redis,
                        raw_client: aioredis.Redis, settings: ProcessSettings, clock: Clock) -> None:
    share = await source.share()
    interval_s = source.membership.renew_interval_s if source.membership else agent.settings.shard_lease_ns / 4e9
    while not stop.is_set():
        agent.settings = dataclasses.replace(agent.settings, instruments=share)
        runtime = AgentRuntime(agent, client=client, raw_client=raw_client, keys=settings.keys, clock=clock)
        log.info("member %s serves %d symbols: %s", agent.name, len(share), ",".join(share) or "-")
        inner = asyncio.Event()
        watcher = asyncio.create_task(_watch(source, share, stop, inner, interval_s), name=f"{agent.name}:shard")
        try:
            await runtime.run(inner)
        finally:
            inner.set()
            new_share = await watcher  # re-raises a Redis failure of the renewal
        share = new_share


async def _watch(source: ShareSource, share: tuple[str, ...], stop: asyncio.Event, inner: asyncio.Event,
                 interval_s: float) -> tuple[str, ...]:
    """Renew every interval; set ``inner`` (restart) when the share changes, ``stop`` is set or renewal fails."""
    try:
        while not inner.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, inner), interval_s)
            if stop.is_set() or inner.is_set():
                return share
            new = await source.share()
            if new != share:
                return new
        return share
    finally:
        inner.set()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
