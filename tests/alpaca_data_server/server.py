"""A local server speaking Alpaca's market-data websocket protocol, controllable from tests.

Flow per connection, as Alpaca documents it::

    server: [{"T":"success","msg":"connected"}]
    client: {"action":"auth","key":...,"secret":...}
    server: [{"T":"success","msg":"authenticated"}]          (or 402 / 406 / 409, then close)
    client: {"action":"subscribe","quotes":["AAPL"],...}
    server: [{"T":"subscription","trades":[],"quotes":["AAPL"],...}]
    server: [{"T":"q","S":"AAPL","bp":...,"t":Timestamp}, ...]  (batched arrays)

Like Alpaca it allows one authenticated connection per key (a second one gets
406), refuses more than ``symbol_limit`` symbols with 405, refuses the ``sip``
feed with 409 when ``sip_allowed`` is false, and cuts a client that does not
read fast enough with 407 (a send that stays blocked ``slow_client_timeout_s``).
Tests steer it with :meth:`reject_406_for`, :meth:`push_quotes`,
:meth:`send_raw`, :meth:`cut_all` and :meth:`start_stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.alpaca_data_server import protocol

log = logging.getLogger(__name__)

QuoteRow = tuple[str, int, float, float, float, float]  # symbol, ts_ns, bid, bid_size, ask, ask_size


@dataclass
class Session:
    id: int
    ws: ServerConnection
    path: str
    use_msgpack: bool
    key: str | None = None
    subscribed: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in protocol.CHANNELS})

    @property
    def crypto(self) -> bool:
        return "crypto" in self.path

    def symbol_count(self, subscribed: dict[str, set[str]] | None = None) -> int:
        subs = subscribed or self.subscribed
        return len(set().union(*subs.values()))


class AlpacaDataServer:
    """Serve ``ws://host:port/<any path>``; ``/v2/iex``, ``/v2/sip``, ``/v1beta3/crypto/us`` are typical."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, credentials: dict[str, str] | None = None,
                 symbol_limit: int = 0, sip_allowed: bool = True, slow_client_timeout_s: float = 1.0,
                 auth_timeout_s: float = 10.0) -> None:
        self.host, self.port = host, port
        self.credentials = credentials if credentials is not None else {"key": "secret"}
        self.symbol_limit = symbol_limit
        self.sip_allowed = sip_allowed
        self.slow_client_timeout_s = slow_client_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.sessions: dict[int, Session] = {}
        self.connections = 0
        self.actions: list[tuple[int, dict[str, Any]]] = []
        self.errors_sent: list[int] = []
        self.quotes_sent = 0
        self.cutoffs = 0
        self._ids = itertools.count(1)
        self._slots: dict[str, int] = {}
        self._reject_406_until = 0.0
        self._reject_406_remaining = 0
        self._server: Server | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._mids: dict[str, float] = {}
        self._rng = random.Random(7)

    # lifecycle
    async def start(self) -> None:
        self._server = await serve(self._handle, self.host, self.port, compression=None, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port

    async def stop(self) -> None:
        await self.stop_stream()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, path: str = "/v2/iex") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    # controls
    def reject_next_auths_406(self, count: int) -> None:
        """Answer the next ``count`` auth attempts with 406, whenever they come."""
        self._reject_406_remaining = count

    def reject_406_for(self, seconds: float) -> None:
        """Answer every auth with 406 for ``seconds`` (a stale connection holding the slot)."""
        self._reject_406_until = time.monotonic() + seconds

    def subscribed(self, channel: str = "quotes") -> set[str]:
        return set().union(*(s.subscribed[channel] for s in self.sessions.values()))

    async def push_quotes(self, rows: list[QuoteRow]) -> int:
        """Send ``rows`` in one batched frame to each session subscribed to their symbols."""
        sent = 0
        for session in list(self.sessions.values()):
            wanted = session.subscribed["quotes"]
            messages = [protocol.quote(*row, crypto=session.crypto) for row in rows
                        if row[0] in wanted or "*" in wanted]
            if messages and await self._send(session, messages):
                sent += len(messages)
        return sent

    async def send_raw(self, payload: bytes | str) -> None:
        """Send one frame as given (for malformed-frame tests) to every authenticated session."""
        for session in list(self.sessions.values()):
            if session.key is not None:
                await session.ws.send(payload)

    async def cut_all(self) -> None:
        """Drop every connection abruptly: no close frame, as a network failure would."""
        for session in list(self.sessions.values()):
            session.ws.transport.abort()

    def start_stream(self, rate_qps: float, batch_max: int = 500) -> None:
        """Emit random-walk quotes for every subscribed symbol at ``rate_qps`` in total."""
        if self._stream_task is None:
            self._stream_task = asyncio.ensure_future(self._stream(rate_qps, batch_max))

    def start_blast(self, batch: int = 500) -> None:
        """Send pre-encoded quote frames as fast as each client reads them (for throughput measurements)."""
        if self._stream_task is None:
            self._stream_task = asyncio.ensure_future(self._blast(batch))

    async def stop_stream(self) -> None:
        task, self._stream_task = self._stream_task, None
        if task is None:
            return
        # Python 3.11's wait_for swallows a cancel that lands as the send it waits on completes
        # (gh-86296), and the stream went on: ask again until it has ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # protocol
    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        content_type = request.headers.get("Content-Type", "")
        session = Session(next(self._ids), ws, request.path, use_msgpack="msgpack" in content_type)
        self.connections += 1
        self.sessions[session.id] = session
        try:
            await self._send(session, [protocol.success("connected")])
            if await self._authenticate(session):
                async for frame in ws:
                    await self._on_action(session, frame)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.pop(session.id, None)
            if session.key is not None and self._slots.get(session.key) == session.id:
                del self._slots[session.key]

    async def _authenticate(self, session: Session) -> bool:
        while True:
            try:
                frame = await asyncio.wait_for(session.ws.recv(), self.auth_timeout_s)
            except TimeoutError:
                return await self._refuse(session, 404)
            action = self._read_action(frame)
            if action is None:
                await self._send(session, [protocol.error(400)])
                continue
            self._record(session, action)
            if action.get("action") != "auth":
                await self._send(session, [protocol.error(401)])
                continue
            code = self._auth_problem(session, action)
            if code:
                return await self._refuse(session, code)
            session.key = str(action.get("key"))
            self._slots[session.key] = session.id
            await self._send(session, [protocol.success("authenticated")])
            return True

    def _auth_problem(self, session: Session, action: dict[str, Any]) -> int:
        key, secret = action.get("key"), action.get("secret")
        if self.credentials and self.credentials.get(str(key)) != secret:
            return 402
        holder = self._slots.get(str(key))
        if self._reject_406_remaining > 0:
            self._reject_406_remaining -= 1
            return 406
        if time.monotonic() < self._reject_406_until or (holder is not None and holder in self.sessions):
            return 406
        if session.path.rstrip("/").endswith("/sip") and not self.sip_allowed:
            return 409
        return 0

    async def _refuse(self, session: Session, code: int) -> bool:
        await self._send(session, [protocol.error(code)])
        await session.ws.close()
        return False

    async def _on_action(self, session: Session, frame: bytes | str) -> None:
        action = self._read_action(frame)
        if action is None:
            await self._send(session, [protocol.error(400)])
            return
        self._record(session, action)
        kind = action.get("action")
        if kind == "auth":
            await self._send(session, [protocol.error(403)])
        elif kind in ("subscribe", "unsubscribe"):
            await self._change_subscription(session, action, add=kind == "subscribe")
        else:
            await self._send(session, [protocol.error(400)])

    async def _change_subscription(self, session: Session, action: dict[str, Any], add: bool) -> None:
        proposed = {channel: set(symbols) for channel, symbols in session.subscribed.items()}
        for channel in protocol.CHANNELS:
            symbols = action.get(channel, [])
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                await self._send(session, [protocol.error(410)])
                return
            if add:
                proposed[channel] |= set(symbols)
            else:
                proposed[channel] -= set(symbols)
        if self.symbol_limit and session.symbol_count(proposed) > self.symbol_limit:
            await self._send(session, [protocol.error(405)])
            return
        session.subscribed = proposed
        await self._send(session, [protocol.subscription_ack(proposed)])

    def _read_action(self, frame: bytes | str) -> dict[str, Any] | None:
        try:
            action = protocol.decode_action(frame)
        except ValueError:
            return None
        return action if isinstance(action, dict) else None

    def _record(self, session: Session, action: dict[str, Any]) -> None:
        shown = {k: ("***" if k == "secret" else v) for k, v in action.items()}
        self.actions.append((session.id, shown))

    async def _send(self, session: Session, messages: list[dict[str, Any]]) -> bool:
        """Send one frame; a client that stays blocked past the timeout is cut off with 407."""
        for message in messages:
            if message.get("T") == "error":
                self.errors_sent.append(int(message["code"]))
        try:
            await asyncio.wait_for(session.ws.send(protocol.encode(messages, session.use_msgpack)),
                                   self.slow_client_timeout_s)
        except TimeoutError:
            await self._cut_slow(session)
            return False
        except ConnectionClosed:
            return False
        self.quotes_sent += sum(1 for m in messages if m.get("T") == "q")
        return True

    async def _cut_slow(self, session: Session) -> None:
        self.cutoffs += 1
        self.errors_sent.append(407)
        log.warning("session %d is not reading: 407 slow client, closing", session.id)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            frame = protocol.encode([protocol.error(407)], session.use_msgpack)
            await asyncio.wait_for(session.ws.send(frame), 0.2)
        session.ws.transport.abort()

    async def _stream(self, rate_qps: float, batch_max: int) -> None:
        started_s, emitted = time.monotonic(), 0
        while True:
            await asyncio.sleep(0.005)
            target = int((time.monotonic() - started_s) * rate_qps)
            # Never more than 100 ms worth at once: a server that falls behind skips, it does not pile up.
            due = min(target - emitted, max(int(rate_qps / 10), 1))
            emitted = target
            for session in list(self.sessions.values()):
                symbols = sorted(session.subscribed["quotes"])
                if symbols and session.key is not None:
                    await self._emit(session, symbols, due, batch_max)

    async def _emit(self, session: Session, symbols: list[str], count: int, batch_max: int) -> None:
        now_ns = time.time_ns()
        rows = [self._next_quote(symbols[i % len(symbols)], now_ns) for i in range(count)]
        for start in range(0, len(rows), batch_max):
            messages = [protocol.quote(*row, crypto=session.crypto) for row in rows[start:start + batch_max]]
            if not await self._send(session, messages):
                return
            await asyncio.sleep(0)  # let control calls (stop, push) in between frames

    async def _blast(self, batch: int) -> None:
        frames: dict[int, list[bytes | str]] = {}
        while True:
            sessions = [s for s in self.sessions.values() if s.key is not None and s.subscribed["quotes"]]
            if not sessions:
                await asyncio.sleep(0.01)
            for session in sessions:
                if session.id not in frames:
                    symbols = sorted(session.subscribed["quotes"])
                    rows = [self._next_quote(symbols[i % len(symbols)], time.time_ns()) for i in range(batch * 20)]
                    frames[session.id] = [protocol.encode([protocol.quote(*r, crypto=session.crypto)
                                                           for r in rows[i:i + batch]], session.use_msgpack)
                                          for i in range(0, len(rows), batch)]
                try:
                    for frame in frames[session.id]:
                        await session.ws.send(frame)
                except ConnectionClosed:
                    continue
                self.quotes_sent += batch * len(frames[session.id])

    def _next_quote(self, symbol: str, ts_ns: int) -> QuoteRow:
        mid = self._mids.get(symbol, 100.0) + self._rng.choice((-0.01, 0.0, 0.01))
        self._mids[symbol] = mid = max(mid, 1.0)
        bid = round(mid - 0.01, 2)
        return symbol, ts_ns, bid, float(self._rng.randint(1, 9)), round(bid + 0.02, 2), float(self._rng.randint(1, 9))
