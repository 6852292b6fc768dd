"""The page's JSON: tables built once per reader poll (shared by every page), chart rows per page.

Values stay the strings Redis holds where the page only shows them; the page
formats them. Nothing here reads Redis or knows about HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.keys import CACHE_TS_SUFFIX
from hub.dashboard.settings import DashboardSettings
from hub.dashboard.state import Fields, Process, Series, State

#: The hub's connection states that mean market data is flowing.
CONNECTED = ("connected", "simulated", "replaying", "streaming")
FILLS_SHOWN = 20


@dataclass(frozen=True)
class Cursor:
    symbol: str
    price_seq: int = 0
    pnl_seq: int = 0


class View:
    def __init__(self, state: State, settings: DashboardSettings, control: bool) -> None:
        self._state = state
        self._settings = settings
        self.control = control
        self._tables: tuple[int, str] = (-1, "")

    def tables_json(self, now_ns: int) -> str:
        """The shared part of every message, serialized at most once per state version."""
        version, text = self._tables
        if version != self._state.version:
            text = json.dumps(self.tables(now_ns), separators=(",", ":"), allow_nan=False)
            self._tables = (self._state.version, text)
        return text

    def message(self, cursor: Cursor, now_ns: int) -> tuple[str, Cursor]:
        """One push to one page: the tables, and the chart rows it has not had yet."""
        state = self._state
        price = state.series.get(cursor.symbol)
        price_part, price_seq = _rows(price, cursor.price_seq)
        pnl_part, pnl_seq = _rows(state.pnl, cursor.pnl_seq)
        text = (f'{{"v":{state.version},"symbol":{json.dumps(cursor.symbol)},"tables":{self.tables_json(now_ns)},'
                f'"price":{price_part},"pnl":{pnl_part}}}')
        return text, Cursor(cursor.symbol, price_seq, pnl_seq)

    def tables(self, now_ns: int) -> dict[str, Any]:
        state = self._state
        processes = sorted(state.processes.values(), key=lambda p: (("hub", "gateway", "agent").index(p.kind), p.name))
        return {
            "now_ms": now_ns // 1_000_000,
            "redis": {"up": state.redis_up, "error": state.redis_error, "reconnects": state.redis_reconnects,
                      "down_for_s": _age_s(state.redis_down_since_ns, now_ns) if not state.redis_up else None},
            "banners": self.banners(now_ns),
            "processes": [self._process_row(p, now_ns) for p in processes],
            "symbols": state.symbols,
            "market": {s: self._market(s, now_ns) for s in state.symbols},
            "orders": state.open_orders,
            "fills": list(state.fills)[:FILLS_SHOWN],
            "positions": [self._position(s, f) for s, f in sorted(state.positions.items())],
            "portfolio": state.portfolio,
            "risk": self.risk(),
            "control": self.control,
        }

    def banners(self, now_ns: int) -> list[dict[str, str]]:
        """Bad states, worst first, in words an operator can act on."""
        state, out = self._state, []
        if not state.redis_up:
            out.append({"level": "error", "id": "redis-down",
                        "text": f"Redis is unreachable ({state.redis_error}); showing the last known state, "
                                "retrying"})
            return out
        hubs = [p for p in state.processes_of(["hub"]) if not p.gone]
        if not hubs:
            out.append({"level": "error", "id": "no-hub", "text": "No hub is running: no market data is streamed"})
        for hub in hubs:
            connection = hub.fields.get("connection", "")
            if connection and connection not in CONNECTED:
                error = hub.fields.get("last_error", "")  # e.g. Alpaca's 406 connection limit
                out.append({"level": "warn", "id": "hub-connection",
                            "text": f"hub {hub.name}: source {hub.fields.get('source', '?')} is {connection}"
                                    + (f" (last error: {error})" if error else "")})
        if state.halt:
            out.append({"level": "error", "id": "halt", "text": "Kill switch is ON (tf:risk:halt): trading halted"})
        if not [p for p in state.processes_of(["gateway"]) if not p.gone]:
            out.append({"level": "warn", "id": "no-gateway", "text": "No execution gateway is running"})
        for p in state.processes.values():
            status = self.process_state(p, now_ns)
            if status != "running":
                out.append({"level": "warn", "id": f"process-{status}",
                            "text": f"{p.kind} {p.name} is {status}"})
        return out

    def process_state(self, process: Process, now_ns: int) -> str:
        if process.gone:
            return "down"
        beat_ns = _int(process.fields.get("beat_ns"))
        if beat_ns and now_ns - beat_ns > self._settings.stale_after_ns:
            return "stale"
        return "running"

    def _process_row(self, p: Process, now_ns: int) -> dict[str, Any]:
        f = p.fields
        rate = f.get("rate_qps") if p.kind == "hub" else p.rate_per_s
        detail = {"hub": lambda: f"{f.get('source', '')} · {f.get('connection', '')} · {f.get('symbols', '')}",
                  "gateway": lambda: (f"{f.get('broker', '')} · open {f.get('open_orders', '0')} · "
                                      f"rejected {f.get('rejected', '0')}" + (" · HALTED" if f.get('halted') == "1"
                                                                             else "")),
                  "agent": lambda: f"{f.get('class', '')} · {f.get('agent_type', '')} · {f.get('instruments', '')}"}
        return {"kind": p.kind, "name": p.name, "state": self.process_state(p, now_ns), "pid": f.get("pid", ""),
                "host": f.get("host", ""), "uptime_s": _age_s(_int(f.get("started_ns")), now_ns),
                "beat_age_s": _age_s(_int(f.get("beat_ns")), now_ns), "rate": rate,
                "runs": f.get("runs", f.get("intents", f.get("quotes", ""))), "errors": f.get("errors", ""),
                "lag_ms": f.get("lag_ms", _us_to_ms(f.get("ack_p50_us"))), "conflated": f.get("conflated", ""),
                "bad_messages": f.get("bad_messages", f.get("bad_intents", f.get("dropped", ""))),
                "restarts": max(p.restarts - 1, 0), "detail": detail[p.kind]() if p.kind in detail else ""}

    def _market(self, symbol: str, now_ns: int) -> dict[str, Any]:
        quote, cache = self._state.quotes.get(symbol, {}), self._state.cache.get(symbol, {})
        fields = [{"field": k, "value": v, "age_s": _age_s(_int(cache.get(k + CACHE_TS_SUFFIX)), now_ns)}
                  for k, v in sorted(cache.items()) if not k.endswith(CACHE_TS_SUFFIX)]
        return {"streamed": bool(quote), "bid": quote.get("bid"), "ask": quote.get("ask"),
                "bid_size": quote.get("bid_size"), "ask_size": quote.get("ask_size"),
                "quote_age_s": _age_s(_int(quote.get("ts_recv_ns") or quote.get("ts_ns")), now_ns), "cache": fields}

    def _position(self, symbol: str, fields: Fields) -> dict[str, Any]:
        cache = self._state.cache.get(symbol, {})
        return {"symbol": symbol, "qty": fields.get("qty", "0"), "avg_price": fields.get("avg_price", ""),
                "realized_pnl": fields.get("realized_pnl", ""), "unrealized_pnl": cache.get("pnl_unrealized", ""),
                "total_pnl": cache.get("pnl_total", ""), "fees": fields.get("fees", "")}

    def risk(self) -> dict[str, Any]:
        """The kill switch and, per limit the gateway publishes, how much of it is in use now."""
        state = self._state
        gateways = [p for p in state.processes_of(["gateway"]) if not p.gone]
        limits = {k.removeprefix("limit:"): _float(v) for k, v in (gateways[0].fields if gateways else {}).items()
                  if k.startswith("limit:")}
        used = self.usage(gateways[0] if gateways else None)
        rows = [{"limit": name, "value": limits[name], "used": used[name],
                 "ratio": round(used[name] / limits[name], 4) if limits[name] else None}
                for name in ("max_position", "max_open_orders", "max_order_qty", "max_order_notional", "order_rate")
                if name in limits and name in used]
        return {"halt": bool(state.halt), "reduce_only": bool(state.reduce_only), "limits": rows,
                "rejected": {k.removeprefix("rejected:"): v for k, v in (gateways[0].fields if gateways else {})
                             .items() if k.startswith("rejected:")}}

    def usage(self, gateway: Process | None) -> dict[str, float]:
        state = self._state
        orders = state.open_orders
        exposure: dict[str, float] = {s: _float(f.get("qty")) for s, f in state.positions.items()}
        buys: dict[str, float] = {}
        sells: dict[str, float] = {}
        for o in orders:
            remaining = _float(o.get("qty")) - _float(o.get("filled_qty"))
            side = buys if o.get("side") == "buy" else sells
            side[o.get("symbol", "")] = side.get(o.get("symbol", ""), 0.0) + remaining
        projected = [max(abs(exposure.get(s, 0.0) + buys.get(s, 0.0)), abs(exposure.get(s, 0.0) - sells.get(s, 0.0)))
                     for s in {*exposure, *buys, *sells}]
        return {"max_position": max(projected, default=0.0), "max_open_orders": float(len(orders)),
                "max_order_qty": max((_float(o.get("qty")) for o in orders), default=0.0),
                "max_order_notional": max((_float(o.get("qty")) * _float(o.get("limit_price")) for o in orders),
                                          default=0.0),
                "order_rate": gateway.rate_per_s if gateway is not None else 0.0}


def _rows(series: Series | None, seq: int) -> tuple[str, int]:
    if series is None:
        return '{"reset":true,"columns":[],"rows":[]}', 0
    rows, reset = series.since(seq)
    body = json.dumps({"reset": reset, "columns": series.columns, "rows": rows}, separators=(",", ":"),
                      allow_nan=False)
    return body, series.seq


def _us_to_ms(value: str | None) -> str:
    """The gateway's median intent->ack latency (µs) in the lag column's unit."""
    return f"{_float(value) / 1e3:.3f}" if value else ""


def _age_s(ts_ns: int, now_ns: int) -> float | None:
    return round((now_ns - ts_ns) / 1e9, 1) if ts_ns else None


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _float(value: str | None) -> float:
    try:
        number = float(value or 0)
    except ValueError:
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0
