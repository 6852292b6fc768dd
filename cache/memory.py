"""MemoryRedis: the subset of redis-py's asyncio client the framework uses, in memory.

A backtest runs the real agents, the gateway's intent handling, the order store
and the sim broker without a Redis server: each of them is handed this object
where it would hold a ``redis.asyncio.Redis``. Only what those modules call is
here (hashes, sets, plain keys, stream appends, publish, pipelines); replies are
``str`` as with ``decode_responses=True``. Nothing awaits, so a call never lets
another task run in between: the same atomicity a MULTI/EXEC or an EVAL gives.

Two additions a real server does not have:

- *views*: a key prefix answered by a function (the backtest serves
  ``tf:quote:<SYMBOL>`` from its latest quote instead of writing a hash per quote);
- *listeners*: ``publish`` calls the functions subscribed to a channel (or a
  channel prefix) at once, in subscription order;
- *change listeners*: a DataCache write's change notice reaches a listener that
  takes it decoded (:meth:`MemoryRedis.subscribe_changes`) as its parts, without
  being encoded and decoded again (most of what a notice cost a backtest); a plain
  listener on the same channel still gets the encoded bytes, in the same order.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

HashView = Callable[[str], dict[str, str] | None]
Listener = Callable[[str, Any], None]
#: Called with a cache-change notice's parts: (symbol, changed fields, ts_ns).
ChangeListener = Callable[[str, tuple[str, ...], int], None]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else str(value)


class MemoryRedis:
    """An in-memory stand-in for ``redis.asyncio.Redis`` (decoded replies)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.strings: dict[str, str] = {}
        self.streams: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self._views: list[tuple[str, HashView]] = []
        self._listeners: dict[str, list[Listener]] = {}
        #: per channel, in subscription order: (listener, takes the notice decoded)
        self._subscribers: dict[str, list[tuple[Any, bool]]] = {}
        self._prefix_listeners: list[tuple[str, Listener]] = []
        self._stream_ids = itertools.count(1)
        self.published = 0
        #: Called with every cache write (key, flat field/value list): a backtest hashes them into its digest.
        self.journal: Callable[[str, list[str]], None] | None = None

    # additions ----------------------------------------------------------------------

    def add_view(self, prefix: str, view: HashView) -> None:
        """Answer reads of keys starting with ``prefix`` with ``view(key)``."""
        self._views.append((prefix, view))

    def subscribe(self, channel: str, listener: Listener) -> None:
        self._listeners.setdefault(channel, []).append(listener)
        self._subscribers.setdefault(channel, []).append((listener, False))

    def subscribe_changes(self, channel: str, listener: ChangeListener, raw: Listener) -> None:
        """Subscribe to a cache-change channel: ``listener`` gets what :meth:`publish_change` sends,
        decoded; ``raw`` gets anything published on the channel as bytes (and decodes it itself)."""
        self._listeners.setdefault(channel, []).append(raw)
        self._subscribers.setdefault(channel, []).append((listener, True))

    def subscribe_prefix(self, prefix: str, listener: Listener) -> None:
        self._prefix_listeners.append((prefix, listener))

    def read_hash(self, key: str) -> dict[str, str] | None:
        """A hash's fields as stored (not a copy: do not change it), or None; views answered too."""
        return self._view(key)

    def _view(self, key: str) -> dict[str, str] | None:
        for prefix, view in self._views:
            if key.startswith(prefix):
                return view(key)
        return self.hashes.get(key)

    def apply_hset(self, key: str, pairs: list[str]) -> None:
        """HSET from a flat field, value, field, value ... list (DataCache.update's arguments)."""
        if self.journal is not None:
            self.journal(key, pairs)
        target = self.hashes.setdefault(key, {})
        for i in range(0, len(pairs), 2):
            target[pairs[i]] = pairs[i + 1]

    # hashes -------------------------------------------------------------------------

    async def hset(self, name: str, key: str | None = None, value: Any = None,
                   mapping: Mapping[str, Any] | None = None) -> int:
        target = self.hashes.setdefault(name, {})
        items = dict(mapping or {})
        if key is not None:
            items[key] = value
        added = sum(1 for k in items if k not in target)
        target.update({_text(k): _text(v) for k, v in items.items()})
        return added

    async def hget(self, name: str, key: str) -> str | None:
        return (self._view(name) or {}).get(key)

    async def hexists(self, name: str, key: str) -> bool:
        return key in (self._view(name) or {})

    async def hmget(self, name: str, keys: str | Iterable[str], *args: str) -> list[str | None]:
        fields = [keys, *args] if isinstance(keys, str) else [*keys, *args]
        current = self._view(name) or {}
        return [current.get(f) for f in fields]

    async def hgetall(self, name: str) -> dict[str, str]:
        return dict(self._view(name) or {})

    async def hdel(self, name: str, *keys: str) -> int:
        target = self.hashes.get(name, {})
        removed = sum(1 for k in keys if target.pop(k, None) is not None)
        if name in self.hashes and not target:
            del self.hashes[name]
        return removed

    # sets and plain keys --------------------------------------------------------------

    async def sadd(self, name: str, *values: str) -> int:
        target = self.sets.setdefault(name, set())
        before = len(target)
        target.update(values)
        return len(target) - before

    async def srem(self, name: str, *values: str) -> int:
        target = self.sets.get(name, set())
        before = len(target)
        target.difference_update(values)
        return before - len(target)

    async def smembers(self, name: str) -> set[str]:
        return set(self.sets.get(name, ()))

    async def get(self, name: str) -> str | None:
        return self.strings.get(name)

    async def set(self, name: str, value: Any) -> bool:
        self.strings[name] = _text(value)
        return True

    async def mget(self, keys: str | Iterable[str], *args: str) -> list[str | None]:
        names = [keys, *args] if isinstance(keys, str) else [*keys, *args]
        return [self.strings.get(n) for n in names]

    async def delete(self, *names: str) -> int:
        removed = 0
        for store in (self.hashes, self.sets, self.strings, self.streams):
            for name in names:
                removed += store.pop(name, None) is not None
        return removed

    async def exists(self, *names: str) -> int:
        return sum(1 for n in names if self._view(n) or n in self.sets or n in self.strings or n in self.streams)

    async def scan_iter(self, match: str = "*", count: int = 0) -> AsyncIterator[str]:
        names = sorted({*self.hashes, *self.sets, *self.strings, *self.streams})
        for name in names:
            if fnmatch.fnmatchcase(name, match):
                yield name

    # streams and pub/sub ----------------------------------------------------------------

    async def xadd(self, name: str, fields: Mapping[str, Any], maxlen: int | None = None,
                   approximate: bool = True) -> str:
        entry_id = f"0-{next(self._stream_ids)}"  # ids in append order: deterministic, unlike a server's clock
        self.streams.setdefault(name, []).append((entry_id, {k: _text(v) for k, v in fields.items()}))
        return entry_id

    async def publish(self, channel: str, message: Any) -> int:
        return self.publish_now(channel, message)

    def publish_now(self, channel: str, message: Any) -> int:
        self.published += 1
        listeners = self._listeners.get(channel, ())
        for listener in listeners:
            listener(channel, message)
        matched = len(listeners)
        for prefix, listener in self._prefix_listeners:
            if channel.startswith(prefix):
                listener(channel, message)
                matched += 1
        return matched

    def publish_change(self, channel: str, symbol: str, fields: tuple[str, ...], ts_ns: int,
                       encode: Callable[[str, list[str], int], bytes]) -> int:
        """A cache-change notice: change listeners get its parts, plain ones ``encode(...)``'s bytes
        (encoded once, only when one listens), all in subscription order, as :meth:`publish_now`."""
        self.published += 1
        subscribers = self._subscribers.get(channel)
        raw: bytes | None = None
        matched = 0
        if subscribers:
            for listener, decoded in subscribers:
                if decoded:
                    listener(symbol, fields, ts_ns)
                else:
                    raw = raw if raw is not None else encode(symbol, list(fields), ts_ns)
                    listener(channel, raw)
            matched = len(subscribers)
        for prefix, listener in self._prefix_listeners:
            if channel.startswith(prefix):
                raw = raw if raw is not None else encode(symbol, list(fields), ts_ns)
                listener(channel, raw)
                matched += 1
        return matched

    def pipeline(self, transaction: bool = True) -> MemoryPipeline:
        return MemoryPipeline(self)

    async def aclose(self) -> None:
        return None


class MemoryPipeline:
    """Queues calls and runs them in order on ``execute()`` (nothing runs in between)."""

    def __init__(self, redis: MemoryRedis) -> None:
        self._redis = redis
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., MemoryPipeline]:
        if not hasattr(MemoryRedis, name) or name.startswith("_"):
            raise AttributeError(name)

        def queue(*args: Any, **kwargs: Any) -> MemoryPipeline:
            self._calls.append((name, args, kwargs))
            return self

        return queue

    async def execute(self) -> list[Any]:
        calls, self._calls = self._calls, []
        return [await getattr(self._redis, name)(*args, **kwargs) for name, args, kwargs in calls]

    async def __aenter__(self) -> MemoryPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._calls = []


class MemoryRedisBytes:
    """The same store seen as a ``decode_responses=False`` client (the sim broker's raw reads)."""

    def __init__(self, redis: MemoryRedis) -> None:
        self.redis = redis

    async def hgetall(self, name: str | bytes) -> dict[bytes, bytes]:
        fields = await self.redis.hgetall(_text(name))
        return {k.encode(): v.encode() for k, v in fields.items()}

    async def aclose(self) -> None:
        return None
