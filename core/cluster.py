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
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import ConfigError, RedisUnavailableError
from core.failover import FAILOVER_WAIT_S, FailoverRetry, backoff
from core.redis_spec import MULTI_HOST_EXAMPLES, spec_from_redis_py_kwargs, split_hosts
from core.resp import Address, RespConnection, RespError, Subscription

log = logging.getLogger(__name__)

#: Error replies after which a refreshed slot map (or a little patience) makes the command succeed.
_RETRYABLE_REPLIES = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN")

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
    username, password, seeds = split_hosts(url, *MULTI_HOST_EXAMPLES["cluster"])
    if not seeds:
        raise ConfigError("setting 'redis_url': a cluster URL needs at least one seed host:port")
    if parts.path not in ("", "/", "/0"):
        raise ConfigError("setting 'redis_url': a Redis Cluster has only database 0; drop the path")
    return ClusterURL(seeds, parts.scheme == "rediss+cluster", username, password)


class _DiscoveringPubSub(ClusterPubSub):  # type: ignore[misc]
    """redis-py 8.1's cluster pub/sub looks the channel's slot up without discovering the cluster first."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self.cluster.nodes_manager.slots_cache:
            await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


async def _no_op(_error: Exception) -> None:
    return None


class Cluster(RedisCluster):  # type: ignore[misc]
    """RedisCluster that rides a failover for :data:`~core.failover.FAILOVER_WAIT_S` and whose
    ``pubsub()`` works as a first command (the hub's demand listener).

    redis-py's own loop re-reads the slot map and tries again a number of times without waiting, so
    a command to a killed master fails in a few seconds, before a replica is promoted; an agent's
    ``run()`` then lost Redis and its process exited. Here that loop runs again with backoff until the
    deadline. A pipeline without a transaction does the same (:class:`_FailoverPipeline`); a
    transaction keeps redis-py's loop (250 ms apart, 30 tries), as a retried one could commit twice.
    """

    def __init__(self, *args: Any, ride_failover: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._failover_retry = FailoverRetry(also_on=tuple(self.ERRORS_ALLOW_RETRY)) if ride_failover else None
        self.commands_parser = _KeysFromALiveNode(self)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._failover_retry is None:
            return await super().execute_command(*args, **kwargs)
        return await self._failover_retry.call_with_retry(
            lambda: super(Cluster, self).execute_command(*args, **kwargs), _no_op)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if self._failover_retry is None or transaction or shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _FailoverPipeline(self, self._failover_retry)

    def pubsub(self, node: ClusterNode | None = None, host: str | None = None, port: int | None = None,
               **kwargs: Any) -> ClusterPubSub:
        return _DiscoveringPubSub(self, node=node, host=host, port=port, **kwargs)


class _KeysFromALiveNode(AsyncCommandsParser):  # type: ignore[misc]
    """redis-py's parser, except that it follows the cluster when the node it asks is gone.

    redis-py asks one node, fixed when the client starts, for the keys of a command whose keys can move
    (``COMMAND GETKEYS``: XREADGROUP, XREAD, ...), and replaces it only on a full re-initialisation; the
    error is raised before its retry loop, so nothing triggers one. Once that node was the killed master,
    every XREADGROUP failed for good and the gateway rebuilt itself in a loop (CI, one run in five).
    """

    def __init__(self, cluster: RedisCluster) -> None:
        super().__init__()
        self._cluster = cluster

    async def _get_moveable_keys(self, *args: Any) -> Any:
        try:
            return await super()._get_moveable_keys(*args)
        except (RedisConnectionError, RedisTimeoutError):
            await refresh_slots(self._cluster)
            self.node = self._cluster.get_default_node()
            return await super()._get_moveable_keys(*args)


class _FailoverPipeline(ClusterPipeline):  # type: ignore[misc]
    """A pipeline whose execute rides a failover as :meth:`Cluster.execute_command` does.

    redis-py empties the queue after each execute, failed or not, so the commands are kept here and
    queued again for every attempt. Only reads and idempotent writes go in these pipelines.
    """

    def __init__(self, client: Cluster, failover_retry: FailoverRetry) -> None:
        super().__init__(client)
        self._failover_retry = failover_retry
        self._queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> ClusterPipeline:
        self._queued.append((args, dict(kwargs)))
        return super().execute_command(*args, **kwargs)

    async def reset(self) -> None:
        self._queued = []
        await super().reset()

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        queued, self._queued = self._queued, []
        attempts = 0

        async def attempt() -> list[Any]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                for args, kwargs in queued:
                    super(_FailoverPipeline, self).execute_command(*args, **kwargs)
            return await super(_FailoverPipeline, self).execute(raise_on_error, allow_redirections)  # type: ignore[no-any-return]

        return await self._failover_retry.call_with_retry(attempt, _no_op)


def cluster_client(url: str, *, decode: bool = True, password: str | None = None,
                   node_kwargs: Mapping[str, Any] | None = None, ride_failover: bool = True) -> RedisCluster:
    """redis-py's asyncio cluster client; no I/O until first use. ``password`` (from a password
    file) overrides the URL's; ``node_kwargs`` (RedisSpec.node_kwargs: CA, client certificate)
    reach every node, so node_address hands them to the lean paths too.

    ``ride_failover=False``: a command to a lost master raises after redis-py's own quick retries (the
    gateway rebuilds its state from the new master instead of carrying on from memory)."""
    spec = parse_cluster_url(url)
    node = dict(node_kwargs) if node_kwargs is not None else {"ssl": spec.tls}
    # The count is what redis-py's pipelines (250 ms apart) and each pass of its command loop try;
    # Cluster.execute_command bounds the whole by time.
    retry = Retry(backoff(), retries=int(FAILOVER_WAIT_S))
    return Cluster(startup_nodes=[ClusterNode(host, port) for host, port in spec.seeds], decode_responses=decode,
                   username=spec.username, password=password or spec.password, socket_keepalive=True,
                   retry=retry, ride_failover=ride_failover, **node)


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
    # redis-py replaces ssl=True by connection_class=SSLConnection in the kwargs it keeps
    tls = bool(kwargs.get("ssl")) or issubclass(kwargs.get("connection_class", Connection), SSLConnection)
    return spec_from_redis_py_kwargs({**kwargs, "host": node.host, "port": int(node.port)}, tls=tls)


class NodeConnections:
    """One lean RESP connection per master, opened on first use; ``for_name`` routes by slot.

    The route of each name is remembered until the next :meth:`refresh` (a failover or MOVED), so the
    hot path costs one dict lookup per symbol.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._open: dict[tuple[str, int], RespConnection] = {}
        self._routes: dict[str | bytes, RespConnection] = {}

    async def for_name(self, name: str | bytes) -> RespConnection:
        connection = self._routes.get(name)
        if connection is not None and not connection.protocol.closed.done():
            return connection
        address = await node_address(self._client, name)
        key = (address.host, address.port)
        connection = self._open.get(key)
        if connection is None or connection.protocol.closed.done():
            connection = self._open[key] = await RespConnection.open(address)
        self._routes[name] = connection
        return connection

    async def group(self, names: Iterable[str], name_of: Callable[[str], str]) -> dict[RespConnection, list[str]]:
        """Items grouped by the connection of the master that serves ``name_of(item)``."""
        groups: dict[RespConnection, list[str]] = {}
        routes = self._routes
        for item in names:
            name = name_of(item)
            connection = routes.get(name)
            if connection is None or connection.protocol.closed.done():
                connection = await self.for_name(name)
            groups.setdefault(connection, []).append(item)
        return groups

    def close(self) -> None:
        for connection in self._open.values():
            connection.close()
        self._open.clear()
        self._routes.clear()

    async def refresh(self) -> None:
        """Drop every connection and re-read the slot map (after a failover or a slot move)."""
        self.close()
        await refresh_slots(self._client)


