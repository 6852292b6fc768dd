"""A stand-in for Alpaca's historical market-data REST API: ``GET /v2/stocks/quotes`` with paging.

Responses have Alpaca's shape::

    {"quotes": {"AAPL": [{"t": "2024-07-01T13:30:00.123456789Z", "bx": "V", "bp": 1.0, "bs": 1,
                          "ax": "V", "ap": 1.1, "as": 2, "c": ["R"], "z": "C"}, ...]},
     "next_page_token": "..." | null}

Results are sorted by symbol, then time; ``limit`` counts quotes over all symbols
and ``page_token`` continues where the previous page stopped. Requests without
the right ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers get 403.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.alpaca_data_server.protocol import rfc3339_ns

HistoryRow = tuple[int, float, float, float, float]  # ts_ns, bid, bid_size, ask, ask_size
MAX_LIMIT = 10_000


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?$")


def _parse_time_ns(text: str) -> int:
    """RFC 3339 with up to nine fraction digits and ``Z`` or an offset (none means UTC)."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"bad time {text!r}")
    head, frac, zone = match.groups()
    base = dt.datetime.fromisoformat(head + (zone if zone and zone != "Z" else "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "").ljust(9, "0"))


class HistoryServer:
    """``with HistoryServer({"AAPL": rows}) as server: server.url``."""

    def __init__(self, quotes: dict[str, list[HistoryRow]], credentials: tuple[str, str] = ("key", "secret"),
                 host: str = "127.0.0.1", port: int = 0, page_size: int = MAX_LIMIT) -> None:
        self.page_size = page_size
        self.quotes = {symbol: sorted(rows) for symbol, rows in quotes.items()}
        self.credentials = credentials
        self.requests: list[dict[str, list[str]]] = []
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HistoryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        symbols = query.get("symbols", [""])[0].split(",")
        start_ns = _parse_time_ns(query["start"][0]) if "start" in query else 0
        end_ns = _parse_time_ns(query["end"][0]) if "end" in query else 2**63
        limit = min(int(query.get("limit", [str(MAX_LIMIT)])[0]), MAX_LIMIT, self.page_size)
        offset = int(base64.b64decode(query["page_token"][0])) if query.get("page_token") else 0
        rows = [(s, r) for s in sorted(symbols) for r in self.quotes.get(s, []) if start_ns <= r[0] < end_ns]
        chunk = rows[offset:offset + limit]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for symbol, (ts_ns, bid, bid_size, ask, ask_size) in chunk:
            grouped.setdefault(symbol, []).append({"t": rfc3339_ns(ts_ns), "bx": "V", "bp": bid, "bs": bid_size,
                                                   "ax": "V", "ap": ask, "as": ask_size, "c": ["R"], "z": "C"})
        more = offset + limit < len(rows)
        token = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return {"quotes": grouped, "next_page_token": token}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                server.requests.append(query)
                key, secret = self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")
                if (key, secret) != server.credentials:
                    self._reply(403, {"message": "forbidden"})
                elif url.path != "/v2/stocks/quotes":
                    self._reply(404, {"message": "not found"})
                else:
                    try:
                        self._reply(200, server.page(query))
                    except (KeyError, ValueError) as e:
                        self._reply(422, {"message": f"invalid request: {e}"})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
