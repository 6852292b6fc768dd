"""HTTP (Alpaca trading REST v2) and websocket (trade_updates) front ends of the stand-in.

REST: POST/GET/DELETE ``/v2/orders``, GET/PATCH/DELETE ``/v2/orders/{id}``,
GET ``/v2/orders:by_client_order_id``, GET ``/v2/positions``, ``/v2/account``,
``/v2/clock``. Errors are Alpaca's ``{"code": ..., "message": ...}`` with 401,
403, 404, 422 or 429. Test controls (not Alpaca): POST ``/test/fill``
``{"client_order_id", "qty", "price"}``, POST ``/test/config``
``{"rate_limit_per_min", "buying_power"}``, GET ``/test/stats``.

Websocket: ``authenticate`` -> ``authorization``; ``listen`` -> ``listening``;
then ``{"stream": "trade_updates", "data": {...}}`` as binary JSON frames, as
Alpaca's paper endpoint sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.alpaca_trading_server.state import Account, ApiError, now_iso

log = logging.getLogger("alpaca_trading_server")
REASONS = {200: "OK", 204: "No Content", 207: "Multi-Status", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests", 400: "Bad Request"}


class Server:
    def __init__(self, key: str, secret: str) -> None:
        self.account = Account(key, secret, self._broadcast)
        self._listeners: dict[ServerConnection, asyncio.Queue[bytes]] = {}

    # websocket -------------------------------------------------------------------------

    def _broadcast(self, data: dict[str, Any]) -> None:
        frame = json.dumps({"stream": "trade_updates", "data": data}).encode()
        for queue in self._listeners.values():
            queue.put_nowait(frame)  # one queue per connection keeps events in order

    @staticmethod
    async def _send_queued(connection: ServerConnection, queue: asyncio.Queue[bytes]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await connection.send(await queue.get())

    async def ws_handler(self, connection: ServerConnection) -> None:
        authorized = False
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        sender = asyncio.create_task(self._send_queued(connection, queue))
        try:
            async for raw in connection:
                message = json.loads(raw)
                action, data = message.get("action"), message.get("data") or {}
                if action in ("authenticate", "auth"):
                    authorized = (data.get("key_id"), data.get("secret_key")) == (self.account.key,
                                                                                  self.account.secret)
                    status = "authorized" if authorized else "unauthorized"
                    await connection.send(json.dumps({"stream": "authorization", "data": {
                        "status": status, "action": "authenticate"}}).encode())
                    if not authorized:
                        await connection.close()
                elif action == "listen" and authorized:
                    streams = [s for s in data.get("streams", []) if s == "trade_updates"]
                    await connection.send(json.dumps({"stream": "listening", "data": {"streams": streams}}).encode())
                    if streams:
                        self._listeners[connection] = queue
        except ConnectionClosed:
            pass
        finally:
            self._listeners.pop(connection, None)
            sender.cancel()

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    # http ----------------------------------------------------------------------------------

    async def http_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                status, body = self._dispatch(*request)
                _write_response(writer, status, body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        payload = json.loads(body) if body else {}
        try:
            if url.path.startswith("/test/"):
                return self._control(method, url.path, payload)
            self.account.authorize(headers.get("apca-api-key-id"), headers.get("apca-api-secret-key"))
            self.account.count_request()
            return self._route(method, url.path, query, payload)
        except ApiError as e:
            return e.status, {"code": e.code, "message": e.message}

    def _route(self, method: str, path: str, query: dict[str, str], payload: Any) -> tuple[int, Any]:
        account = self.account
        if path == "/v2/orders":
            return self._orders(method, query, payload)
        if path == "/v2/orders:by_client_order_id":
            return 200, account.by_client(query.get("client_order_id", ""))
        if path.startswith("/v2/orders/"):
            order_id = path.rsplit("/", 1)[1]
            if method == "DELETE":
                account.cancel(order_id)
                return 204, None
            if method == "PATCH":
                return 200, account.replace(order_id, payload)
            return 200, account.get(order_id)
        if path.startswith("/v2/assets/"):
            return 200, account.asset(path.rsplit("/", 1)[1])
        if path == "/v2/positions":
            return 200, [account.position_json(s) for s in sorted(account.positions)]
        if path == "/v2/account":
            return 200, account.account_json()
        if path == "/v2/clock":
            return 200, {"timestamp": now_iso(), "is_open": True, "next_open": now_iso(), "next_close": now_iso()}
        return 404, {"code": 40410000, "message": f"endpoint {path} not found"}

    def _orders(self, method: str, query: dict[str, str], payload: Any) -> tuple[int, Any]:
        if method == "POST":
            return 200, self.account.submit(payload)
        if method == "DELETE":
            return 207, self.account.cancel_all()
        return 200, self.account.list(query.get("status", "open"))[: int(query.get("limit", 50))]

    def _control(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        account = self.account
        if path == "/test/fill":
            return 200, account.fill(payload["client_order_id"], Decimal(str(payload["qty"])),
                                     Decimal(str(payload["price"])))
        if path == "/test/config":
            if "rate_limit_per_min" in payload:
                account.rate_limit_per_min = int(payload["rate_limit_per_min"])
                account.requests.clear()
            if "buying_power" in payload:
                account.buying_power = Decimal(str(payload["buying_power"]))
            return 200, {}
        if path == "/test/stats":
            return 200, {**account.stats, "orders": len(account.orders), "listeners": self.listeners,
                         "open": len(account.list("open"))}
        return 404, {"code": 40410000, "message": "no such control"}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line.strip():
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = (await reader.readline()).decode("latin-1")
        if header in ("\r\n", "\n", ""):
            break
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return method, target, headers, body


def _write_response(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
    data = b"" if status == 204 else json.dumps(body).encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n")
    writer.write(head.encode() + data)


async def serve_forever(port: int, ws_port: int, key: str, secret: str) -> None:
    server = Server(key, secret)
    http = await asyncio.start_server(server.http_handler, "127.0.0.1", port)
    async with serve(server.ws_handler, "127.0.0.1", ws_port) as ws:
        ws_bound = ws.sockets[0].getsockname()[1]
        http_bound = http.sockets[0].getsockname()[1]
        print(f"READY rest=http://127.0.0.1:{http_bound} ws=ws://127.0.0.1:{ws_bound}/stream", flush=True)
        async with http:
            await http.serve_forever()
