"""The seam between the hub and alpaca-py's data stream (tested with alpaca-py 0.44.0, pinned).

alpaca-py's ``DataStream.run()`` owns an event loop (``asyncio.run``), and its
``_run_forever`` logs 402/406/409 and retries forever, so a hub could never tell
"bad keys" from "slot taken". We therefore run the SDK's own coroutines inside
the hub's uvloop loop and supervise them ourselves:

- ``_connect`` (websocket, headers, the ``connected`` greeting) and
  ``_send_subscribe_msg`` / ``close`` are the SDK's;
- ``_consume``, the SDK's receive loop, is replaced (:meth:`_HubStreamMixin._consume`):
  profiling the hub at full speed (py-spy, 100 quotes per frame, see
  docs/scaling.md) put 38% of its time in the SDK's ``msgpack.unpackb`` line,
  most of it building one Python ``msgpack.Timestamp`` per quote, and 19% in
  its per-message ``await self._dispatch(msg)``. Ours decodes a frame of
  quotes with msgspec into typed structs (:mod:`.alpaca_frames`) and hands the
  whole frame to one synchronous hub call with one receive time; any other
  frame is unpacked as the SDK does (``timestamp=2``: int nanoseconds from C)
  and only its non-quote messages go through ``_dispatch``, one await each;
- ``_auth`` is replaced (:meth:`_HubStreamMixin._auth`) only to keep Alpaca's
  error *code*, which the SDK folds into a ValueError message;
- ``_dispatch`` is extended to hand ``error`` and ``subscription`` frames to
  the hub (the SDK would only log them); everything else goes to the SDK.
  Quote handlers are still registered through ``subscribe_quotes``, which
  is what the SDK builds its subscribe messages from.

We never call ``run()``/``_run_forever`` and never set ``_running``, so the
SDK's thread-hopping ``run_coroutine_threadsafe(...).result()`` paths (which
would deadlock in our own loop) are never taken. :func:`check_sdk` verifies at
start that the private methods this relies on still exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgpack
from websockets.exceptions import WebSocketException

from core.errors import ConfigError, SourceError
from hub.marketdata.sources.alpaca_errors import error_from_frame
from hub.marketdata.sources.alpaca_frames import AlpacaQuote, NotAQuoteFrame, decode_quote_frame
from hub.marketdata.sources.alpaca_settings import AlpacaSettings

with warnings.catch_warnings():
    # alpaca-py imports websockets.legacy, which websockets >= 14 flags as deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.enums import CryptoFeed, DataFeed
    from alpaca.data.live.crypto import CryptoDataStream
    from alpaca.data.live.stock import StockDataStream

log = logging.getLogger(__name__)

QuoteHandler = Callable[[dict[str, Any]], Awaitable[None]]
ControlHandler = Callable[[dict[str, Any]], None]
#: Takes one generically decoded frame and its receive time (ns); returns the messages that are not quotes.
FrameHandler = Callable[[Any, int], list[dict[str, Any]]]
#: Takes one frame of quotes (decoded by alpaca_frames) and its receive time (ns).
QuotesHandler = Callable[[list[AlpacaQuote], int], None]
#: Like the SDK's: how long one recv waits before the stop queue is looked at again.
RECV_TIMEOUT_S = 5.0

#: Websocket keepalive: a peer that stops answering pings is dropped after interval + timeout.
WEBSOCKET_PARAMS = {"ping_interval": 10, "ping_timeout": 20, "max_queue": 1024, "close_timeout": 2}
_SDK_METHODS = ("_connect", "_consume", "_dispatch", "_send_subscribe_msg", "close", "_handlers", "_ws",
                "_stop_stream_queue")


class _HubStreamMixin:
    """Overrides shared by the stock and crypto streams; ``on_control`` is set by the source."""

    on_control: ControlHandler
    on_frame: FrameHandler
    on_quotes: QuotesHandler
    _ws: Any
    _stop_stream_queue: Any
    _api_key: str
    _secret_key: str

    async def _auth(self) -> None:
        await self._ws.send(msgpack.packb({"action": "auth", "key": self._api_key, "secret": self._secret_key}))
        reply = msgpack.unpackb(await self._ws.recv())
        first = reply[0] if isinstance(reply, list) and reply else reply
        if isinstance(first, dict) and first.get("T") == "success" and first.get("msg") == "authenticated":
            return
        raise error_from_frame(first)

    async def _consume(self) -> bool:
        """The SDK's receive loop without its per-quote costs; returns False when asked to stop."""
        ws, stop_queue, on_quotes = self._ws, self._stop_stream_queue, self.on_quotes
        while True:
            if not stop_queue.empty():
                stop_queue.get_nowait()
                await self.close()  # type: ignore[attr-defined]
                return False
            try:
                raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
            except TimeoutError:
                continue  # recv can hang on a quiet stream; look at the stop queue again
            recv_ns = time.time_ns()
            try:
                quotes = decode_quote_frame(raw)
            except NotAQuoteFrame:
                for msg in self.on_frame(msgpack.unpackb(raw, timestamp=2), recv_ns):
                    await self._dispatch(msg)
                continue
            on_quotes(quotes, recv_ns)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("T")
        if kind in ("error", "subscription", "success"):
            self.on_control(msg)
            return
        await super()._dispatch(msg)  # type: ignore[misc]


