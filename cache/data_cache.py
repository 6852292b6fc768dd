"""DataCache: derived state per instrument in Redis hashes shared by every process.

``tf:cache:AAPL`` holds, for each field, its value and its update time::

    fair_price          187.235
    fair_price:ts_ns    1732525000123456789

Values are plain text (floats in shortest round-trip form), so
``redis-cli HGET tf:cache:AAPL fair_price`` reads them directly. A multi-field
update is one atomic EVAL that also publishes the changed field names on
``tf:cache:changed:AAPL``, so agents can be driven by cache changes.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from cache.memory import MemoryRedis
from core.clock import Clock, SystemClock
from core.cluster import NodeConnections, is_cluster, is_cluster_url, through_failover
from core.codec import encode_cache_change
from core.connection import redis_client, spec_from_env
from core.keys import CACHE_TS_SUFFIX as TS_SUFFIX
from core.keys import DEFAULT_NAMESPACE, Keys
from core.resp import Address, RespConnection, command
from core.sentinel import MasterConnection, is_sentinel, through_master_failover

# One atomic command instead of a MULTI/HSET/PUBLISH/EXEC pipeline (a script runs
# without interleaving), sent on the lean RESP connection of core.resp: redis-py's
# per-command work was half of a cache-writing agent's CPU. ARGV[1] is the change
# notice ('' = none); Redis caches the compiled script after the first EVAL.
_UPDATE_LUA = b"""
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[1]) end
return 1
"""
# On a Redis Cluster the change notice goes out on sharded pub/sub: the channel shares the
# cache key's slot (hash tag), so the script stays on one node (see core.cluster).
_UPDATE_LUA_SHARDED = _UPDATE_LUA.replace(b"'PUBLISH'", b"'SPUBLISH'")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

CacheValue = float | int | str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached value with the wall time (ns) it was written."""

    value: float | str
    ts_ns: int

    def age_ns(self, now_ns: int) -> int:
        return now_ns - self.ts_ns


