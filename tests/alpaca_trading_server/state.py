"""The stand-in's account: orders, positions, Alpaca's validation rules and error bodies."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

OPEN = {"new", "accepted", "pending_new", "partially_filled", "pending_cancel", "pending_replace"}


class ApiError(Exception):
    """An Alpaca error response: HTTP status and ``{"code": ..., "message": ...}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _dec(value: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ApiError(422, 40010001, f"invalid {name}") from None
    if not number.is_finite() or number <= 0:
        raise ApiError(422, 40010001, f"{name} must be > 0")
    return number


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


class Account:
    """Everything the server knows; ``emit`` broadcasts a trade_updates event."""

    def __init__(self, key: str, secret: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.key, self.secret = key, secret
        self.emit = emit
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_client_id: dict[str, str] = {}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}
        self.buying_power = Decimal(1_000_000)
        self.rate_limit_per_min = 10_000
        self.untradable = {"ZZZZ"}
        self.whole_shares = {"WHOLE"}  # not fractionable (GET /v2/assets/WHOLE says so)
        self.requests: deque[float] = deque()
        self.stats = {"requests": 0, "submits": 0, "duplicate_submits": 0, "rejected": 0, "asset_lookups": 0}

    # checks ------------------------------------------------------------------------

    def authorize(self, key: str | None, secret: str | None) -> None:
        if key != self.key or secret != self.secret:
            raise ApiError(401, 40110000, "request is not authorized")

    def count_request(self) -> None:
        now = time.monotonic()
        self.stats["requests"] += 1
        while self.requests and now - self.requests[0] > 60:
            self.requests.popleft()
        if len(self.requests) >= self.rate_limit_per_min:
            raise ApiError(429, 42910000, "rate limit exceeded")
        self.requests.append(now)

    def _validate(self, body: dict[str, Any]) -> tuple[Decimal, Decimal | None]:
        symbol = str(body.get("symbol", ""))
        if symbol in self.untradable or not symbol:
            raise ApiError(422, 40010001, f'asset "{symbol}" not found')
        if body.get("side") not in ("buy", "sell"):
            raise ApiError(422, 40010001, "invalid side")
        qty = _dec(body.get("qty"), "qty")
        price = _dec(body["limit_price"], "limit_price") if body.get("limit_price") is not None else None
        if body.get("type") == "limit" and price is None:
            raise ApiError(422, 40010001, "limit_price is required for limit orders")
        if price is not None:
            places = 2 if price >= 1 else 4
            if price != price.quantize(Decimal(1).scaleb(-places)):
                raise ApiError(422, 40010001, f"invalid limit_price {body['limit_price']}. sub-penny increment "
                                              "does not fulfill minimum pricing criteria")
            if body["side"] == "buy" and qty * price > self.buying_power:
                raise ApiError(403, 40310000, "insufficient buying power")
        return qty, price

    def asset(self, symbol: str) -> dict[str, Any]:
        """GET /v2/assets/{symbol}: symbols in ``whole_shares`` are not fractionable."""
        self.stats["asset_lookups"] += 1
        if symbol in self.untradable:
            raise ApiError(404, 40410000, f"asset not found for {symbol}")
        return {"id": str(uuid.uuid4()), "class": "us_equity", "exchange": "NASDAQ", "symbol": symbol,
                "name": symbol, "status": "active", "tradable": True, "marginable": True, "shortable": True,
                "easy_to_borrow": True, "fractionable": symbol not in self.whole_shares}

    # orders ------------------------------------------------------------------------

    def submit(self, body: dict[str, Any], replaces: str | None = None) -> dict[str, Any]:
        self.stats["submits"] += 1
        coid = str(body.get("client_order_id") or uuid.uuid4())
        if coid in self.by_client_id:
            self.stats["duplicate_submits"] += 1
            raise ApiError(422, 40010001, "client_order_id must be unique")
        try:
            qty, price = self._validate(body)
        except ApiError:
            self.stats["rejected"] += 1
            raise
        stamp = now_iso()
        order = {
            "id": str(uuid.uuid4()), "client_order_id": coid, "created_at": stamp, "updated_at": stamp,
            "submitted_at": stamp, "filled_at": None, "expired_at": None, "canceled_at": None, "failed_at": None,
            "replaced_at": None, "replaced_by": None, "replaces": replaces, "asset_id": str(uuid.uuid4()),
            "symbol": body["symbol"], "asset_class": "us_equity", "notional": None, "qty": _text(qty),
            "filled_qty": "0", "filled_avg_price": None, "order_class": "simple", "order_type": body["type"],
            "type": body["type"], "side": body["side"], "time_in_force": body.get("time_in_force", "day"),
            "limit_price": _text(price), "stop_price": None, "status": "accepted", "extended_hours": False,
            "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
        }
        self.orders[order["id"]] = order
        self.by_client_id[coid] = order["id"]
        response = dict(order)
        order["status"] = "new"
        self.emit(self._event("new", order))
        return response

    def get(self, order_id: str) -> dict[str, Any]:
        if order_id not in self.orders:
            raise ApiError(404, 40410000, "order not found")
        return self.orders[order_id]

    def by_client(self, coid: str) -> dict[str, Any]:
        if coid not in self.by_client_id:
            raise ApiError(404, 40410000, "order not found")
        return self.orders[self.by_client_id[coid]]

    def list(self, status: str) -> list[dict[str, Any]]:
        orders = list(self.orders.values())
        if status == "open":
            orders = [o for o in orders if o["status"] in OPEN]
        elif status == "closed":
            orders = [o for o in orders if o["status"] not in OPEN]
        return sorted(orders, key=lambda o: o["created_at"], reverse=True)

    def cancel(self, order_id: str) -> None:
        order = self.get(order_id)
        if order["status"] not in OPEN:
            raise ApiError(422, 42210000, "order is not cancelable")
        self._finish(order, "canceled", "canceled_at")

    def cancel_all(self) -> list[dict[str, Any]]:
        results = []
        for order in self.list("open"):
            self._finish(order, "canceled", "canceled_at")
            results.append({"id": order["id"], "status": 200, "body": order})
        return results

    def replace(self, order_id: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self.get(order_id)
        if old["status"] not in OPEN:
            raise ApiError(422, 42210000, "order is not replaceable")
        merged = {"symbol": old["symbol"], "side": old["side"], "type": old["type"],
                  "time_in_force": body.get("time_in_force") or old["time_in_force"],
                  "qty": body.get("qty") or old["qty"], "limit_price": body.get("limit_price") or old["limit_price"],
                  "client_order_id": body.get("client_order_id")}
        new = self.submit(merged, replaces=old["id"])
        old["replaced_by"] = new["id"]
        self._finish(old, "replaced", "replaced_at")
        return new

    def _finish(self, order: dict[str, Any], status: str, stamp_field: str) -> None:
        order["status"] = status
        order[stamp_field] = order["updated_at"] = now_iso()
        self.emit(self._event(status, order))

    def fill(self, coid: str, qty: Decimal, price: Decimal) -> dict[str, Any]:
        """Test control: execute ``qty`` of an open order at ``price``."""
        order = self.by_client(coid)
        if order["status"] not in OPEN:
            raise ApiError(422, 42210000, "order is not open")
        filled_before = Decimal(order["filled_qty"])
        qty = min(qty, Decimal(order["qty"]) - filled_before)
        avg_before = Decimal(order["filled_avg_price"] or 0)
        filled = filled_before + qty
        order["filled_avg_price"] = _text((filled_before * avg_before + qty * price) / filled)
        order["filled_qty"] = _text(filled)
        done = filled >= Decimal(order["qty"])
        order["status"] = "filled" if done else "partially_filled"
        order["updated_at"] = now_iso()
        if done:
            order["filled_at"] = order["updated_at"]
        position_qty = self._move_position(order["symbol"], qty if order["side"] == "buy" else -qty, price)
        event = self._event("fill" if done else "partial_fill", order)
        event.update(price=_text(price), qty=_text(qty), position_qty=_text(position_qty),
                     execution_id=str(uuid.uuid4()))
        self.emit(event)
        return order

    def _move_position(self, symbol: str, signed: Decimal, price: Decimal) -> Decimal:
        qty, avg = self.positions.get(symbol, (Decimal(0), Decimal(0)))
        new_qty = qty + signed
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = (abs(qty) * avg + abs(signed) * price) / abs(new_qty)
        elif new_qty == 0:
            avg = Decimal(0)
        elif (new_qty > 0) != (qty > 0):
            avg = price
        if new_qty == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = (new_qty, avg)
        return new_qty

    def position_json(self, symbol: str) -> dict[str, Any]:
        qty, avg = self.positions[symbol]
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NASDAQ",
                "asset_class": "us_equity", "asset_marginable": True, "avg_entry_price": _text(avg),
                "qty": _text(qty), "side": "long" if qty > 0 else "short",
                "cost_basis": _text(qty * avg), "market_value": _text(qty * avg), "qty_available": _text(qty)}

    def account_json(self) -> dict[str, Any]:
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.key)), "account_number": "PA0000TEST",
                "status": "ACTIVE", "currency": "USD", "buying_power": _text(self.buying_power),
                "cash": _text(self.buying_power), "pattern_day_trader": False, "trading_blocked": False,
                "account_blocked": False, "shorting_enabled": True}

    @staticmethod
    def _event(event: str, order: dict[str, Any]) -> dict[str, Any]:
        return {"event": event, "order": dict(order), "timestamp": now_iso()}
