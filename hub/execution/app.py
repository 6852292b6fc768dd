"""The gateway process: settings, wiring of store, risk, broker and heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from core.clock import SystemClock
from core.cluster import is_cluster, refresh_slots, retryable
from core.connection import ProcessSettings, redis_client, redis_up_before_stop, wait_for_redis
from core.errors import ConfigError, RedisUnavailableError
from core.failover import FAILOVER_WAIT_S
from core.heartbeat import Heartbeat
from core.keys import Keys
from core.ratelimit import RedisTokenBucket
from core.settings import build, check_name_setting, format_duration_ns, option, pick
from core.tasks import finished_before_stop, run_until_stopped
from hub.execution.brokers.alpaca_settings import AlpacaBrokerSettings
from hub.execution.brokers.base import Broker
from hub.execution.brokers.sim import SimBroker, SimBrokerSettings
from hub.execution.gateway import Gateway
from hub.execution.reconcile import DEFAULT_LOOKBACK_NS, reconcile_with_broker
from hub.execution.retention import Retention
from hub.execution.risk import RiskChecks, RiskSettings
from hub.execution.store import OrderStore

log = logging.getLogger(__name__)

BrokerName = Literal["sim", "alpaca"]


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    broker: BrokerName = option("sim", help="where orders go: sim (fills against bus quotes) or alpaca")
    name: str = option("gateway", help="name of this gateway (heartbeat tf:gateway:<name>, consumer name)")
    intent_batch: int = option(100, help="intents read from the stream at a time")
    risk_poll_ns: int = option(100_000_000, key="risk_poll", duration=True,
                               help="how often the kill switch and reduce-only keys are read")
    order_retention_ns: int = option("7d", key="order_retention", duration=True,
                                     help="ended orders' hashes are removed from Redis this long after their "
                                          "last change (0: keep every order; else at least 1d)")

    def __post_init__(self) -> None:
        check_name_setting(self.name, "name")
        if not 1 <= self.intent_batch <= 10_000:
            raise ConfigError("setting 'intent_batch' must be in [1, 10000]")
        if not 1_000_000 <= self.risk_poll_ns <= 1_000_000_000:
            raise ConfigError("setting 'risk_poll' must be between 1ms and 1s (the kill switch must act within 1s)")
        if 0 < self.order_retention_ns < DEFAULT_LOOKBACK_NS:
            raise ConfigError(f"setting 'order_retention' must be 0 (keep every order) or at least "
                              f"{format_duration_ns(DEFAULT_LOOKBACK_NS)}: reconcile asks the broker for that "
                              "long of orders and would take a removed one for one Redis lost")


@dataclass(frozen=True)
class GatewayConfig:
    process: ProcessSettings
    gateway: GatewaySettings
    risk: RiskSettings
    sim: SimBrokerSettings
    alpaca: AlpacaBrokerSettings


def settings_classes() -> list[type]:
    return [ProcessSettings, GatewaySettings, RiskSettings, SimBrokerSettings, AlpacaBrokerSettings]


def gateway_config(values: Mapping[str, Any]) -> GatewayConfig:
    config = GatewayConfig(*(build(cls, pick(values, cls)) for cls in settings_classes()))
    if config.gateway.broker == "alpaca":
        config.alpaca.require_keys()
    return config


def make_broker(config: GatewayConfig, store: OrderStore, client: aioredis.Redis,
                raw_client: aioredis.Redis) -> Broker:
    keys = config.process.keys
    if config.gateway.broker == "sim":
        return SimBroker(store, raw_client, keys, config.sim)
    from hub.execution.brokers.alpaca import PACER_BURST, AlpacaBroker  # imports the SDK only when used

    pacer = RedisTokenBucket(client, keys.broker_rate_bucket(), config.alpaca.requests_per_min / 60.0, PACER_BURST)
    return AlpacaBroker(store, config.alpaca, pacer)


def latency_summary_us(samples: list[int]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    return {"ack_p50_us": round(statistics.median(ordered) / 1e3, 1),
            "ack_p99_us": round(ordered[int(len(ordered) * 0.99) - 1 if len(ordered) > 1 else 0] / 1e3, 1)}


async def run_gateway(config: GatewayConfig, stop: asyncio.Event) -> None:
    settings, keys, clock = config.process, config.process.keys, SystemClock()
    # Under Sentinel these clients do not retry through a failover: the gateway must see it (below).
    client = redis_client(settings.redis_spec, ride_failover=False)
    raw_client = redis_client(settings.redis_spec, decode=False, ride_failover=False)
    try:
        if not await redis_up_before_stop(client, settings, stop):
            return
        current: list[tuple[Gateway, OrderStore, Broker, RiskChecks, Retention]] = []
        heartbeat = Heartbeat(client, keys.gateway(config.gateway.name), clock,
                              lambda: heartbeat_fields(config, *current[-1]) if current else {"kind": "gateway"})
        await heartbeat.claim()  # one gateway per namespace: the store is a single writer
        try:
            while not await _serve(config, client, raw_client, heartbeat, current, stop):
                # A promoted replica may lack the old master's last writes (replication is asynchronous):
                # memory is dropped and everything is read again from the new master, as a restart would,
                # and the unacknowledged intents are replayed (idempotently by client_order_id).
                if not await _master_back(client, raw_client, settings, stop):
                    return
                # the name first: the beat lapsed while we waited, and a second writer must not rebuild too
                await heartbeat.beat()
                log.warning("gateway %s: Redis master back; reloading orders from it and replaying intents",
                            config.gateway.name)
        finally:
            with contextlib.suppress(Exception):
                await heartbeat.release()
    finally:
        await raw_client.aclose()
        await client.aclose()


async def _serve(config: GatewayConfig, client: aioredis.Redis, raw_client: aioredis.Redis, heartbeat: Heartbeat,
                 current: list[tuple[Gateway, OrderStore, Broker, RiskChecks, Retention]],
                 stop: asyncio.Event) -> bool:
    """Load state, reconcile, handle intents until ``stop`` (True), or until a Sentinel-managed master is
    lost (False: the caller waits for the new master and serves again; anything else raises)."""
    settings, keys, clock = config.process, config.process.keys, SystemClock()
    store = OrderStore(client, keys, clock)
    broker = make_broker(config, store, client, raw_client)
    # The order-rate bucket lives in Redis: a restarted gateway does not start with a full burst.
    rate = RedisTokenBucket(client, keys.order_rate_bucket(), config.risk.order_rate, config.risk.order_burst)
    risk = RiskChecks(config.risk, clock, rate)
    gateway = Gateway(client, keys, store, broker, risk, clock,
                      raw_client=raw_client, consumer=config.gateway.name, batch=config.gateway.intent_batch,
                      poll_ns=config.gateway.risk_poll_ns)
    retention = Retention(client, keys, store, config.gateway.order_retention_ns)
    current[:] = [(gateway, store, broker, risk, retention)]
    serving = asyncio.Event()
    try:
        await gateway.start()
        await reconcile_with_broker(store, broker, client, keys)  # nothing at the broker is forgotten
        log.info("gateway %s ready: broker %s, %d open orders", config.gateway.name, config.gateway.broker,
                 len(store.open))
        await run_until_stopped(serving, _until(stop, serving), gateway.run_intake(serving),
                                gateway.watch_risk_state(serving), broker.run(serving), heartbeat.run(serving),
                                retention.run(serving), grace_s=3.0)
        return True
    except Exception as e:
        if stop.is_set() or settings.redis_spec.topology not in ("sentinel", "cluster") or not retryable(e):
            raise
        log.warning("gateway %s lost the Redis master (%s); waiting for the promoted replica", config.gateway.name, e)
        return False
    finally:
        with contextlib.suppress(Exception):
            await broker.close()
        log.info("gateway %s stopped: %s", config.gateway.name, vars_of(gateway))


async def _master_back(client: aioredis.Redis, raw_client: aioredis.Redis, settings: ProcessSettings,
                       stop: asyncio.Event) -> bool:
    """True once the promoted replica answers (RedisUnavailableError after FAILOVER_WAIT_S); False if the
    process is told to stop meanwhile."""
    if is_cluster(client):
        return await finished_before_stop(stop, _orders_slot_served(client, raw_client, settings.keys))
    for each in (client, raw_client):  # idle connections may still point at the demoted old master
        await each.connection_pool.disconnect()
    return await finished_before_stop(stop, wait_for_redis(client, settings.redis_spec,
                                                           int(FAILOVER_WAIT_S * 1e9)))


async def _orders_slot_served(client: aioredis.Redis, raw_client: aioredis.Redis, keys: Keys) -> None:
    """On a cluster any other master may answer at once: back means the ``{orders}`` slot's master (every
    execution key lives there) answers both clients, with the slot map read again between tries."""
    deadline_s = time.monotonic() + FAILOVER_WAIT_S
    while True:
        try:
            for each in (client, raw_client):
                await each.exists(keys.order_intents())
            return
        except Exception as e:
            if not retryable(e) or time.monotonic() >= deadline_s:
                raise RedisUnavailableError(f"the {{orders}} slot is not served again after "
                                            f"{FAILOVER_WAIT_S:.0f}s: {e}") from e
        await asyncio.sleep(0.2)
        for each in (client, raw_client):
            await refresh_slots(each)


async def _until(stop: asyncio.Event, serving: asyncio.Event) -> None:
    """Ends the serving tasks when the process stops (``serving`` is also set when one of them fails)."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(serving.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    serving.set()


