"""The live stream is conflated: however fast the market, a page gets at most one push per poll (10/s),
each with at most one new chart point per poll."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from tests.conftest import free_port
from tests.dashboard_helpers import wait_until_serving
from tests.helpers import ProcessGroup, eventually

PUSHES = 21


def test_a_fast_market_reaches_the_page_at_ten_pushes_a_second(processes: ProcessGroup) -> None:
    processes.start("-m", "hub", "--source", "sim", "--symbols", "AAPL", "--sim-rate", "20000")
    port = free_port()
    processes.start("-m", "hub.dashboard", "--port", str(port))
    wait_until_serving(f"http://127.0.0.1:{port}")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/events?symbol=AAPL")
        reply = connection.getresponse()
        assert reply.headers["content-type"].startswith("text/event-stream")

        def next_push() -> dict[str, Any]:
            while True:
                line = reply.readline()
                assert line, "stream ended"
                if line.startswith(b"data: "):
                    push: dict[str, Any] = json.loads(line[6:])
                    return push

        eventually(lambda: next_push()["price"]["rows"], timeout_s=15, message="AAPL points")
        started, rows = time.monotonic(), 0
        for _ in range(PUSHES):
            push = next_push()
            assert not push["price"]["reset"]
            rows += len(push["price"]["rows"])
        elapsed_s = time.monotonic() - started
    finally:
        connection.close()
    assert elapsed_s >= (PUSHES - 1) * 0.1 * 0.95  # never faster than one push per 100 ms poll
    assert rows <= PUSHES + elapsed_s / 0.1  # one point per poll, not one per quote