def _to_text(field: str, value: CacheValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cache field '{field}': {value!r} is not finite; refusing to publish it")
        return repr(value)
    return str(value)


def _from_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


class DataCache:
    """Shared per-instrument state. Creating one does no I/O.

    ``DataCache()`` uses ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
    namespace ``tf``; a runtime that already holds a client passes ``client=``.
    """

    def __init__(self, redis_url: str | None = None, *, namespace: str = DEFAULT_NAMESPACE,
                 client: aioredis.Redis | None = None, clock: Clock | None = None) -> None:
        self.redis_url = redis_url or os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
        self.keys = Keys(namespace, cluster=is_cluster_url(self.redis_url))
        self._client = client
        #: the client when it is a backtest's in-memory store (decided once per bind, not per write)
        self._memory: MemoryRedis | None = client if isinstance(client, MemoryRedis) else None
        self._owns_client = client is None
        self._retired: list[aioredis.Redis] = []
        self._resp: RespConnection | None = None
        self._nodes: NodeConnections | None = None
        self._master: MasterConnection | None = None
        self._writer_lock = asyncio.Lock()
        self._clock = clock or SystemClock()
        self._names_keys: Keys | None = None
        self._names: dict[str, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"DataCache(namespace={self.keys.namespace!r})"

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = redis_client(spec_from_env(self.redis_url))
        return self._client

    def bind(self, client: aioredis.Redis, keys: Keys, clock: Clock) -> None:
        """Share a runtime's connection, namespace and clock (done by the agent runtime).

        A connection this cache opened itself (used before the agent started) is kept
        to be closed by :meth:`aclose`, not dropped open.
        """
        if self._client is not None and self._owns_client:
            self._retired.append(self._client)
        self._client, self.keys, self._clock = client, keys, clock
        self._memory = client if isinstance(client, MemoryRedis) else None
        self._owns_client = False
        self._close_writer()  # reopened from the runtime's connection settings on next write

    async def update(self, instrument: str, fields: Mapping[str, CacheValue], *,
                     notify: bool = True) -> int:
        """Write several fields atomically, stamped with one time; returns that time (ns)."""
        if not fields:
            raise ValueError(f"cache update for {instrument} has no fields")
        ts_ns = self._clock.time_ns()
        stamp = str(ts_ns)
        args: list[str] = []
        for field, value in fields.items():
            args += (field, _to_text(field, value), field + TS_SUFFIX, stamp)
        memory = self._memory
        if memory is not None:  # a backtest: the same write and notice, in memory
            key, channel = self._memory_names(instrument)
            memory.apply_hset(key, args)
            if notify:
                memory.publish_change(channel, instrument, tuple(fields), ts_ns, encode_cache_change)
            return ts_ns
        notice = encode_cache_change(instrument, list(fields), ts_ns) if notify else b""
        key = self.keys.cache(instrument)
        nodes = self._cluster_nodes()
        script = _UPDATE_LUA_SHARDED if nodes is not None else _UPDATE_LUA
        buf = command(b"EVAL", script, b"2", key.encode(), self.keys.cache_changed_channel(instrument).encode(),
                      notice, *(a.encode() for a in args))
        if nodes is None and (master := self._sentinel_master()) is not None:  # through a failover: the new master
            await through_master_failover(master, lambda writer: writer.send(buf, 1))
        elif nodes is None:
            await (await self._writer()).send(buf, 1)
        else:  # through a failover or slot move: the same atomic write, again, on the slot's new master
            await through_failover(nodes, lambda: self._send_routed(nodes, key, buf))
        return ts_ns

    async def _send_routed(self, nodes: NodeConnections, key: str, buf: bytes) -> None:
        async with self._writer_lock:
            writer = await nodes.for_name(key)
        await writer.send(buf, 1)

    def _cluster_nodes(self) -> NodeConnections | None:
        """On a cluster, the per-master write connections (each key goes to its slot's master)."""
        if self._nodes is None and is_cluster(self.client):
            self._nodes = NodeConnections(self.client)
        return self._nodes

    def _sentinel_master(self) -> MasterConnection | None:
        """Under Sentinel, the write connection to whichever node is master now."""
        if self._master is None and is_sentinel(self.client):
            self._master = MasterConnection(self.client)
        return self._master

    def _memory_fields(self, memory: MemoryRedis, instrument: str, field: str) -> tuple[str | None, str | None]:
        """HMGET field, field:ts_ns on the in-memory store, without its list and coroutine."""
        current = memory.read_hash(self._memory_names(instrument)[0])
        if current is None:
            return None, None
        return current.get(field), current.get(field + TS_SUFFIX)

    def _memory_names(self, instrument: str) -> tuple[str, str]:
        """An instrument's hash key and change channel, remembered (per ``keys``) for the in-memory path."""
        if self._names_keys is not self.keys:
            self._names_keys, self._names = self.keys, {}
        names = self._names.get(instrument)
        if names is None:
            names = self._names[instrument] = (self.keys.cache(instrument), self.keys.cache_changed_channel(instrument))
        return names

    async def _writer(self) -> RespConnection:
        """The write connection, opened on first use (and again after it was lost)."""
        async with self._writer_lock:
            if self._resp is None or self._resp.protocol.closed.done():
                self._resp = await RespConnection.open(Address.from_client(self.client))
            return self._resp

    async def set(self, instrument: str, field: str, value: CacheValue, *, notify: bool = True) -> int:
        """Write one field (the seed API's ``set``)."""
        memory = self._memory
        if memory is None:
            return await self.update(instrument, {field: value}, notify=notify)
        # update() of one field, without building its dict (most backtest writes are one field)
        ts_ns = self._clock.time_ns()
        key, channel = self._memory_names(instrument)
        memory.apply_hset(key, [field, _to_text(field, value), field + TS_SUFFIX, str(ts_ns)])
        if notify:
            memory.publish_change(channel, instrument, (field,), ts_ns, encode_cache_change)
        return ts_ns

    async def get(self, instrument: str, field: str, default: float | str | None = None) -> float | str | None:
        """The value (a float when numeric), or ``default`` when absent."""
        text = await self.client.hget(self.keys.cache(instrument), field)
        return default if text is None else _from_text(text)

    async def get_float(self, instrument: str, field: str, *, max_age_ns: int | None = None) -> float | None:
        """A numeric field, or None when absent, non-numeric or older than ``max_age_ns``."""
        memory = self._memory
        if memory is None:
            entry = await self.get_entry(instrument, field)
            if entry is None or not isinstance(entry.value, float):
                return None
            if max_age_ns is not None and entry.age_ns(self._clock.time_ns()) > max_age_ns:
                return None
            return entry.value
        # the same answer without a CacheEntry (the market maker reads two of these per run)
        value, ts = self._memory_fields(memory, instrument, field)
        number = _from_text(value) if value is not None else None
        if not isinstance(number, float):
            return None
        if max_age_ns is not None and self._clock.time_ns() - (int(ts) if ts else 0) > max_age_ns:
            return None
        return number

    async def get_entry(self, instrument: str, field: str) -> CacheEntry | None:
        memory = self._memory
        if memory is not None:
            value, ts = self._memory_fields(memory, instrument, field)
        else:
            value, ts = await self.client.hmget(self.keys.cache(instrument), [field, field + TS_SUFFIX])
        if value is None:
            return None
        return CacheEntry(_from_text(value), int(ts) if ts else 0)

    async def get_all(self, instrument: str) -> dict[str, CacheEntry]:
        """Every field of an instrument with its update time."""
        raw = await self.client.hgetall(self.keys.cache(instrument))
        return {field: CacheEntry(_from_text(text), int(raw.get(field + TS_SUFFIX) or 0))
                for field, text in raw.items() if not field.endswith(TS_SUFFIX)}

    def _close_writer(self) -> None:
        if self._master is not None:
            self._master.close()
            self._master = None
        if self._nodes is not None:
            self._nodes.close()
            self._nodes = None
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    async def delete(self, instrument: str, *fields: str) -> None:
        names = [n for f in fields for n in (f, f + TS_SUFFIX)]
        await self.client.hdel(self.keys.cache(instrument), *names)

    async def instruments(self) -> list[str]:
        """Instruments that have cached state."""
        prefix = self.keys.cache("")
        changed = self.keys.cache_changed_prefix()
        names = [key async for key in self.client.scan_iter(match=self.keys.cache_pattern(), count=500)]
        return sorted(k[len(prefix):] for k in names if not k.startswith(changed))

    async def aclose(self) -> None:
        """Close the connections this cache opened itself (a runtime's shared one is left alone)."""
        self._close_writer()
        retired, self._retired = self._retired, []
        if self._client is not None and self._owns_client:
            retired.append(self._client)
            self._client = None
        for client in retired:
            await client.aclose()
