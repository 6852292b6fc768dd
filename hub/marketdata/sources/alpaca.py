"""``--source alpaca``: live Alpaca quotes through alpaca-py, supervised inside the hub's uvloop loop.

Integration: the SDK's coroutines (connect, consume, subscribe) run as tasks of
the hub's own loop, not in a thread and not through ``DataStream.run()``; see
:mod:`hub.marketdata.sources.alpaca_stream` for why and for exactly which SDK parts run.
The quote handler is one plain function call into ``Publisher.add_quote`` (no
await, no Redis per quote); the publisher batches and pipelines.

Per quote, Alpaca's msgpack Timestamp ``t`` becomes ``ts_event_ns`` (all nine
digits, decoded by msgpack's C unpacker) and the hub's wall clock when the
frame arrived ``ts_recv_ns`` (one reading per frame: its quotes arrived together).

Failures:

- 402 -> :class:`AuthenticationError`, 409 -> :class:`InsufficientSubscriptionError`,
  405 on the initial subscription -> :class:`SymbolLimitExceededError` (exit 77).
  405 for symbols added at runtime drops those symbols and keeps streaming.
- 406 ``connection limit exceeded`` is retried with backoff for ``connect_grace``;
  then a CRITICAL log and :class:`ConnectionLimitExceededError` (exit 75).
- Disconnects, 407 ``slow client``, 500, a failed connect, and a stall (no
  message for ``stall_timeout``) reconnect with capped exponential backoff and
  jitter, resubscribing the current symbols. Malformed frames are skipped and
  counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from websockets.exceptions import WebSocketException

from core.errors import ConnectionLimitExceededError
from core.ratelimit import RateLimitedLog
from core.settings import format_duration_ns
from hub.marketdata.publisher import Publisher
from hub.marketdata.sources.alpaca_errors import (
    CONNECTION_LIMIT,
    HARMLESS_CODES,
    SLOW_CLIENT,
    SYMBOL_LIMIT,
    AlpacaStreamError,
    StallError,
    error_from_frame,
    provider_error,
)
from hub.marketdata.sources.alpaca_frames import AlpacaQuote, timestamp_ns
from hub.marketdata.sources.alpaca_settings import AlpacaSettings, us_market_open
from hub.marketdata.sources.alpaca_stream import (
    abort_stream,
    add_quote_handlers,
    check_sdk,
    close_stream,
    make_stream,
    request_stop,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
CLOSE_GRACE_S = 1.0
INF = math.inf
#: Frame-level problems the SDK's receive loop raises for malformed input.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, msgpack.UnpackException)
#: Errors after which a new connection may succeed.
_RECONNECTABLE = (WebSocketException, OSError, ValueError, msgpack.UnpackException)


@dataclass
class AlpacaStats:
    received: int = 0
    malformed: int = 0
    reconnects: int = 0
    slow_client_cutoffs: int = 0
    stalls: int = 0
    refused_symbols: int = 0
    last_error: str = ""


class AlpacaSource:
    def __init__(self, symbols: tuple[str, ...], settings: AlpacaSettings) -> None:
        check_sdk()
        self._settings = settings
        self._symbols = symbols
        self.stats = AlpacaStats()
        self._state = "idle"
        self._stream: Any = None
        self._publisher: Publisher | None = None
        self._last_msg_ns = 0
        self._refused_since_ns: int | None = None
        self._pending_adds: set[str] = set()
        self._subscribed: set[str] = set()
        self._symbols_added = asyncio.Event()
        self._rate_mark = (time.monotonic_ns(), 0)
        self._rlog = RateLimitedLog(log)

    # Source protocol
    async def run(self, publisher: Publisher, stop: asyncio.Event) -> None:
        self._publisher = publisher
        attempt = 0
        while not stop.is_set():
            if not self._symbols:
                self._state = "waiting_for_symbols"
                await _wait_any(stop, self._symbols_added)
                self._symbols_added.clear()
                continue
            received_before = self.stats.received
            try:
                await self._session(stop)
            except AlpacaStreamError as e:
                self._on_refusal(e)
            except (*_RECONNECTABLE, StallError) as e:
                self._note_disconnect(e)
            if stop.is_set():
                break
            attempt = 1 if self.stats.received > received_before else attempt + 1
            self.stats.reconnects += 1
            self._state = "waiting_to_reconnect"
            await _wait_any(stop, timeout_s=self._delay_s(attempt))
        self._state = "stopped"

    async def add_symbols(self, symbols: tuple[str, ...]) -> None:
        new = tuple(s for s in symbols if s not in self._symbols)
        if not new:
            return
        self._symbols += new
        self._symbols_added.set()
        stream = self._stream
        if stream is None:
            return  # the next connection subscribes to every symbol
        add_quote_handlers(stream, self._on_quote, new)
        self._pending_adds.update(new)
        try:
            await stream._send_subscribe_msg()
        except (WebSocketException, OSError) as e:
            log.info("could not subscribe %s now (%s); will on reconnect", ",".join(new), e)

    async def remove_symbols(self, symbols: tuple[str, ...]) -> None:
        gone = tuple(s for s in symbols if s in self._symbols)
        if not gone:
            return
        self._symbols = tuple(s for s in self._symbols if s not in gone)
        self._pending_adds.difference_update(gone)
        stream = self._stream
        if stream is None:
            return  # the next connection subscribes to what is left
        for symbol in gone:  # the SDK's own unsubscribe would block on run_coroutine_threadsafe
            stream._handlers["quotes"].pop(symbol, None)
        try:
            await stream._send_unsubscribe_msg("quotes", list(gone))
        except (WebSocketException, OSError) as e:
            log.info("could not unsubscribe %s now (%s); the next connection leaves them out", ",".join(gone), e)

    def status(self) -> Mapping[str, str | int | float]:
        now_ns, (mark_ns, mark_count) = time.monotonic_ns(), self._rate_mark
        self._rate_mark = (now_ns, self.stats.received)
        elapsed_s = (now_ns - mark_ns) / 1e9
        age_ms = (time.time_ns() - self._last_msg_ns) // 1_000_000 if self._last_msg_ns else -1
        return {"connection": self._state, "reconnects": self.stats.reconnects, "last_message_age_ms": age_ms,
                "received": self.stats.received,
                "received_qps": round((self.stats.received - mark_count) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
                "malformed": self.stats.malformed, "slow_client_cutoffs": self.stats.slow_client_cutoffs,
                "stalls": self.stats.stalls, "refused_symbols": self.stats.refused_symbols,
                "subscribed": len(self._subscribed), "last_error": self.stats.last_error,
                "stream_url": self._settings.stream_url}

    # one connection
    async def _session(self, stop: asyncio.Event) -> None:
        stream = make_stream(self._settings, self._on_control, self._take_frame, self._take_quotes)
        add_quote_handlers(stream, self._on_quote, self._symbols)
        self._state = "connecting"
        try:
            await asyncio.wait_for(self._open(stream), CONNECT_TIMEOUT_S)
            self._stream = stream
            self._state = "connected"
            self._last_msg_ns = time.time_ns()
            log.info("streaming %d symbols from %s", len(self._symbols), self._settings.stream_url)
            await self._supervise(stream, stop)
        finally:
            self._stream = None
            await close_stream(stream)

    async def _open(self, stream: Any) -> None:
        await stream._connect()
        await stream._auth()
        self._refused_since_ns = None
        self._state = "subscribing"
        self._pending_adds.clear()
        await stream._send_subscribe_msg()

    async def _supervise(self, stream: Any, stop: asyncio.Event) -> None:
        """Consume until stopped; a disconnect, an error frame or a stall ends the session by raising."""
        tasks = [asyncio.ensure_future(self._consume(stream)), asyncio.ensure_future(self._watch_stall()),
                 asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            request_stop(stream)
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
            if pending:  # the close frame went out; do not wait for the handshake behind a flood
                abort_stream(stream)
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks[:2]:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _consume(self, stream: Any) -> None:
        while True:
            try:
                await stream._consume()
                return
            except _MALFORMED as e:
                self.stats.malformed += 1
                self._rlog.warning("malformed", "skipped a malformed frame (%s: %s); %d so far",
                                   type(e).__name__, e, self.stats.malformed)

    async def _watch_stall(self) -> None:
        timeout_ns = self._settings.stall_timeout_ns
        if timeout_ns == 0:
            await asyncio.Event().wait()  # disabled: wait until the session ends
        while True:
            await asyncio.sleep(min(1.0, timeout_ns / 4e9))
            quiet_ns = time.time_ns() - self._last_msg_ns
            if quiet_ns > timeout_ns and self._stall_applies():
                self.stats.stalls += 1
                raise StallError(f"no message for {format_duration_ns(timeout_ns)}")

    def _stall_applies(self) -> bool:
        s = self._settings
        return s.asset_class == "crypto" or s.stall_check == "always" or us_market_open()

    # handlers called by the SDK's receive loop
    async def _on_quote(self, msg: dict[str, Any]) -> None:
        """The handler registered with the SDK (it builds subscriptions from it); frames come via _take_frame."""
        self._take_frame([msg], time.time_ns())

    def _take_frame(self, msgs: Any, recv_ns: int) -> list[dict[str, Any]]:
        """Hot path: every quote of one frame into the publisher; the other messages are returned."""
        self._last_msg_ns = recv_ns
        others = []
        take = self._take_quote
        for msg in msgs:  # not a list of dicts: TypeError/AttributeError, counted as a malformed frame
            if msg.get("T") == "q":
                take(msg, recv_ns)
            else:
                others.append(msg)
        return others

    def _take_quotes(self, quotes: list[AlpacaQuote], recv_ns: int) -> None:
        """Hottest path: a frame of quotes decoded by alpaca_frames; one add_quote each."""
        self._last_msg_ns = recv_ns
        add = self._publisher.add_quote  # type: ignore[union-attr]
        taken = 0
        for q in quotes:
            bid, bid_size, ask, ask_size = q.bp, q.bs, q.ap, q.as_
            try:
                if not (0.0 <= bid < INF and 0.0 <= ask < INF and 0.0 <= bid_size < INF and 0.0 <= ask_size < INF):
                    raise ValueError("price or size negative or not finite")
                add(q.S, timestamp_ns(q.t), bid, bid_size, ask, ask_size, recv_ns)
            except ValueError as e:
                self.stats.malformed += 1
                self._rlog.warning("bad_quote", "skipped a malformed quote (%s: %s)", type(e).__name__, e)
                continue
            taken += 1
        self.stats.received += taken

    def _take_quote(self, msg: dict[str, Any], recv_ns: int) -> None:
        """One synchronous add_quote; the publisher batches to Redis."""
        try:
            bid, bid_size, ask, ask_size = float(msg["bp"]), float(msg["bs"]), float(msg["ap"]), float(msg["as"])
            ts_ns = msg["t"]
            if type(ts_ns) is not int:
                raise TypeError(f"timestamp {ts_ns!r} is not a msgpack Timestamp")
            if not (0.0 <= bid < INF and 0.0 <= ask < INF and 0.0 <= bid_size < INF and 0.0 <= ask_size < INF):
                raise ValueError("price or size negative or not finite")
            self._publisher.add_quote(msg["S"], ts_ns, bid, bid_size, ask, ask_size,  # type: ignore[union-attr]
                                      recv_ns)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.stats.malformed += 1
            self._rlog.warning("bad_quote", "skipped a malformed quote (%s: %s)", type(e).__name__, e)
            return
        self.stats.received += 1

    def _on_control(self, msg: dict[str, Any]) -> None:
        self._last_msg_ns = time.time_ns()
        kind = msg.get("T")
        if kind == "subscription":
            self._subscribed = set(msg.get("quotes") or ())
            self._pending_adds -= self._subscribed
            return
        if kind != "error":
            return
        error = error_from_frame(msg)
        self.stats.last_error = str(error)
        if error.code == SYMBOL_LIMIT and self._pending_adds:
            self._drop_pending(error)
        elif error.code in HARMLESS_CODES:
            log.error("Alpaca rejected a request: %s", error)
        else:
            raise error

    def _drop_pending(self, error: AlpacaStreamError) -> None:
        dropped = tuple(sorted(self._pending_adds))
        log.error("%s: not streaming %s (the account's symbol limit); the others continue", error, ",".join(dropped))
        self.stats.refused_symbols += len(dropped)
        self._symbols = tuple(s for s in self._symbols if s not in self._pending_adds)
        for symbol in dropped:
            self._stream._handlers["quotes"].pop(symbol, None)
        self._pending_adds.clear()

    # failures
    def _on_refusal(self, error: AlpacaStreamError) -> None:
        self.stats.last_error = str(error)
        fatal = provider_error(error, self._settings.stream_url, len(self._symbols))
        if fatal is not None:
            raise fatal from None
        if error.code == CONNECTION_LIMIT:
            self._on_connection_limit(error)
        elif error.code == SLOW_CLIENT:
            self.stats.slow_client_cutoffs += 1
            log.warning("Alpaca cut us off as a slow client (407); reconnecting")
        else:
            log.warning("Alpaca closed the stream: %s; reconnecting", error)

    def _on_connection_limit(self, error: AlpacaStreamError) -> None:
        now_ns = time.monotonic_ns()
        if self._refused_since_ns is None:
            self._refused_since_ns = now_ns
        waited_ns = now_ns - self._refused_since_ns
        grace_ns = self._settings.connect_grace_ns
        if waited_ns >= grace_ns:
            message = (f"Alpaca still refuses the connection after {format_duration_ns(grace_ns)} "
                       f"(406 connection limit exceeded): another process or a stale session holds this "
                       f"account's only data-stream slot; stop the other client, or wait ~90s and restart")
            log.critical(message)
            raise ConnectionLimitExceededError(message) from None
        log.warning("%s; retrying for up to %.0fs more", error, (grace_ns - waited_ns) / 1e9)

    def _note_disconnect(self, error: BaseException) -> None:
        self.stats.last_error = f"{type(error).__name__}: {error}"
        log.warning("Alpaca stream lost (%s: %s); reconnecting", type(error).__name__, error)

    def _delay_s(self, attempt: int) -> float:
        """Capped exponential backoff with equal jitter; inside a 406 grace window, never past its end."""
        s = self._settings
        capped_s = min(s.backoff_max_ns, s.backoff_min_ns << min(attempt - 1, 30)) / 1e9
        delay_s = capped_s / 2 + random.random() * capped_s / 2
        if self._refused_since_ns is not None:
            left_s = (self._refused_since_ns + s.connect_grace_ns - time.monotonic_ns()) / 1e9
            delay_s = min(delay_s, max(left_s, 0.05))
        return delay_s


async def _wait_any(stop: asyncio.Event, other: asyncio.Event | None = None, timeout_s: float | None = None) -> None:
    """Wait for ``stop`` (or ``other``), at most ``timeout_s``."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
