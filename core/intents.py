"""The intent wire format: one flat string map per ``tf:orders:intents`` stream entry.

Fields (all strings, readable with ``redis-cli XRANGE tf:orders:intents - +``):

==================  =====================================================================
``v``               format version, ``1``
``kind``            ``submit`` | ``cancel`` | ``replace`` | ``cancel_all``
``agent``           sender's name (core.names: the one rule for names)
``client_order_id`` submit: the order's id; replace: the new order's id
``target``          cancel / replace: the client_order_id of the order to act on
``symbol``          submit; optional filter of cancel_all
``side``            ``buy`` | ``sell``
``type``            ``limit`` | ``market``
``qty``             decimal string
``limit_price``     decimal string (limit orders; optional in replace)
``tif``             time in force (``day``, ``gtc``, ``ioc``, ...)
``ts_ns``           when the agent sent it
==================  =====================================================================

Decoding is the first line of defence of the gateway: every value is bounded here
(see docs/order-safety.md), so nothing downstream meets a number it cannot
handle. The price grid and fractional-share rules that need the instrument live
in :mod:`core.ticks` and the gateway's risk checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import cast

from core import names
from core.orders import Intent, Order, OrderType, Side, fmt, to_decimal
from core.ticks import MAX_PRICE, MAX_QTY, MAX_QTY_DECIMALS, decimals, tick_violation

INTENT_VERSION = "1"
KINDS = ("submit", "cancel", "replace", "cancel_all")
TIME_IN_FORCE = ("day", "gtc", "ioc", "fok", "opg", "cls")
#: Alpaca allows up to 128 characters; we keep ids to a safe, readable alphabet.
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
#: The reserved sender name of operator commands; accepted only on the operator stream
#: (``tf:orders:operator``), which only the operator role may write.
OPERATOR = "operator"
#: An entry with more fields, or a value longer than this, is refused before anything else.
MAX_FIELDS = 32
MAX_VALUE_CHARS = 256
#: Decimal strings longer than this are refused before parsing.
MAX_NUMBER_CHARS = 40
TS_NS = re.compile(r"^[0-9]{1,19}$")
#: Numbers are plain ASCII decimals, as encode_intent writes them: no sign, exponent, spaces or NaN.
PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class IntentError(ValueError):
    """A stream entry that is not a valid intent; the message says what is wrong."""


def refusal_key(kind: str, client_order_id: str, target: str) -> str:
    """Where a client files the gateway's refusal of an intent: a refused cancel of X is news about the
    cancel, not about X (which may still fill), so it must not be read as X's own refusal."""
    return f"cancel:{target}" if kind == "cancel" else client_order_id or target


def encode_intent(intent: Intent) -> dict[str, str]:
    fields = {"v": INTENT_VERSION, "kind": intent.kind, "agent": intent.agent, "ts_ns": str(intent.ts_ns)}
    optional = {"client_order_id": intent.client_order_id, "target": intent.target, "symbol": intent.symbol,
                "side": intent.side or "", "qty": fmt(intent.qty), "limit_price": fmt(intent.limit_price)}
    fields.update({k: v for k, v in optional.items() if v})
    if intent.kind == "submit":
        fields["type"] = intent.order_type
        fields["tif"] = intent.time_in_force
    return fields


