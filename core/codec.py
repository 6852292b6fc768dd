"""The one wire codec: market-data messages on pub/sub, msgpack-encoded.

A quote message on ``<ns>:md:quote:<SYMBOL>`` is a msgpack array::

    [1, "AAPL", [[ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size], ...]]

- element 0: format version (``WIRE_VERSION``);
- element 1: the symbol (the same as the channel suffix);
- element 2: one or more quotes for that symbol, oldest first. The hub packs
  every quote it received for a symbol since its last flush into one message;
  that is what lets one subscriber read several hundred thousand quotes/s.

Per quote: ``ts_event_ns`` is the exchange/provider event time and
``ts_recv_ns`` the time the hub received it, both integer nanoseconds since
the Unix epoch; prices are floats (0 means "no quote on this side"); sizes are
floats (shares, contracts or coins). A trade message on ``<ns>:md:trade:<SYMBOL>``
has the same envelope with rows ``[ts_event_ns, ts_recv_ns, price, size]``.

Plain ``msgpack.unpackb(raw)`` decodes every message; nothing here is private.

Bounds checked at decode (a value outside them makes the message a bad message,
counted and skipped by the reader; docs/data-quality.md):

- prices: finite, ``0 <= price <= MAX_PRICE`` (1e9; 0 means "no quote on this side");
- sizes: finite, ``0 <= size <= MAX_SIZE`` (1e15, room for coins quoted in units of 1e-8);
- timestamps: integers, ``0 <= ts_ns <= MAX_TS_NS`` (2100-01-01T00:00:00Z).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from core.errors import DecodeError
from core.names import shown

WIRE_VERSION = 1
QUOTE_ROW_LEN = 6
TRADE_ROW_LEN = 4

QuoteRow = tuple[int, int, float, float, float, float]
#: Largest price a quote or trade may carry (any real instrument is far below it).
MAX_PRICE = 1e9
#: Largest size (shares, contracts or coins).
MAX_SIZE = 1e15
#: Latest timestamp accepted: 2100-01-01T00:00:00Z in ns (an int64 holds it with room to spare).
MAX_TS_NS = 4_102_444_800 * 1_000_000_000
#: Judges one validated quote row (``[ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size]``).
RowCheck = Callable[[list[Any]], bool]


@dataclass(frozen=True, slots=True)
class Quote:
    """One top-of-book quote. Immutable; timestamps in ns since the epoch."""

    symbol: str
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    ts_event_ns: int
    ts_recv_ns: int

    @property
    def instrument(self) -> str:
        """The seed API's name for ``symbol``."""
        return self.symbol

    @property
    def has_bid(self) -> bool:
        return self.bid > 0.0

    @property
    def has_ask(self) -> bool:
        return self.ask > 0.0

    @property
    def is_two_sided(self) -> bool:
        return self.has_bid and self.has_ask

    @property
    def is_crossed(self) -> bool:
        return self.is_two_sided and self.bid > self.ask

    @property
    def is_locked(self) -> bool:
        return self.is_two_sided and self.bid == self.ask

    @property
    def mid(self) -> float | None:
        """Plain mid, or None when the quote is not two-sided."""
        return (self.bid + self.ask) / 2.0 if self.is_two_sided else None

    def to_row(self) -> QuoteRow:
        return (self.ts_event_ns, self.ts_recv_ns, self.bid, self.bid_size, self.ask, self.ask_size)

    def __getitem__(self, field: str) -> Any:
        """Dict-style access, as the seed's ``run(data)`` examples use (``data['bid']``)."""
        try:
            return getattr(self, field)
        except AttributeError:
            raise KeyError(field) from None


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    price: float
    size: float
    ts_event_ns: int
    ts_recv_ns: int


_pack: Callable[[object], bytes] = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb  # arrays as lists, str as str: the defaults


def encode_quote_rows(symbol: str, rows: list[QuoteRow]) -> bytes:
    """One wire message carrying ``rows`` (oldest first) for ``symbol``."""
    return _pack((WIRE_VERSION, symbol, rows))


def encode_quotes(quotes: list[Quote]) -> bytes:
    """One wire message for quotes that all share one symbol."""
    return encode_quote_rows(quotes[0].symbol, [q.to_row() for q in quotes])


