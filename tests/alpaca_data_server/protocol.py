"""Alpaca market-data websocket protocol: frames, messages and error codes, as Alpaca documents them.

Every server message is an array of objects with a ``T`` type field. Frames are
msgpack (binary) when the client sent ``Content-Type: application/msgpack`` on
the upgrade request (alpaca-py does), JSON text frames otherwise. In msgpack,
``t`` is a msgpack Timestamp (ext type -1); in JSON an RFC 3339 string with
nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgpack

#: code -> message, from Alpaca's market-data stream documentation.
ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    410: "invalid subscribe action",
    500: "internal error",
}

#: Channels a subscribe action may name, in the order Alpaca's ack lists them.
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")


def error(code: int) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": ERRORS[code]}


def success(msg: str) -> dict[str, Any]:
    return {"T": "success", "msg": msg}


def subscription_ack(subscribed: dict[str, set[str]]) -> dict[str, Any]:
    ack: dict[str, Any] = {"T": "subscription"}
    for channel in CHANNELS:
        ack[channel] = sorted(subscribed.get(channel, ()))
    ack["corrections"] = ack["trades"]
    ack["cancelErrors"] = ack["trades"]
    return ack


def quote(symbol: str, ts_ns: int, bid: float, bid_size: float, ask: float, ask_size: float,
          crypto: bool = False) -> dict[str, Any]:
    """A quote message; stocks carry exchange codes, conditions and tape like Alpaca's."""
    t = msgpack.Timestamp.from_unix_nano(ts_ns)
    if crypto:
        return {"T": "q", "S": symbol, "bp": bid, "bs": bid_size, "ap": ask, "as": ask_size, "t": t}
    return {"T": "q", "S": symbol, "bx": "V", "bp": bid, "bs": bid_size, "ax": "V", "ap": ask,
            "as": ask_size, "c": ["R"], "z": "C", "t": t}


def rfc3339_ns(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def parse_rfc3339_ns(text: str) -> int:
    """``2024-07-01T23:58:01.218485389Z`` -> ns since the epoch (keeps all nine digits)."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def _json_default(value: Any) -> Any:
    if isinstance(value, msgpack.Timestamp):
        return rfc3339_ns(value.to_unix_nano())
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(messages: list[dict[str, Any]], use_msgpack: bool) -> bytes | str:
    if use_msgpack:
        return msgpack.packb(messages)  # type: ignore[no-any-return]
    return json.dumps(messages, default=_json_default, separators=(",", ":"))


def decode_action(frame: bytes | str) -> Any:
    """A client action: msgpack bytes or JSON text. Raises ValueError when unreadable."""
    if isinstance(frame, bytes):
        try:
            return msgpack.unpackb(frame)
        except Exception as e:
            raise ValueError(f"not msgpack: {e}") from e
    return json.loads(frame)