def decode_entry(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """A stream entry read as bytes, as strings; IntentError if it is too big or not UTF-8."""
    if len(raw) > MAX_FIELDS:
        raise IntentError(f"entry has {len(raw)} fields; at most {MAX_FIELDS}")
    fields = {}
    for key, value in raw.items():
        try:
            name, text = key.decode(), value.decode()
        except UnicodeDecodeError:
            raise IntentError(f"field {key[:40]!r} is not UTF-8") from None
        if len(name) > MAX_VALUE_CHARS or len(text) > MAX_VALUE_CHARS:
            raise IntentError(f"field {name[:40]!r} is longer than {MAX_VALUE_CHARS} characters")
        fields[name] = text
    return fields


def lossy_entry(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """The entry as text for a rejection or a log line: undecodable bytes replaced, values cut short."""
    return {k.decode(errors="replace")[:64]: v.decode(errors="replace")[:MAX_VALUE_CHARS]
            for k, v in list(raw.items())[:MAX_FIELDS]}


def _number(fields: Mapping[str, str], name: str, required: bool, limit: Decimal,
            places: int | None) -> Decimal | None:
    text = fields.get(name, "")
    if not text:
        if required:
            raise IntentError(f"missing {name}")
        return None
    if len(text) > MAX_NUMBER_CHARS:
        raise IntentError(f"{name} is longer than {MAX_NUMBER_CHARS} characters")
    if not PLAIN_DECIMAL.match(text):
        raise IntentError(f"{name} {text[:MAX_NUMBER_CHARS]!r} is not a plain decimal (digits and an optional "
                          "fraction, e.g. 12.5; no sign, exponent or spaces)")
    try:
        value = to_decimal(text, name)
    except ValueError as e:
        raise IntentError(str(e)) from None
    if value <= 0:
        raise IntentError(f"{name} must be > 0, got {text}")
    if value > limit:
        raise IntentError(f"{name} {text} is above the largest accepted, {fmt(limit)}")
    if places is not None and decimals(value) > places:
        raise IntentError(f"{name} {text} has more than {places} decimals")
    return value


def _qty(fields: Mapping[str, str], required: bool) -> Decimal | None:
    return _number(fields, "qty", required, MAX_QTY, MAX_QTY_DECIMALS)


def _price(fields: Mapping[str, str], required: bool) -> Decimal | None:
    price = _number(fields, "limit_price", required, MAX_PRICE, None)  # the tick grid bounds its decimals
    violation = tick_violation(price) if price is not None else None
    if violation is not None:
        raise IntentError(violation)
    return price


def _coid(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not CLIENT_ORDER_ID.match(value):
        raise IntentError(f"{name} {value[:40]!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    return value


def decode_intent(fields: Mapping[str, str]) -> Intent:
    """Validate one stream entry; raise IntentError naming the problem (never anything else)."""
    if fields.get("v") != INTENT_VERSION:
        raise IntentError(f"unsupported intent version {fields.get('v', '')[:20]!r}")
    kind, agent = fields.get("kind", ""), fields.get("agent", "")
    if not names.is_name(agent):  # core.names: the one rule for names in keys and logs
        raise IntentError(f"agent {names.shown(agent)} is not allowed: use {names.NAME_RULE}")
    ts_text = fields.get("ts_ns", "")
    ts_ns = int(ts_text) if TS_NS.match(ts_text) else 0
    symbol = fields.get("symbol", "")
    if symbol and not names.is_symbol(symbol):
        raise IntentError(f"symbol {names.shown(symbol)} is not allowed: use {names.SYMBOL_RULE}")
    match kind:
        case "submit":
            return _decode_submit(fields, agent, symbol, ts_ns)
        case "cancel":
            return Intent("cancel", agent, target=_coid(fields, "target"), ts_ns=ts_ns)
        case "cancel_all":
            return Intent("cancel_all", agent, symbol=symbol, ts_ns=ts_ns)
        case "replace":
            qty, price = _qty(fields, False), _price(fields, False)
            if qty is None and price is None:
                raise IntentError("replace needs qty and/or limit_price")
            return Intent("replace", agent, client_order_id=_coid(fields, "client_order_id"),
                          target=_coid(fields, "target"), qty=qty, limit_price=price, ts_ns=ts_ns)
        case _:
            raise IntentError(f"unknown intent kind {kind[:20]!r}; expected one of {', '.join(KINDS)}")


def _decode_submit(fields: Mapping[str, str], agent: str, symbol: str, ts_ns: int) -> Intent:
    coid = _coid(fields, "client_order_id")
    if not symbol:
        raise IntentError("missing symbol")
    side, order_type, tif = fields.get("side", ""), fields.get("type", "limit"), fields.get("tif", "day")
    if side not in ("buy", "sell"):
        raise IntentError(f"side must be buy or sell, got {side[:20]!r}")
    if order_type not in ("limit", "market"):
        raise IntentError(f"type must be limit or market, got {order_type[:20]!r}")
    if tif not in TIME_IN_FORCE:
        raise IntentError(f"time in force {tif[:20]!r} is not one of {', '.join(TIME_IN_FORCE)}")
    qty = _qty(fields, True)
    price = _price(fields, order_type == "limit")
    if order_type == "market" and price is not None:
        raise IntentError("a market order takes no limit_price")
    return Intent("submit", agent, client_order_id=coid, symbol=symbol, side=cast(Side, side),
                  order_type=cast(OrderType, order_type), qty=qty, limit_price=price, time_in_force=tif,
                  ts_ns=ts_ns)


# Is an intent a resend of the order stored under its id? (the gateway refuses a reused id; an
# agent's TradingClient uses the same answer to never mistake someone else's order for its own)

def _differences(pairs: tuple[tuple[str, object, object], ...]) -> str | None:
    changed = [f"{name} {_show(old)} there, {_show(new)} here" for name, old, new in pairs if old != new]
    return "; ".join(changed) or None


def _show(value: object) -> str:
    if isinstance(value, Decimal):
        return fmt(value)
    return "none" if value is None or value == "" else str(value)


def submit_difference(intent: Intent, order: Order) -> str | None:
    """What differs between a submit and the order already stored under its id (None: a resend)."""
    return _differences((
        ("agent", order.agent, intent.agent), ("symbol", order.symbol, intent.symbol),
        ("side", order.side, intent.side), ("type", order.order_type, intent.order_type),
        ("qty", order.qty, intent.qty), ("limit_price", order.limit_price, intent.limit_price),
        ("tif", order.time_in_force, intent.time_in_force), ("replaces", order.replaces, "")))


def replace_difference(intent: Intent, order: Order) -> str | None:
    """The same for a replace: its target and whichever of qty and limit_price it sets."""
    pairs: list[tuple[str, object, object]] = [("agent", order.agent, intent.agent),
                                               ("target", order.replaces, intent.target)]
    if intent.qty is not None:
        pairs.append(("qty", order.qty, intent.qty))
    if intent.limit_price is not None:
        pairs.append(("limit_price", order.limit_price, intent.limit_price))
    return _differences(tuple(pairs))