def encode_trade_rows(symbol: str, rows: list[tuple[int, int, float, float]]) -> bytes:
    return _pack((WIRE_VERSION, symbol, rows))


def _envelope(raw: bytes) -> tuple[str, list[Any]]:
    """Split a wire message into (symbol, rows); the rows are not looked at."""
    try:
        message = _unpackb(raw)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"not msgpack: {type(e).__name__}", raw) from e
    if not isinstance(message, list) or len(message) != 3:
        raise DecodeError("expected [version, symbol, rows]", raw)
    version, symbol, rows = message
    if version != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {shown(version)}", raw)
    if not isinstance(symbol, str) or not isinstance(rows, list) or not rows:
        raise DecodeError("symbol must be a string and rows a non-empty list", raw)
    return symbol, rows


def _check_row_shape(row: Any, row_len: int, raw: bytes) -> None:
    if not isinstance(row, list) or len(row) != row_len:
        raise DecodeError(f"each row must be a list of {row_len} values", raw)


def decode_rows(raw: bytes, row_len: int) -> tuple[str, list[Any]]:
    """Split a wire message into (symbol, rows); every row's shape is checked, not its values."""
    symbol, rows = _envelope(raw)
    for row in rows:
        _check_row_shape(row, row_len, raw)
    return symbol, rows