class HubStockStream(_HubStreamMixin, StockDataStream):
    pass


class HubCryptoStream(_HubStreamMixin, CryptoDataStream):
    pass


def check_sdk() -> None:
    """Fail at start, clearly, if this alpaca-py lacks the internals the adapter drives."""
    probe = HubStockStream("k", "s", raw_data=True)
    missing = [name for name in _SDK_METHODS if not hasattr(probe, name)]
    if missing:
        raise ConfigError(f"the installed alpaca-py lacks {', '.join(missing)}; install the pinned "
                          "version (pip install alpaca-py==0.44.0)")


def make_stream(settings: AlpacaSettings, on_control: ControlHandler, on_frame: FrameHandler,
                on_quotes: QuotesHandler) -> StockDataStream | CryptoDataStream:
    """A fresh SDK stream object for one connection."""
    stream: StockDataStream | CryptoDataStream
    if settings.asset_class == "crypto":
        try:
            crypto_feed = CryptoFeed(settings.crypto_feed)
        except ValueError:
            choices = ", ".join(f.value for f in CryptoFeed)
            raise ConfigError(f"setting 'crypto_feed': {settings.crypto_feed!r} is not one of {choices}") from None
        stream = HubCryptoStream(settings.api_key, settings.api_secret, raw_data=True, feed=crypto_feed,
                                 url_override=settings.stream_url,
                                 websocket_params=dict(WEBSOCKET_PARAMS))
    else:
        feed = DataFeed.SIP if settings.feed == "sip" else DataFeed.IEX
        stream = HubStockStream(settings.api_key, settings.api_secret, raw_data=True, feed=feed,
                                url_override=settings.stream_url, websocket_params=dict(WEBSOCKET_PARAMS))
    stream.on_control = on_control
    stream.on_frame = on_frame
    stream.on_quotes = on_quotes
    return stream


def add_quote_handlers(stream: StockDataStream | CryptoDataStream, handler: QuoteHandler,
                       symbols: tuple[str, ...]) -> None:
    """Register ``handler`` for ``symbols``; with ``_running`` false this is a plain dict update."""
    if stream._running:  # the SDK would block on run_coroutine_threadsafe(...).result() in our own loop
        raise SourceError("alpaca-py's stream reports _running; the hub drives the stream itself and "
                          "never calls run(); is another caller using this stream object?")
    stream.subscribe_quotes(cast(Any, handler), *symbols)


def request_stop(stream: Any) -> None:
    """Ask the SDK's ``_consume`` to return; it checks this queue before every frame.

    Cancelling alone is not enough on Python 3.11: ``asyncio.wait_for`` (which
    ``_consume`` wraps around every ``recv``) drops a cancellation that arrives as
    the frame completes, and under a steady feed that is nearly always.
    """
    if stream._stop_stream_queue.empty():
        stream._stop_stream_queue.put_nowait({"should_stop": True})


def abort_stream(stream: Any) -> None:
    """Drop the TCP connection now. The legacy websocket close handshake can wait out several
    ``close_timeout`` rounds while a flooding server's frames fill its receive queue."""
    ws = stream._ws
    if ws is not None and getattr(ws, "transport", None) is not None:
        ws.transport.abort()


async def close_stream(stream: Any) -> None:
    """Close the SDK stream; a connection that is already gone is not an error."""
    try:
        await asyncio.wait_for(stream.close(), 3.0)
    except (WebSocketException, OSError) as e:
        log.debug("closing the stream: %s", e)
