"""A lean RESP2 client on asyncio for the two hot paths: the hub's publish pipeline and agents' subscriptions.

redis-py spends most of the hub's and the agents' CPU on per-command Python
work (packing, response callbacks, retry and timeout wrappers): profiles put
40-60% of each process there. This module does only what the hot paths need,
with replies parsed in C by hiredis (0.8 us per pub/sub message here, against
2.5-3 us for the best hand-written Python parser):

- :class:`RespConnection`: connect (TCP, TLS or unix socket), AUTH and SELECT
  from the :class:`~core.redis_spec.RedisSpec` the redis-py clients share
  (TLS with the URL's CA, client certificate and hostname rules), then pipelined writes of
  pre-encoded commands whose replies are counted and checked for errors;
- :class:`Subscription`: SUBSCRIBE and hand every ``message`` push to one
  synchronous callback straight from ``data_received`` (no task switch,
  no await per message), so an agent's socket is drained as fast as Python
  can parse it, whatever its ``run()`` does.

Failure model, as with redis-py in this code base: losing the connection
raises :class:`~core.errors.RedisUnavailableError` from whatever is waiting
(the process exits 69 and its supervisor restarts it); an error reply raises
:class:`RespError`. There is no silent reconnect.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from core.errors import ConfigError, RedisUnavailableError
from core.redis_spec import RedisSpec
from core.refusals import redis_config_error

Value = Any  # bytes | int | list[Value] | RespError | None
MessageCallback = Callable[[bytes, bytes], None]

_MESSAGE = b"message"
_SHARD_MESSAGE = b"smessage"  # sharded pub/sub on a Redis Cluster (core.cluster)
_CONFIRMATIONS = (b"subscribe", b"unsubscribe", b"ssubscribe", b"sunsubscribe")


class RespError(Exception):
    """Redis answered a command with an error reply."""


def command(*parts: bytes) -> bytes:
    """One RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


#: Where and how to connect: the same parsed spec the redis-py clients are built from (core.redis_spec).
Address = RedisSpec


