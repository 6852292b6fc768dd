"""Redis Sentinel: ``redis+sentinel://`` URLs, redis-py's Sentinel-managed client, the master for the lean paths.

URL: ``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]`` (``rediss+sentinel://``
for TLS to the Sentinels and the data nodes, with ``?ssl_*`` options as on rediss://). The hosts are
Sentinels; ``<service>`` is the monitored master's name.

A failover is ridden out in-process, within :data:`~core.failover.FAILOVER_WAIT_S`:

- redis-py clients: the SentinelConnectionPool asks the Sentinels for the master on every connect, and
  :class:`~core.failover.FailoverRetry` retries a command whose connection was lost until the promoted replica answers;
- the lean RESP paths (publisher, cache writer, agent subscription) ask the Sentinels whenever they
  (re)connect (:func:`master_address`); :class:`MasterConnection` reopens on the new master and
  :func:`through_master_failover` sends again.

Nothing is cached per process: the address is asked for at each connect, so there is no registry of pools.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from core.cluster import through_failover
from core.errors import ConfigError
from core.failover import FAILOVER_WAIT_S, FailoverRetry
from core.redis_spec import MULTI_HOST_EXAMPLES, RedisSpec, split_hosts
from core.resp import RespConnection, Subscription

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
T = TypeVar("T")


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    tls: bool
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelURL:
    parts = urlsplit(url)
    username, password, sentinels = split_hosts(url, *MULTI_HOST_EXAMPLES["sentinel"])
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError("setting 'redis_url': a Sentinel URL is redis+sentinel://host:port[,host:port]/"
                          "<master name>[/<db>], e.g. redis+sentinel://10.0.0.1:26379/mymaster")
    return SentinelURL(sentinels, path[0], int(path[1]) if len(path) == 2 else 0,
                       parts.scheme == "rediss+sentinel", username, password)


def sentinel_client(url: str, *, decode: bool = True, password: str | None = None,
                    node_kwargs: Mapping[str, Any] | None = None, ride_failover: bool = True) -> aioredis.Redis:
    """A client of the current master, found through the Sentinels; no I/O until first use.

    ``node_kwargs`` (RedisSpec.node_kwargs: CA, client certificate) reach the Sentinels and the master.
    ``ride_failover=False``: no retry at all, a lost master raises at once (the gateway rebuilds its
    state from the new master instead of carrying on from memory the old one may not have kept)."""
    spec = parse_sentinel_url(url)
    node = dict(node_kwargs) if node_kwargs is not None else {"ssl": spec.tls}
    sentinel = Sentinel(list(spec.sentinels), socket_timeout=2.0, sentinel_kwargs={"socket_timeout": 2.0, **node})
    retry = FailoverRetry() if ride_failover else Retry(NoBackoff(), 0)
    return sentinel.master_for(spec.service, decode_responses=decode, db=spec.db, username=spec.username,
                               password=password or spec.password, socket_keepalive=True, retry=retry, **node)


def is_sentinel(client: Any) -> bool:
    return isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool)


async def master_address(client: aioredis.Redis) -> RedisSpec:
    """Where the lean RESP paths connect: the master the Sentinels name now (credentials and TLS from
    the client); for any other client, the address it was built with."""
    spec = RedisSpec.from_client(client)
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return spec
    host, port = await pool.get_master_address()
    return dataclasses.replace(spec, host=str(host), port=int(port))


class MasterConnection:
    """One lean RESP connection to the current master, opened on first use and after :meth:`refresh`."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._connection: RespConnection | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> RespConnection:
        async with self._lock:  # two writers at once must not open two connections
            if self._connection is None or self._connection.protocol.closed.done():
                self._connection = await RespConnection.open(await master_address(self._client))
            return self._connection

    async def refresh(self) -> None:
        """Drop the connection unless it is alive and on the master the Sentinels name now; the next
        :meth:`get` asks them again. Writers share this connection: one that already reconnected to the
        new master must not have it closed under its in-flight command by another writer's retry."""
        async with self._lock:
            current = self._connection
            if current is not None and not current.protocol.closed.done():
                try:
                    master = await master_address(self._client)
                except Exception:  # no Sentinel answers just now: reconnect, and let the caller's loop retry
                    master = None
                if master is not None and (master.host, master.port) == (current.address.host,
                                                                         current.address.port):
                    return
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def through_master_failover(master: MasterConnection, op: Callable[[RespConnection], Awaitable[T]],
                                  wait_s: float = FAILOVER_WAIT_S) -> T:
    """``op`` on the master's connection; while the master is lost (or answers READONLY/LOADING as a demoted
    or syncing node), reconnect to whichever master the Sentinels name and run it again, up to ``wait_s``."""

    async def attempt() -> T:
        return await op(await master.get())

    return await through_failover(master, attempt, wait_s, what="the Sentinel-managed master")  # type: ignore[no-any-return]


class MasterSubscription(Subscription):
    """A :class:`~core.resp.Subscription` that connects to the master the Sentinels name at subscribe time
    (the agent runtime makes a new one for each resubscribe, so a failover lands on the new master)."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(RedisSpec.from_client(client))
        self._client = client

    async def subscribe(self, *channels: str | bytes) -> None:
        if self._connection is None:
            self.address = await master_address(self._client)
        await super().subscribe(*channels)
