"""Redis Cluster: URLs, the redis-py cluster client, slot routing for the lean RESP paths, sharded pub/sub.

URL: ``redis+cluster://[user:password@]host:port[,host:port...]/`` (``rediss+cluster://`` for TLS).
The hosts are seed nodes; redis-py's :class:`~redis.asyncio.cluster.RedisCluster`
discovers the rest (``startup_nodes``, as in redis-py). A cluster has no
database number, so the path must be empty or ``/`` (or ``/0``).

On a cluster, every per-instrument name carries a hash tag (``tf:cache:{AAPL}``,
see :class:`core.keys.Keys`), so all keys and the channels of one instrument
live in one slot: the cache's EVAL and the quote PUBLISH+HSET stay single-node.
Market data then goes over sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``), so
each master carries only its own slots' fan-out. Control channels (symbol
demand) stay classic pub/sub, which a cluster broadcasts to every node.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.crc import key_slot

from core.errors import ConfigError
from core.resp import Address, RespConnection, Subscription

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


@dataclasses.dataclass(frozen=True)
class ClusterURL:
    seeds: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)


def parse_cluster_url(url: str) -> ClusterURL:
    """Seeds and credentials of a ``redis+cluster://`` URL; ConfigError naming the problem."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    seeds = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"setting 'redis_url': cluster seed {item!r} is not host:port, "
                              "e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000/")
        seeds.append((host, int(port)))
    if not seeds:
        raise ConfigError("setting 'redis_url': a cluster URL needs at least one seed host:port")
    if parts.path not in ("", "/", "/0"):
        raise ConfigError("setting 'redis_url': a Redis Cluster has only database 0; drop the path")
    return ClusterURL(tuple(seeds), parts.scheme == "rediss+cluster", unquote(username) or None,
                      unquote(password) or None)


class _DiscoveringPubSub(ClusterPubSub):  # type: ignore[misc]
    """redis-py 8.1's cluster pub/sub looks the channel's slot up without discovering the cluster first."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self.cluster.nodes_manager.slots_cache:
            await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


class Cluster(RedisCluster):  # type: ignore[misc]
    """RedisCluster whose ``pubsub()`` works as a first command (the hub's demand listener)."""

    def pubsub(self, node: ClusterNode | None = None, host: str | None = None, port: int | None = None,
               **kwargs: Any) -> ClusterPubSub:
        return _DiscoveringPubSub(self, node=node, host=host, port=port, **kwargs)


def cluster_client(url: str, *, decode: bool = True) -> RedisCluster:
    """redis-py's asyncio cluster client; no I/O until first use."""
    spec = parse_cluster_url(url)
    return Cluster(startup_nodes=[ClusterNode(host, port) for host, port in spec.seeds],
                        decode_responses=decode, ssl=spec.tls, username=spec.username, password=spec.password,
                        socket_keepalive=True)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def slot_of(name: str | bytes) -> int:
    return int(key_slot(name.encode() if isinstance(name, str) else name))


async def node_address(client: RedisCluster, name: str | bytes) -> Address:
    """The master serving ``name``'s slot, as an Address for core.resp (credentials from the client)."""
    if not client.nodes_manager.default_node:
        await client.initialize()
    node = client.nodes_manager.get_node_from_slot(slot_of(name))
    kwargs = client.nodes_manager.connection_kwargs
    return Address(host=node.host, port=int(node.port), username=kwargs.get("username"),
                   password=kwargs.get("password"), tls=bool(kwargs.get("ssl")))


class NodeConnections:
    """One lean RESP connection per master, opened on first use; ``for_name`` routes by slot."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._open: dict[tuple[str, int], RespConnection] = {}

    async def for_name(self, name: str | bytes) -> RespConnection:
        address = await node_address(self._client, name)
        key = (address.host, address.port)
        connection = self._open.get(key)
        if connection is None or connection.protocol.closed.done():
            connection = self._open[key] = await RespConnection.open(address)
        return connection

    async def group(self, names: Iterable[str], name_of: Callable[[str], str]) -> dict[RespConnection, list[str]]:
        """Items grouped by the connection of the master that serves ``name_of(item)``."""
        groups: dict[RespConnection, list[str]] = {}
        for item in names:
            groups.setdefault(await self.for_name(name_of(item)), []).append(item)
        return groups

    def close(self) -> None:
        for connection in self._open.values():
            connection.close()
        self._open.clear()


class ShardSubscription(Subscription):
    """SSUBSCRIBE on one master (its messages arrive as ``smessage``)."""

    verb = b"SSUBSCRIBE"


class ShardedSubscription:
    """The agent's subscription on a cluster: one SSUBSCRIBE connection per master holding its channels.

    Same surface as :class:`core.resp.Subscription` (``subscribe``, ``listen``, ``aclose``).
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._by_node: dict[tuple[str, int], ShardSubscription] = {}

    async def subscribe(self, *channels: str | bytes) -> None:
        for channel in channels:
            address = await node_address(self._client, channel)
            sub = self._by_node.get((address.host, address.port))
            if sub is None:
                sub = self._by_node[(address.host, address.port)] = ShardSubscription(address)
            await sub.subscribe(channel)

    async def listen(self, callback: Callable[[bytes, bytes], None]) -> None:
        """Until one node's connection ends (then raise, like Subscription) or all are closed."""
        if not self._by_node:
            raise RuntimeError("subscribe() before listen()")
        tasks = [asyncio.ensure_future(sub.listen(callback)) for sub in self._by_node.values()]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        for sub in self._by_node.values():
            await sub.aclose()