def heartbeat_fields(config: GatewayConfig, gateway: Gateway, store: OrderStore, broker: Broker,
                     risk: RiskChecks, retention: Retention) -> dict[str, str | int | float]:
    return {"kind": "gateway", "broker": config.gateway.broker, "halted": int(gateway.halted),
            "orders_removed": retention.removed,
            # the symbols orders work on: the hub keeps streaming them after the agent that wanted them left
            "wants": ",".join(sorted(symbol for symbol, orders in store.by_symbol.items() if orders)),
            "reduce_only": int(gateway.reduce_only), "open_orders": len(store.open),
            **vars_of(gateway), **broker.status(), **latency_summary_us(gateway.stats.ack_latency_ns),
            **dashboard_fields(gateway, risk)}


def vars_of(gateway: Gateway) -> dict[str, int]:
    stats = gateway.stats
    return {"intents": stats.intents, "submitted": stats.submitted, "rejected": stats.rejected,
            "duplicates": stats.duplicates, "reused_ids": stats.reused_ids, "refused": stats.refused,
            "bad_intents": stats.bad_intents, "poison": stats.poison, "replayed": stats.replayed,
            "adopted": stats.adopted}


def dashboard_fields(gateway: Gateway, risk: RiskChecks) -> dict[str, str | int | float]:
    """What the dashboard and its metrics need beyond the counters: the ack-latency histogram,
    rejections per risk check (``rejected:<check>``) and the limits (``limit:<setting>``)."""
    limits = {f"limit:{name}": value for name, value in dataclasses.asdict(risk.settings).items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return {**gateway.stats.ack_ms.fields("ack_ms"), **limits,
            **{f"rejected:{check}": n for check, n in risk.rejections_by_check.items()}}
