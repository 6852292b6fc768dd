"""The Starlette app: the page, its static files, the live push (SSE), /metrics and the controls."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import names
from hub.dashboard.control import Controls, Refused, check_request
from hub.dashboard.metrics import registry_for
from hub.dashboard.settings import ControlToken, DashboardSettings
from hub.dashboard.state import State
from hub.dashboard.view import Cursor, View

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: Host names a loopback-bound dashboard answers to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
#: A quiet page still hears from us this often (keeps proxies from closing the stream).
KEEPALIVE_S = 15.0
#: Headers on every response: no framing (clickjacking the controls), scripts only from here.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
            await send(message)

        await self.app(scope, receive, add_headers)


class Endpoints:
    """The routes' handlers, over the dashboard's shared pieces."""

    def __init__(self, state: State, view: View, settings: DashboardSettings, controls: Controls,
                 token: ControlToken | None, stop: asyncio.Event) -> None:
        self._state, self._view, self._settings = state, view, settings
        self._controls, self._token, self._stop = controls, token, stop
        self._registry = registry_for(state, view)

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def events(self, request: Request) -> Response:
        symbol = request.query_params.get("symbol", "").strip().upper()
        if symbol and not names.is_symbol(symbol):  # core.names: the one rule
            return JSONResponse({"error": "not a symbol"}, status_code=400)
        stream = _stream(self._state, self._view, symbol, self._settings.poll_ns / 1e9, self._stop)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def snapshot(self, request: Request) -> Response:
        return Response(self._view.tables_json(time.time_ns()), media_type="application/json")

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    async def halt(self, request: Request) -> Response:
        body = await self._checked_body(request)
        if isinstance(body, Response):
            return body
        await self._controls.set_halt(bool(body.get("on")), _who(request))
        return JSONResponse({"ok": True, "halt": bool(body.get("on"))})

    async def cancel_all(self, request: Request) -> Response:
        body = await self._checked_body(request)
        if isinstance(body, Response):
            return body
        await self._controls.cancel_all(_who(request))
        return JSONResponse({"ok": True})

    async def _checked_body(self, request: Request) -> dict[str, Any] | Response:
        """The JSON body of a control request that passed every check, else the refusal."""
        try:
            check_request(request, self._token, self._settings.loopback)
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise Refused(400, "expected a JSON object")
        except Refused as e:
            log.warning("control request refused from %s: %s", _who(request), e)
            return JSONResponse({"ok": False, "error": str(e)}, status_code=e.status)
        except ValueError:
            return JSONResponse({"ok": False, "error": "body is not JSON"}, status_code=400)
        return body


def build_app(state: State, view: View, settings: DashboardSettings, controls: Controls,
              token: ControlToken | None, stop: asyncio.Event) -> ASGIApp:
    e = Endpoints(state, view, settings, controls, token, stop)
    routes = [
        Route("/", e.index),
        Route("/events", e.events),
        Route("/api/snapshot", e.snapshot),
        Route("/metrics", e.metrics),
        Route("/api/control/halt", e.halt, methods=["POST"]),
        Route("/api/control/cancel-all", e.cancel_all, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app: ASGIApp = Starlette(routes=routes)
    if settings.loopback:  # a page on a rebound DNS name must not read positions and orders either
        app = TrustedHostMiddleware(app, allowed_hosts=list(LOOPBACK_NAMES))
    return _SecurityHeaders(app)


async def _stream(state: State, view: View, symbol: str, min_interval_s: float,
                  stop: asyncio.Event) -> AsyncIterator[str]:
    """One page's pushes: at most one per poll, each with only the chart rows it lacks."""
    cursor = Cursor(symbol)
    version = -1
    yield "retry: 2000\n\n"
    while not stop.is_set():
        if symbol:
            state.want(symbol, time.time_ns())
        if not await state.wait_changed(version, KEEPALIVE_S):
            yield ": keepalive\n\n"
            continue
        version = state.version
        text, cursor = view.message(cursor, time.time_ns())
        yield f"data: {text}\n\n"
        await asyncio.sleep(min_interval_s)  # the per-page bound: never faster than one push per poll


def _who(request: Request) -> str:
    return request.client.host if request.client else "?"
