"""Settings every process shares, and the Redis connection built from them."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.cluster import cluster_client, is_cluster_url, parse_cluster_url
from core.errors import RedisUnavailableError
from core.failover import RetryUnlessRefused
from core.keys import Keys
from core.redis_spec import RedisSpec, parse_redis_url, read_password_file
from core.refusals import redis_config_error
from core.sentinel import is_sentinel_url, parse_sentinel_url, sentinel_client
from core.settings import check_name_setting, format_duration_ns, option
from core.tasks import finished_before_stop

log = logging.getLogger(__name__)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and errors (also for URLs that do not parse)."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", url)


# Greedy to the last "@": a password may hold "/" or "@"; redacting too much is the safe side.
_PASSWORD_IN_URL = re.compile(r"^([a-z+]+://[^:@/]*):.*@", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class ProcessSettings:
    """Where Redis is, which namespace to use, how much to log."""

    redis_url: str = option("redis://127.0.0.1:6379/0", help="Redis URL (see core.redis_spec for ?ssl_* options)",
                            env=("REDIS_URL",), secret=True)
    redis_password_file: str = option("", help="file holding the Redis password (keeps it off the command line)",
                                      env=("REDIS_PASSWORD_FILE",))
    namespace: str = option("tf", help="prefix of every Redis key, so strategies can share a Redis")
    log_level: LogLevel = option("INFO", help="DEBUG, INFO, WARNING or ERROR")
    redis_wait_ns: int = option("10s", key="redis_wait", duration=True,
                                help="how long to wait for Redis at start before giving up")
    #: The parsed URL plus the password file: what every client of this process is built from.
    redis_spec: RedisSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if is_cluster_url(self.redis_url):
            parse_cluster_url(self.redis_url)  # its seeds, validated before any I/O like the rest
        elif is_sentinel_url(self.redis_url):
            parse_sentinel_url(self.redis_url)
        spec = parse_redis_url(self.redis_url)
        if self.redis_password_file:
            spec = spec.with_password(read_password_file(self.redis_password_file))
        object.__setattr__(self, "redis_spec", spec)
        check_name_setting(self.namespace, "namespace")

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace, cluster=is_cluster_url(self.redis_url))

    @property
    def display_url(self) -> str:
        return self.redis_spec.display


def spec_from_env(url: str, environ: Mapping[str, str] | None = None) -> RedisSpec:
    """``url`` parsed, with the password from ``REDIS_PASSWORD_FILE`` if that is set (for library users:
    ``DataCache()`` next to a stack whose Redis has ACL users)."""
    spec = parse_redis_url(url)
    path = (os.environ if environ is None else environ).get("REDIS_PASSWORD_FILE", "")
    return spec.with_password(read_password_file(path)) if path else spec


class SpecRedis(aioredis.Redis):  # type: ignore[misc]  # redis-py is typed Any here (pyproject)
    """A redis-py client that remembers the spec it was built from, so the lean RESP client can share it."""

    spec: RedisSpec


def redis_client(target: str | RedisSpec, *, decode: bool = True, ride_failover: bool = True) -> SpecRedis:
    """An asyncio client for a spec (or a URL, parsed by core.redis_spec); no I/O until first use.
    A cluster spec gives a RedisCluster (core.cluster), a Sentinel spec the master's client, which
    retries through a failover unless ``ride_failover`` is False (see core.sentinel.sentinel_client)."""
    spec = parse_redis_url(target) if isinstance(target, str) else target
    if spec.topology == "cluster":
        return cluster_client(spec.seed_url, decode=decode, password=spec.password,  # type: ignore[no-any-return]
                              node_kwargs=spec.node_kwargs(), ride_failover=ride_failover)
    if spec.topology == "sentinel":
        # No .spec on this client: the lean paths ask its pool for the current master (core.sentinel).
        return sentinel_client(spec.seed_url, decode=decode, password=spec.password,  # type: ignore[no-any-return]
                               node_kwargs=spec.node_kwargs(), ride_failover=ride_failover)
    client = SpecRedis(decode_responses=decode, health_check_interval=0, socket_keepalive=True,
                       retry=RetryUnlessRefused(), **spec.redis_py_kwargs())
    client.spec = spec
    return client


def _fatal(spec: RedisSpec, error: Exception, deadline: float) -> Exception | None:
    """What a failed ping ends in: a ConfigError, RedisUnavailableError at the deadline, or None (retry)."""
    if (config_error := redis_config_error(spec, error)) is not None:
        return config_error
    if not isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError)):
        return RedisUnavailableError(f"Redis at {spec.display} refused us: {error}")
    if time.monotonic() >= deadline:
        return RedisUnavailableError(
            f"cannot reach Redis at {spec.display} ({str(error) or 'no answer in time'}); start it "
            "(make run does) or point --redis-url / REDIS_URL at a running server")
    return None


#: How long the first ping may take before the process says it is waiting: redis-py's own connect
#: retries hold a refused connection for ~4.5 s before they report it, which was silence.
ANNOUNCE_AFTER_S = 0.5


async def wait_for_redis(client: aioredis.Redis, url: str | RedisSpec, wait_ns: int) -> None:
    """Ping until Redis answers, with capped backoff; raise RedisUnavailableError at the deadline.

    Says "waiting for Redis at ..." once, as soon as the first ping is slow or fails. A refusal
    that waiting cannot cure (credentials, rights, database, TLS) raises ConfigError at once.
    """
    spec = url if isinstance(url, RedisSpec) else getattr(client, "spec", None) or parse_redis_url(url)
    deadline = time.monotonic() + wait_ns / 1e9
    delay_s = 0.05
    announced = False

    def announce(reason: object) -> None:
        nonlocal announced
        if not announced:
            log.warning("waiting for Redis at %s (up to %s): %s", spec.display, format_duration_ns(wait_ns), reason)
            announced = True

    while True:
        attempt = asyncio.ensure_future(client.ping())
        try:
            done, _ = await asyncio.wait({attempt}, timeout=ANNOUNCE_AFTER_S)
            if not done:
                announce("no answer yet")
            async with asyncio.timeout(max(deadline - time.monotonic(), ANNOUNCE_AFTER_S)):
                await attempt
            if announced:
                log.info("Redis at %s is up", spec.display)
            return
        except (RedisError, OSError) as e:  # OSError covers TimeoutError
            if (fatal := _fatal(spec, e, deadline)) is not None:
                raise fatal from None
            announce(e)
            log.debug("redis not ready (%s); retrying in %.2fs", e, delay_s)
        await asyncio.sleep(delay_s * (0.5 + random.random()))
        delay_s = min(delay_s * 2, 1.0)


async def redis_up_before_stop(client: aioredis.Redis, settings: ProcessSettings, stop: asyncio.Event) -> bool:
    """:func:`wait_for_redis` for the process's ``--redis-wait``; False if the process is told to stop first
    (a clean exit: a stop while Redis is away used to wait out the deadline, then end in SIGKILL)."""
    return await finished_before_stop(stop, wait_for_redis(client, settings.redis_spec, settings.redis_wait_ns))
