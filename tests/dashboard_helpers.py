"""Talking to a running ``python -m hub.dashboard``: HTTP with the standard library, waiting for it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.helpers import eventually

TOKEN = "test-token-0123456789abcdef"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, _json(reply.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, _json(e.read())


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {"text": body.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


def snapshot(base: str) -> dict[str, Any] | None:
    status, body = get(f"{base}/api/snapshot")
    return json.loads(body) if status == 200 else None


def wait_until_serving(base: str, timeout_s: float = 20) -> None:
    eventually(lambda: get(f"{base}/api/snapshot")[0] == 200, timeout_s=timeout_s, message=f"dashboard at {base}")
