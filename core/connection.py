"""Settings every process shares, and the Redis connection built from them."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.cluster import cluster_client, is_cluster_url, parse_cluster_url, redact_cluster_url
from core.errors import ConfigError, RedisUnavailableError
from core.keys import Keys
from core.sentinel import is_sentinel_url, parse_sentinel_url, resolve_master, sentinel_client
from core.settings import option

log = logging.getLogger(__name__)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and errors."""
    if is_cluster_url(url) or is_sentinel_url(url):
        return redact_cluster_url(url)  # several hosts: urlsplit cannot parse them
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}{port}"))


@dataclass(frozen=True, kw_only=True)
class ProcessSettings:
    """Where Redis is, which namespace to use, how much to log."""

    redis_url: str = option("redis://127.0.0.1:6379/0", help="Redis URL", env=("REDIS_URL",), secret=True)
    namespace: str = option("tf", help="prefix of every Redis key, so strategies can share a Redis")
    log_level: LogLevel = option("INFO", help="DEBUG, INFO, WARNING or ERROR")
    redis_wait_ns: int = option("10s", key="redis_wait", duration=True,
                                help="how long to wait for Redis at start before giving up")

    def __post_init__(self) -> None:
        if is_cluster_url(self.redis_url):
            parse_cluster_url(self.redis_url)  # validated before any I/O, like the rest
        elif is_sentinel_url(self.redis_url):
            parse_sentinel_url(self.redis_url)
        elif urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"setting 'redis_url': {redact_url(self.redis_url)!r} is not a redis:// URL; "
                              "use e.g. redis://127.0.0.1:6379/0")
        if not self.namespace or ":" in self.namespace or " " in self.namespace:
            raise ConfigError(f"setting 'namespace': {self.namespace!r} must be non-empty, without ':' or spaces")

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace, cluster=is_cluster_url(self.redis_url))

    @property
    def display_url(self) -> str:
        return redact_url(self.redis_url)


def redis_client(url: str, *, decode: bool = True) -> aioredis.Redis:
    """An asyncio client (a RedisCluster for ``redis+cluster://``, see core.cluster); no I/O until first use."""
    if is_cluster_url(url):
        return cluster_client(url, decode=decode)  # same command surface
    if is_sentinel_url(url):
        return sentinel_client(url, decode=decode)
    return aioredis.Redis.from_url(url, decode_responses=decode, health_check_interval=0,
                                   socket_keepalive=True)


async def wait_for_redis(client: aioredis.Redis, url: str, wait_ns: int) -> None:
    """Ping until Redis answers, with capped backoff; raise RedisUnavailableError at the deadline."""
    deadline = time.monotonic() + wait_ns / 1e9
    delay_s = 0.05
    while True:
        try:
            await client.ping()
            await resolve_master(client, url)  # Sentinel only: the lean RESP paths need the master's address
            return
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            if time.monotonic() >= deadline:
                raise RedisUnavailableError(
                    f"cannot reach Redis at {redact_url(url)} ({e}); start it (make run does) "
                    "or point --redis-url / REDIS_URL at a running server") from None
            log.debug("redis not ready (%s); retrying in %.2fs", e, delay_s)
        except RedisError as e:
            raise RedisUnavailableError(f"Redis at {redact_url(url)} refused us: {e}") from None
        await asyncio.sleep(delay_s * (0.5 + random.random()))
        delay_s = min(delay_s * 2, 1.0)