def _number(value: Any, name: str, raw: bytes, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(f"{name} is not a number: {shown(value)}", raw)
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not (0.0 <= number <= limit):  # NaN fails too
        raise DecodeError(f"{name} must be finite and within 0..{limit:g}, got {shown(value)}", raw)
    return number


def _timestamp(value: Any, name: str, raw: bytes) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TS_NS:
        raise DecodeError(f"{name} must be an integer of ns within 0..{MAX_TS_NS} (year 2100), got {shown(value)}", raw)
    return value


def is_clean_row(row: list[Any]) -> bool:
    """A six-value row exactly as the hub writes it (float prices and sizes, int ns), valid.

    One chained test instead of a call per field; NaN fails every comparison,
    so ``0.0 <= x <= MAX_PRICE`` is "finite and within bounds".
    """
    ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size = row
    return (type(bid) is float and type(ask) is float and type(bid_size) is float and type(ask_size) is float
            and 0.0 <= bid <= MAX_PRICE and 0.0 <= ask <= MAX_PRICE
            and 0.0 <= bid_size <= MAX_SIZE and 0.0 <= ask_size <= MAX_SIZE
            and type(ts_event_ns) is int and type(ts_recv_ns) is int
            and 0 <= ts_event_ns <= MAX_TS_NS and 0 <= ts_recv_ns <= MAX_TS_NS)


def quote_from_row(symbol: str, row: list[Any], raw: bytes = b"") -> Quote:
    """Validate one decoded row. Non-numeric fields and values outside the bounds raise DecodeError."""
    if is_clean_row(row):
        return quote_from_valid_row(symbol, row)
    ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size = row
    return Quote(
        symbol=symbol,
        bid=_number(bid, "bid", raw, MAX_PRICE),
        bid_size=_number(bid_size, "bid_size", raw, MAX_SIZE),
        ask=_number(ask, "ask", raw, MAX_PRICE),
        ask_size=_number(ask_size, "ask_size", raw, MAX_SIZE),
        ts_event_ns=_timestamp(ts_event_ns, "ts_event_ns", raw),
        ts_recv_ns=_timestamp(ts_recv_ns, "ts_recv_ns", raw),
    )


def decode_latest_row(raw: bytes) -> tuple[str, list[Any], int]:
    """The symbol, the newest quote row (validated) and how many quotes the message held.

    This is every agent's per-message cost. Agents conflate to the newest quote,
    so only the last row is checked; the older ones are counted, never used.
    The row becomes a Quote (``quote_from_valid_row``) only if it is run.
    """
    try:
        message = _unpackb(raw)
    except Exception:
        message = None
    if type(message) is list and len(message) == 3:
        version, symbol, rows = message
        if version == WIRE_VERSION and type(symbol) is str and type(rows) is list and rows:
            row = rows[-1]
            if type(row) is list and len(row) == QUOTE_ROW_LEN and is_clean_row(row):
                return symbol, row, len(rows)
    # anything else: accept integer prices and sizes, or raise the precise DecodeError
    symbol, rows = _envelope(raw)
    _check_row_shape(rows[-1], QUOTE_ROW_LEN, raw)
    return symbol, list(quote_from_row(symbol, rows[-1], raw).to_row()), len(rows)


def decode_latest_usable_row(raw: bytes, usable: RowCheck) -> tuple[str, list[Any] | None, int, int]:
    """Like :func:`decode_latest_row`, but the newest row that ``usable`` accepts (None: none did).

    Returns (symbol, row or None, rows in the message, rows newer than the one returned).
    The newest row is judged first, so the usual cost is one call of ``usable``;
    only when it is refused are the older rows unpacked again and judged, newest first.
    """
    symbol, row, count = decode_latest_row(raw)
    if usable(row):
        return symbol, row, count, 0
    _, rows = _envelope(raw)
    for index in range(count - 2, -1, -1):
        older = rows[index]
        _check_row_shape(older, QUOTE_ROW_LEN, raw)
        if not is_clean_row(older):
            older = list(quote_from_row(symbol, older, raw).to_row())
        if usable(older):
            return symbol, older, count, count - 1 - index
    return symbol, None, count, count


def quote_from_valid_row(symbol: str, row: list[Any]) -> Quote:
    """A Quote from a row ``decode_latest_row`` returned."""
    ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size = row
    return Quote(symbol, bid, bid_size, ask, ask_size, ts_event_ns, ts_recv_ns)


def decode_latest_quote(raw: bytes) -> tuple[Quote, int]:
    """The newest quote in a message, and how many quotes the message held."""
    symbol, row, count = decode_latest_row(raw)
    return quote_from_valid_row(symbol, row), count


def decode_quotes(raw: bytes) -> list[Quote]:
    """Every quote in a message, validated."""
    symbol, rows = decode_rows(raw, QUOTE_ROW_LEN)
    return [quote_from_row(symbol, row, raw) for row in rows]


def decode_trades(raw: bytes) -> list[Trade]:
    symbol, rows = decode_rows(raw, TRADE_ROW_LEN)
    trades = []
    for ts_event_ns, ts_recv_ns, price, size in rows:
        trades.append(Trade(symbol, _number(price, "price", raw, MAX_PRICE), _number(size, "size", raw, MAX_SIZE),
                            _timestamp(ts_event_ns, "ts_event_ns", raw),
                            _timestamp(ts_recv_ns, "ts_recv_ns", raw)))
    return trades


def quote_to_hash(quote: Quote) -> dict[str, str]:
    """The human-readable fields of ``<ns>:quote:<SYMBOL>``."""
    return {
        "bid": repr(quote.bid),
        "bid_size": repr(quote.bid_size),
        "ask": repr(quote.ask),
        "ask_size": repr(quote.ask_size),
        "ts_ns": str(quote.ts_event_ns),
        "ts_recv_ns": str(quote.ts_recv_ns),
    }


def quote_from_hash(symbol: str, fields: dict[str, str]) -> Quote:
    """Inverse of :func:`quote_to_hash`, for readers of the latest-quote hash; same bounds as the wire."""
    try:
        row = [int(fields["ts_ns"]), int(fields.get("ts_recv_ns", 0)), float(fields["bid"]),
               float(fields["bid_size"]), float(fields["ask"]), float(fields["ask_size"])]
    except (KeyError, ValueError) as e:
        raise DecodeError(f"latest-quote hash for {symbol} is incomplete: {e}", b"") from e
    return quote_from_row(symbol, row)


def encode_cache_change(symbol: str, fields: list[str], ts_ns: int) -> bytes:
    """Notification published after a DataCache write: ``[symbol, [field, ...], ts_ns]``."""
    return _pack((symbol, fields, ts_ns))


def decode_cache_change(raw: bytes) -> tuple[str, list[str], int]:
    try:
        symbol, fields, ts_ns = msgpack.unpackb(raw, raw=False)
    except Exception as e:
        raise DecodeError(f"not a cache-change message: {type(e).__name__}", raw) from e
    if not isinstance(symbol, str) or not isinstance(fields, list) or not isinstance(ts_ns, int):
        raise DecodeError("expected [symbol, [fields], ts_ns]", raw)
    _timestamp(ts_ns, "ts_ns", raw)
    return symbol, [str(f) for f in fields], ts_ns
