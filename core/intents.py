"""The intent wire format: one flat string map per ``tf:orders:intents`` stream entry.

Fields (all strings, readable with ``redis-cli XRANGE tf:orders:intents - +``):

==================  =====================================================================
``v``               format version, ``1``
``kind``            ``submit`` | ``cancel`` | ``replace`` | ``cancel_all``
``agent``           sender's name (``*`` in a cancel_all: every agent)
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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import cast

from core import names
from core.orders import Intent, OrderType, Side, fmt, to_decimal

INTENT_VERSION = "1"
KINDS = ("submit", "cancel", "replace", "cancel_all")
TIME_IN_FORCE = ("day", "gtc", "ioc", "fok", "opg", "cls")
#: Alpaca allows up to 128 characters; we keep ids to a safe, readable alphabet.
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
SYMBOL = re.compile(r"^[A-Z0-9.\-/]{1,32}$")


class IntentError(ValueError):
    """A stream entry that is not a valid intent; the message says what is wrong."""


def encode_intent(intent: Intent) -> dict[str, str]:
    fields = {"v": INTENT_VERSION, "kind": intent.kind, "agent": intent.agent, "ts_ns": str(intent.ts_ns)}
    optional = {"client_order_id": intent.client_order_id, "target": intent.target, "symbol": intent.symbol,
                "side": intent.side or "", "qty": fmt(intent.qty), "limit_price": fmt(intent.limit_price)}
    fields.update({k: v for k, v in optional.items() if v})
    if intent.kind == "submit":
        fields["type"] = intent.order_type
        fields["tif"] = intent.time_in_force
    return fields


def _decimal(fields: Mapping[str, str], name: str, required: bool) -> Decimal | None:
    text = fields.get(name, "")
    if not text:
        if required:
            raise IntentError(f"missing {name}")
        return None
    try:
        value = to_decimal(text, name)
    except ValueError as e:
        raise IntentError(str(e)) from None
    if value <= 0:
        raise IntentError(f"{name} must be > 0, got {text}")
    return value


def _coid(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not CLIENT_ORDER_ID.match(value):
        raise IntentError(f"{name} {value!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    return value


def decode_intent(fields: Mapping[str, str]) -> Intent:
    """Validate one stream entry; raise IntentError naming the problem."""
    if fields.get("v") != INTENT_VERSION:
        raise IntentError(f"unsupported intent version {fields.get('v')!r}")
    kind, agent = fields.get("kind", ""), fields.get("agent", "")
    if kind not in KINDS:
        raise IntentError(f"unknown intent kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not agent:
        raise IntentError("missing agent")
    if not (names.is_name(agent) or (kind == "cancel_all" and agent == "*")):  # core.names: the one rule
        raise IntentError(f"agent {names.shown(agent)} is not allowed: use {names.NAME_RULE}")
    ts_ns = int(fields["ts_ns"]) if fields.get("ts_ns", "").isdigit() else 0
    symbol = fields.get("symbol", "")
    if symbol and not SYMBOL.match(symbol):
        raise IntentError(f"bad symbol {symbol!r}")
    if kind == "cancel":
        return Intent("cancel", agent, target=_coid(fields, "target"), ts_ns=ts_ns)
    if kind == "cancel_all":
        return Intent("cancel_all", agent, symbol=symbol, ts_ns=ts_ns)
    if kind == "replace":
        qty, price = _decimal(fields, "qty", False), _decimal(fields, "limit_price", False)
        if qty is None and price is None:
            raise IntentError("replace needs qty and/or limit_price")
        return Intent("replace", agent, client_order_id=_coid(fields, "client_order_id"),
                      target=_coid(fields, "target"), qty=qty, limit_price=price, ts_ns=ts_ns)
    return _decode_submit(fields, agent, symbol, ts_ns)


def _decode_submit(fields: Mapping[str, str], agent: str, symbol: str, ts_ns: int) -> Intent:
    coid = _coid(fields, "client_order_id")
    if not symbol:
        raise IntentError("missing symbol")
    side, order_type, tif = fields.get("side", ""), fields.get("type", "limit"), fields.get("tif", "day")
    if side not in ("buy", "sell"):
        raise IntentError(f"side must be buy or sell, got {side!r}")
    if order_type not in ("limit", "market"):
        raise IntentError(f"type must be limit or market, got {order_type!r}")
    if tif not in TIME_IN_FORCE:
        raise IntentError(f"time in force {tif!r} is not one of {', '.join(TIME_IN_FORCE)}")
    qty = _decimal(fields, "qty", True)
    price = _decimal(fields, "limit_price", order_type == "limit")
    if order_type == "market" and price is not None:
        raise IntentError("a market order takes no limit_price")
    return Intent("submit", agent, client_order_id=coid, symbol=symbol, side=cast(Side, side),
                  order_type=cast(OrderType, order_type), qty=qty, limit_price=price, time_in_force=tif,
                  ts_ns=ts_ns)
