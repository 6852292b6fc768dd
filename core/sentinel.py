"""Redis Sentinel: ``redis+sentinel://`` URLs, redis-py's Sentinel-managed client, the master for the lean paths.

URL: ``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]`` (``rediss+sentinel://``
for TLS to the Sentinels and the data nodes, with ``?ssl_*`` options as on rediss://). The hosts are
Sentinels; ``<service>`` is the monitored master's name.

The lean RESP paths (publisher, cache writer, agent subscription) connect to an
:class:`~core.resp.Address` taken from the client's pool. A Sentinel pool finds the master only when it
connects, so :func:`resolve_master` (called by ``wait_for_redis``) asks the Sentinels once and writes the
master's address into every pool made for that URL in this process. After a failover the lean
connections drop, the process exits 69 and its supervised restart resolves the new master.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from core.errors import ConfigError
from core.redis_spec import MULTI_HOST_EXAMPLES, split_hosts

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")

# Pools per URL in this process, so resolving through one client fixes the address of all of them.
_POOLS: dict[str, list[Any]] = {}


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
                    node_kwargs: Mapping[str, Any] | None = None) -> aioredis.Redis:
    """A client of the current master, found through the Sentinels; no I/O until first use.
    ``node_kwargs`` (RedisSpec.node_kwargs: CA, client certificate) reach the Sentinels and the master."""
    spec = parse_sentinel_url(url)
    node = dict(node_kwargs) if node_kwargs is not None else {"ssl": spec.tls}
    sentinel = Sentinel(list(spec.sentinels), socket_timeout=2.0, sentinel_kwargs={"socket_timeout": 2.0, **node})
    client = sentinel.master_for(spec.service, decode_responses=decode, db=spec.db, username=spec.username,
                                 password=password or spec.password, socket_keepalive=True, **node)
    _POOLS.setdefault(url, []).append(client.connection_pool)
    return client


async def resolve_master(client: aioredis.Redis, url: str) -> None:
    """Write the master's address into every pool for ``url``, for core.resp.Address.from_client."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return
    host, port = await pool.get_master_address()
    for each in _POOLS.get(url, [pool]):
        each.connection_kwargs.update(host=host, port=int(port))