async def refresh_slots(client: RedisCluster) -> None:
    try:
        await client.nodes_manager.initialize()
    except Exception as e:  # every seed may be down for a moment; the caller's retry loop decides
        log.debug("cluster slot refresh failed: %s", e)


def retryable(error: BaseException) -> bool:
    """A lost master, a MOVED/CLUSTERDOWN-like reply, or redis-py finding a slot uncovered mid-failover."""
    if isinstance(error, RespError):
        return str(error).startswith(_RETRYABLE_REPLIES)
    return isinstance(error, (RedisUnavailableError, OSError, RedisConnectionError, RedisTimeoutError,
                              RedisClusterException))


class Refreshable(Protocol):
    """What :func:`through_failover` refreshes between attempts: the slot map here, the master's
    connection under Sentinel (core.sentinel.MasterConnection)."""

    async def refresh(self) -> None: ...


async def through_failover(nodes: Refreshable, op: Callable[[], Awaitable[Any]],
                           wait_s: float = FAILOVER_WAIT_S, *, what: str = "the cluster",
                           refresh_first: bool = False) -> Any:
    """Run ``op``; on a lost master or a MOVED/CLUSTERDOWN reply, refresh the slot map (or the master's
    connection) and retry, with backoff.

    ``refresh_first``: the caller already knows the map is stale (a slot moved, a master was lost), so
    the first attempt gets a fresh one too. Either way the map is read once per attempt, not twice.
    """
    deadline = time.monotonic() + wait_s
    waits = backoff()
    failures = 0
    if refresh_first:
        await nodes.refresh()
    while True:
        try:
            return await op()
        except Exception as e:
            if not retryable(e):
                raise
            if time.monotonic() >= deadline:
                raise RedisUnavailableError(f"{what} did not recover within {wait_s:.0f}s: {e}") from e
            log.warning("%s: %s; refreshing and retrying", what, e)
        failures += 1
        await asyncio.sleep(waits.compute(failures))
        await nodes.refresh()


