"""The hub process: one source, one publisher, symbol demand, a heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from core.clock import SystemClock
from core.connection import ProcessSettings, redis_client, redis_up_before_stop
from core.errors import ConfigError
from core.heartbeat import Heartbeat
from core.keys import Keys
from core.settings import build, check_name_setting, option, pick
from core.tasks import run_until_stopped
from hub.marketdata.demand import SymbolDemand
from hub.marketdata.leader import LeaderLock, stand_by
from hub.marketdata.publisher import Publisher
from hub.marketdata.recording import Recorder
from hub.marketdata.sources import SOURCES

log = logging.getLogger(__name__)

SourceName = Literal["sim", "alpaca", "replay"]


@dataclass(frozen=True, kw_only=True)
class HubSettings:
    source: SourceName = option("sim", help="where quotes come from: sim, alpaca or replay")
    symbols: tuple[str, ...] = option((), help="symbols to stream from the start (agents can add more)")
    name: str = option("hub", help="name of this hub (heartbeat tf:hub:<name>)")
    record: str = option("", help="record every published quote with its timestamps to this file "
                                  "(replay it with --source replay --file FILE)")
    leader_lock: str = option("", help="hubs with the same lock name elect one leader that streams; "
                                       "the others stand by and take over when it dies (tf:leader:<name>)")
    leader_lease_ns: int = option("5s", key="leader_lease", duration=True,
                                  help="--leader-lock: a dead leader is replaced within about this long")

    def __post_init__(self) -> None:
        check_name_setting(self.name, "name")
        if self.source not in SOURCES:
            raise ConfigError(f"setting 'source': {self.source!r} is not available; "
                              f"choose one of {', '.join(sorted(SOURCES))}")
        if self.leader_lock and (":" in self.leader_lock or self.leader_lease_ns < 300_000_000):
            raise ConfigError(f"setting 'leader_lock' {self.leader_lock!r} / 'leader_lease': the name has no ':' "
                              "and the lease is at least 300ms, e.g. --leader-lock alpaca-main --leader-lease 5s")


@dataclass(frozen=True)
class HubConfig:
    process: ProcessSettings
    hub: HubSettings
    source: Any


def hub_config(values: Mapping[str, Any]) -> HubConfig:
    """Build every settings object the hub needs from gathered values."""
    hub = build(HubSettings, pick(values, HubSettings))
    source_cls, _ = SOURCES[hub.source]
    source: Any = build(source_cls, pick(values, source_cls))
    grace_ns = getattr(source, "connect_grace_ns", None)
    if hub.leader_lock and grace_ns is not None and hub.leader_lease_ns >= grace_ns:
        raise ConfigError("setting 'leader_lease' must stay below 'connect_grace': a standby taking over "
                          "must still be inside Alpaca's 406 grace while the dead leader's session expires")
    return HubConfig(build(ProcessSettings, pick(values, ProcessSettings)), hub, source)


def settings_classes() -> list[type]:
    return [ProcessSettings, HubSettings, *(cls for cls, _ in SOURCES.values())]


class RateMeter:
    """Quotes per second between heartbeats."""

    def __init__(self) -> None:
        self._last = (time.monotonic_ns(), 0)

    def rate(self, total: int) -> float:
        now_ns, then = time.monotonic_ns(), self._last
        self._last = (now_ns, total)
        elapsed_s = (now_ns - then[0]) / 1e9
        return round((total - then[1]) / elapsed_s, 1) if elapsed_s > 0 else 0.0


async def run_hub(config: HubConfig, stop: asyncio.Event) -> None:
    """Stream quotes into Redis until ``stop`` is set."""
    settings, keys = config.process, config.process.keys
    client = redis_client(settings.redis_spec)
    raw_client = redis_client(settings.redis_spec, decode=False)
    try:
        if not await redis_up_before_stop(client, settings, stop):
            return
        lock = _leader_lock(client, keys, config.hub)
        if lock is not None and not await stand_by(lock, _standby_heartbeat(client, keys, config.hub, lock), stop):
            return
        demand = SymbolDemand(raw_client, keys, config.hub.symbols)
        await demand.refresh()
        _, factory = SOURCES[config.hub.source]
        source = factory(demand.symbols, config.source)
        publisher = Publisher(raw_client, keys)
        meter = RateMeter()
        heartbeat = Heartbeat(client, keys.hub(config.hub.name), SystemClock(), lambda: {
            "kind": "hub", "source": config.hub.source, "symbols": ",".join(demand.symbols),
            "quotes": publisher.stats.quotes, "messages": publisher.stats.messages,
            "dropped": publisher.stats.dropped, "rate_qps": meter.rate(publisher.stats.quotes),
            "bad_wanted": demand.bad_members, "lapsed_wanted": demand.lapsed,
            **{f"published:{symbol}": n for symbol, n in publisher.stats.by_symbol.items()},
            **source.status(), **(lock.status() if lock else {})})
        await heartbeat.claim()
        recorder = Recorder(config.hub.record, config.hub.source) if config.hub.record else None
        if recorder is not None:
            publisher.listeners.append(recorder)
        log.info("hub %s streaming %s from %s", config.hub.name, ",".join(demand.symbols) or "-", config.hub.source)
        leading = [lock.hold(stop)] if lock is not None else []
        try:
            await run_until_stopped(stop, source.run(publisher, stop), publisher.run(stop), heartbeat.run(stop),
                                    demand.follow(source, stop), *leading, grace_s=2.0)
        finally:
            if lock is not None:
                await lock.release()
            if recorder is not None:
                recorder.close()
            with contextlib.suppress(Exception):
                await heartbeat.release()
            log.info("hub %s stopped after %d quotes", config.hub.name, publisher.stats.quotes)
    finally:
        await raw_client.aclose()
        await client.aclose()


def _leader_lock(client: aioredis.Redis, keys: Keys, hub: HubSettings) -> LeaderLock | None:
    if not hub.leader_lock:
        return None
    return LeaderLock(client, keys.hub_leader(hub.leader_lock), uuid.uuid4().hex, hub.leader_lease_ns // 1_000_000)


def _standby_heartbeat(client: aioredis.Redis, keys: Keys, hub: HubSettings, lock: LeaderLock) -> Heartbeat:
    return Heartbeat(client, keys.hub(hub.name), SystemClock(),
                     lambda: {"kind": "hub", "source": hub.source, **lock.status()})