class _Protocol(asyncio.Protocol):
    """Parses replies as they arrive: pushes go to ``on_message``, replies to the oldest waiter."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_message: MessageCallback | None = None
        self.waiters: deque[list[Any]] = deque()  # [future, replies still due, first error]
        self.confirmations: asyncio.Queue[bytes] = asyncio.Queue()
        #: Shard channels the server unsubscribed us from (their slot moved to another master, core.cluster).
        self.dropped: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # error replies come back as RespError values (not raised), so one bad command in a
        # pipeline does not lose the replies after it
        self._reader = hiredis.Reader(replyError=RespError)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        on_message = self.on_message
        try:
            while (value := reader.gets()) is not False:
                if on_message is not None and type(value) is list and len(value) == 3 and (value[0] == _MESSAGE
                                                                                         or value[0] == _SHARD_MESSAGE):
                    on_message(value[1], value[2])
                else:
                    self._deliver(value)
        except Exception as e:  # a bug in a callback or a protocol violation: fail loudly, not silently
            self._fail(e)

    def _deliver(self, value: Value) -> None:
        if isinstance(value, list) and value and value[0] == b"sunsubscribe":  # never sent by us: slot moved
            self.dropped.put_nowait(value[1])
            return
        if isinstance(value, list) and value and value[0] in _CONFIRMATIONS:
            self.confirmations.put_nowait(value[1])
            return
        if not self.waiters:
            if isinstance(value, RespError):  # a refused (S)SUBSCRIBE, e.g. MOVED: its caller is waiting
                self.confirmations.put_nowait(value)  # type: ignore[arg-type]
            return  # a message before a callback was installed: nobody asked for it
        waiter = self.waiters[0]
        if isinstance(value, RespError) and waiter[2] is None:
            waiter[2] = value
        waiter[1] -= 1
        if waiter[1] == 0:
            self.waiters.popleft()
            future = waiter[0]
            if not future.done():
                future.set_exception(waiter[2]) if waiter[2] is not None else future.set_result(value)

    def _fail(self, error: BaseException) -> None:
        if not self.closed.done():
            self.closed.set_exception(error)
            self.closed.exception()  # raised to whoever awaits it; not an "unretrieved" error if nobody does
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        lost = RedisUnavailableError(f"lost the connection to Redis: {exc or 'closed by the server'}")
        while self.waiters:
            future = self.waiters.popleft()[0]
            if not future.done():
                future.set_exception(lost)
        if not self.closed.done():
            self.closed.set_exception(lost)
            self.closed.exception()


class RespConnection:
    """One connection; ``send`` pipelines pre-encoded commands."""

    def __init__(self, address: Address, protocol: _Protocol) -> None:
        self.address = address
        self._protocol = protocol

    @classmethod
    async def open(cls, address: RedisSpec) -> RespConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(address.connect_timeout_s):
                if address.path:
                    _, protocol = await loop.create_unix_connection(_Protocol, address.path)
                else:
                    tls = address.ssl_context()
                    _, protocol = await loop.create_connection(
                        _Protocol, address.host, address.port, ssl=tls,
                        server_hostname=address.host if tls is not None else None)
        except ssl.SSLError as e:
            raise ConfigError(f"TLS to Redis at {address.display} failed ({e}); check ssl_ca_certs / "
                              "ssl_certfile / ssl_keyfile in the URL") from None
        except (OSError, TimeoutError) as e:
            raise RedisUnavailableError(f"cannot connect to Redis at {address.describe()}: {e}") from None
        connection = cls(address, protocol)
        try:
            if address.password:
                user = (address.username.encode(),) if address.username else ()
                await connection.send(command(b"AUTH", *user, address.password.encode()), 1)
            if address.db:
                await connection.send(command(b"SELECT", b"%d" % address.db), 1)
        except RespError as e:  # the same refusals redis-py reports at connect: a human must fix them
            connection.close()
            raise redis_config_error(address, e) or ConfigError(
                f"Redis at {address.display} refused the connection setup: {e}") from None
        return connection

    def send(self, buf: bytes, replies: int) -> asyncio.Future[Value]:
        """Write ``buf`` holding ``replies`` commands; the future gives the last reply or raises the first error."""
        protocol = self._protocol
        if protocol.closed.done() or protocol.transport is None or protocol.transport.is_closing():
            raise RedisUnavailableError(f"the connection to Redis at {self.address.describe()} is closed")
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        protocol.waiters.append([future, replies, None])
        protocol.transport.write(buf)
        return future

    @property
    def protocol(self) -> _Protocol:
        return self._protocol

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
        if not self._protocol.closed.done():
            self._protocol.closed.set_result(None)


class Subscription:
    """SUBSCRIBE on a connection of its own; ``listen`` delivers messages to a synchronous callback.

    Messages that arrive between ``subscribe`` and ``listen`` are kept unparsed
    in the buffer and delivered when ``listen`` starts, so none are lost.
    """

    #: The subscribe command; core.cluster's shard subscription uses SSUBSCRIBE.
    verb = b"SUBSCRIBE"

    def __init__(self, address: Address) -> None:
        self.address = address
        self._connection: RespConnection | None = None
        self._held: list[tuple[bytes, bytes]] = []

    async def subscribe(self, *channels: str | bytes) -> None:
        """Subscribe and wait until Redis confirmed every channel."""
        if self._connection is None:
            self._connection = await RespConnection.open(self.address)
            self._connection.protocol.on_message = self._hold
        names = [c.encode() if isinstance(c, str) else c for c in channels]
        protocol = self._connection.protocol
        protocol.transport.write(command(self.verb, *names))  # type: ignore[union-attr]
        for _ in names:
            getter = asyncio.ensure_future(protocol.confirmations.get())
            await asyncio.wait((getter, protocol.closed), return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                protocol.closed.result()  # raises RedisUnavailableError
                raise RedisUnavailableError("the subscription closed before Redis confirmed it")
            reply: object = getter.result()
            if isinstance(reply, RespError):  # refused (on a cluster: MOVED, the caller retries)
                raise reply

    def _hold(self, channel: bytes, data: bytes) -> None:
        self._held.append((channel, data))

    async def listen(self, callback: MessageCallback) -> None:
        """Deliver every message to ``callback`` until the connection is closed by ``aclose``.

        Raises RedisUnavailableError when Redis goes away, or what ``callback`` raised.
        """
        if self._connection is None:
            raise RuntimeError("subscribe() before listen()")
        protocol = self._connection.protocol
        held, self._held = self._held, []
        try:
            for channel, data in held:  # before any newer message: nothing awaits in between
                callback(channel, data)
        except Exception as e:
            protocol._fail(e)
        protocol.on_message = callback
        # shielded: a listener cancelled (to be restarted) must not cancel the connection's closed future,
        # or a later loss of the connection would go unnoticed and a later subscribe would raise CancelledError
        await asyncio.shield(protocol.closed)

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