class ShardSubscription(Subscription):
    """SSUBSCRIBE on one master (its messages arrive as ``smessage``); remembers its channels, each once."""

    verb = b"SSUBSCRIBE"

    def __init__(self, address: Address) -> None:
        super().__init__(address)
        #: A set: a retried resubscribe offers channels an earlier, half-failed attempt already subscribed here.
        self.channels: set[bytes] = set()

    async def subscribe(self, *channels: str | bytes) -> None:
        names = {c.encode() if isinstance(c, str) else c for c in channels} - self.channels
        if not names:
            return
        await super().subscribe(*names)
        self.channels |= names

    async def next_dropped(self) -> bytes:
        """The next channel Redis unsubscribed us from because its slot moved (SUNSUBSCRIBE push)."""
        if self._connection is None:
            await asyncio.Event().wait()
        channel: bytes = await self._connection.protocol.dropped.get()  # type: ignore[union-attr]
        self.channels.discard(channel)
        return channel


class ShardedSubscription:
    """The agent's subscription on a cluster: one SSUBSCRIBE connection per master holding its channels.

    Same surface as :class:`core.resp.Subscription` (``subscribe``, ``listen``, ``aclose``). When a
    master goes away (failover) or its slots move, its channels are subscribed again on whichever
    masters now serve them, within FAILOVER_WAIT_S; messages published in between are gone
    (pub/sub is latest-wins; the next quote refills the slot).
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._by_node: dict[tuple[str, int], ShardSubscription] = {}
        self._nodes = NodeConnections(client)  # only for its refresh/backoff loop
        self.resubscribed = 0

    async def subscribe(self, *channels: str | bytes) -> list[ShardSubscription]:
        """Subscribe each channel on its slot's master; returns the subscriptions that are new."""
        new: list[ShardSubscription] = []
        for channel in channels:
            address = await node_address(self._client, channel)
            node = (address.host, address.port)
            sub = self._by_node.get(node)
            if sub is None:
                sub = self._by_node[node] = ShardSubscription(address)
                new.append(sub)
            try:
                await sub.subscribe(channel)
            except BaseException:
                if not sub.channels:  # never got a channel (e.g. its node is the one that died): forget it
                    self._by_node.pop(node, None)
                    await sub.aclose()
                raise
        return new

    async def listen(self, callback: Callable[[bytes, bytes], None]) -> None:
        """Deliver until closed; a lost master's channels move to their new masters (or raise after the wait),
        and so does a channel whose slot was migrated (Redis then sends us SUNSUBSCRIBE for it)."""
        if not self._by_node:
            raise RuntimeError("subscribe() before listen()")
        tasks: dict[asyncio.Future[Any], tuple[str, ShardSubscription]] = {}

        def watch(sub: ShardSubscription) -> None:
            tasks[asyncio.ensure_future(sub.listen(callback))] = ("listen", sub)
            tasks[asyncio.ensure_future(sub.next_dropped())] = ("dropped", sub)

        for sub in self._by_node.values():
            watch(sub)
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    for sub in await self._after(task, *tasks.pop(task), tasks):
                        watch(sub)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _after(self, task: asyncio.Future[Any], kind: str, sub: ShardSubscription,
                     tasks: dict[asyncio.Future[Any], tuple[str, ShardSubscription]]) -> list[ShardSubscription]:
        """The new subscriptions to watch after ``task`` (a listener or a dropped-channel watcher) ended."""
        if task.cancelled():
            return []
        if kind == "dropped":
            tasks[asyncio.ensure_future(sub.next_dropped())] = ("dropped", sub)
            return await self._reroute([task.result()])
        if task.exception() is None:
            return []  # closed by aclose()
        if not retryable(task.exception()):  # type: ignore[arg-type]
            raise task.exception()  # type: ignore[misc]
        for other, (_, owner) in list(tasks.items()):
            if owner is sub:  # its dropped-channel watcher goes with it
                other.cancel()
                del tasks[other]
        return await self._move(sub)

    async def _reroute(self, channels: list[bytes]) -> list[ShardSubscription]:
        log.info("cluster: %d shard channel(s) moved with their slot; subscribing on the new master", len(channels))
        return await self._resubscribe(channels)

    async def _move(self, lost: ShardSubscription) -> list[ShardSubscription]:
        self._by_node = {k: v for k, v in self._by_node.items() if v is not lost}
        await lost.aclose()
        log.warning("cluster: lost the shard subscription on %s; moving %d channels", lost.address.describe(),
                    len(lost.channels))
        new = await self._resubscribe(sorted(lost.channels))
        self.resubscribed += 1
        return new

    async def _resubscribe(self, channels: list[bytes]) -> list[ShardSubscription]:
        """Subscribe ``channels`` wherever the refreshed slot map puts them, retrying through a failover."""
        before = set(map(id, self._by_node.values()))
        await through_failover(self._nodes, lambda: self.subscribe(*channels), refresh_first=True)
        # subscriptions made by any attempt, also one that failed half-way, need their listener
        return [sub for sub in self._by_node.values() if id(sub) not in before]

    async def aclose(self) -> None:
        for sub in self._by_node.values():
            await sub.aclose()
