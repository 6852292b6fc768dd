"""The page's two state-changing actions, and the checks every such request must pass.

A request changes anything only when all hold: a token is configured (else the
dashboard is read-only), it is a POST with a JSON body, the browser says it is
same-origin (``Sec-Fetch-Site``) and its ``Origin``, if sent, is this server, the
``Host`` is loopback when the dashboard listens on loopback (DNS rebinding), and
the ``X-TF-Control-Token`` header matches in constant time. A cross-site form
can do none of the last three, and a cross-site script cannot set the header
without a CORS preflight, which this server never grants.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from starlette.requests import Request

from core.keys import Keys
from hub.dashboard.settings import ControlToken
from hub.execution.cancel_all import send_cancel_all

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-tf-control-token"
#: Host names a loopback-bound dashboard takes control requests from (DNS rebinding).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class Refused(Exception):
    """A control request that fails a check; the message says which, never echoing the token."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_request(request: Request, token: ControlToken | None, loopback: bool) -> None:
    """Raise Refused unless ``request`` may change state."""
    if token is None:
        raise Refused(403, "the dashboard is read-only: no control token is configured")
    headers = request.headers
    host = headers.get("host", "")
    if loopback and host.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
        raise Refused(403, "Host is not loopback")
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Refused(403, f"cross-site request (Sec-Fetch-Site: {site})")
    origin = headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{host}":
        raise Refused(403, "Origin does not match this server")
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(415, "control requests are JSON")
    if not token.matches(headers.get(TOKEN_HEADER, "")):
        raise Refused(403, "wrong or missing control token")


class Controls:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def set_halt(self, on: bool, who: str) -> None:
        if on:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            await self._client.set(self._keys.risk_halt(), f"dashboard {stamp}")
        else:
            await self._client.delete(self._keys.risk_halt())
        log.warning("kill switch %s from the dashboard (%s)", "SET" if on else "cleared", who)

    async def cancel_all(self, who: str) -> None:
        """One operator cancel_all (every agent's orders) on the operator stream, which only the
        operator role may write; the gateway does the cancelling. Sent as python -m hub.execution.cancel_all
        sends it (one function: the same entry, the same trimming)."""
        await send_cancel_all(self._client, self._keys)
        log.warning("cancel-all sent from the dashboard (%s)", who)
