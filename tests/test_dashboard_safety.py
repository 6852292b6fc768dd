"""The dashboard without a token is read-only, refuses forged control requests with one, and shows
bad states plainly: Redis down (and back), no hub, a symbol nobody streams."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.keys import Keys
from tests.browser import page
from tests.conftest import free_port
from tests.dashboard_helpers import TOKEN, post, snapshot, wait_until_serving
from tests.helpers import ProcessGroup, eventually

KEYS = Keys()
JSON = {"Content-Type": "application/json"}


def start_dashboard(processes: ProcessGroup, *args: str, env: dict[str, str] | None = None) -> str:
    port = free_port()
    processes.start("-m", "hub.dashboard", "--port", str(port), "--log-level", "INFO", *args, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base)
    return base


def banner_ids(base: str) -> set[str]:
    return {b["id"] for b in (snapshot(base) or {}).get("banners", [])}


def test_without_a_token_the_control_is_absent_and_a_forged_post_is_refused(
        processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    base = start_dashboard(processes)
    errors: list[str] = []
    with page(errors) as tab:
        tab.goto(base + "/#ZZZZ")
        eventually(lambda: tab.get_attribute("#instrument-status", "data-state") == "not-streamed",
                   message="a symbol nobody streams, said so")
        eventually(lambda: tab.is_visible("#banners [data-id=no-hub]"), message="the no-hub banner")
        assert not tab.is_visible("#control")
        assert tab.eval_on_selector("#control", "e => e.hidden") is True
        # a script on the page itself cannot act either: the server refuses without a token
        status = tab.evaluate("""async () => (await fetch('/api/control/halt', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-TF-Control-Token': 'anything-at-all-123'},
            body: JSON.stringify({on: true})})).status""")
        assert status == 403
    assert errors == [] or all("403" in e for e in errors)
    for path in ("/api/control/halt", "/api/control/cancel-all"):
        assert post(base + path, {"on": True}, {**JSON, "X-TF-Control-Token": TOKEN})[0] == 403
    assert sync_redis.get(KEYS.risk_halt()) is None
    assert sync_redis.exists(KEYS.order_intents()) == 0
    rebound = urllib.request.Request(base + "/api/snapshot", headers={"Host": "rebound.example:8050"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # DNS rebinding cannot read the book either
        urllib.request.urlopen(rebound, timeout=5)
    assert refused.value.code == 400
    refused.value.close()


def test_with_a_token_only_a_same_origin_json_post_with_the_token_acts(
        processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    base = start_dashboard(processes, env={"TF_DASHBOARD_TOKEN": TOKEN})
    halt = base + "/api/control/halt"
    forged = [
        {**JSON},  # no token
        {**JSON, "X-TF-Control-Token": TOKEN[:-1] + "x"},  # wrong token
        {**JSON, "X-TF-Control-Token": TOKEN, "Origin": "http://evil.example"},
        {**JSON, "X-TF-Control-Token": TOKEN, "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "application/x-www-form-urlencoded", "X-TF-Control-Token": TOKEN},  # a form post
        {**JSON, "X-TF-Control-Token": TOKEN, "Host": "rebound.example:8050"},  # DNS rebinding
    ]
    for headers in forged:
        status, reply = post(halt, {"on": True}, headers)
        assert status in (400, 403, 415), headers
        assert TOKEN not in str(reply)
        assert sync_redis.get(KEYS.risk_halt()) is None, headers
    assert post(halt, {"on": True}, {**JSON, "X-TF-Control-Token": TOKEN, "Origin": base,
                                    "Sec-Fetch-Site": "same-origin"})[0] == 200
    assert sync_redis.get(KEYS.risk_halt())
    eventually(lambda: "halt" in banner_ids(base), message="the halt banner")
    assert post(base + "/api/control/cancel-all", {}, {**JSON, "X-TF-Control-Token": TOKEN})[0] == 200
    intents = sync_redis.xrange(KEYS.operator_intents())
    assert [(f["kind"], f["agent"]) for _, f in intents] == [("cancel_all", "operator")]
    assert post(halt, {"on": False}, {**JSON, "X-TF-Control-Token": TOKEN})[0] == 200
    assert sync_redis.get(KEYS.risk_halt()) is None
    log = processes.output(processes.procs[0][0])
    assert TOKEN not in log and "refused" in log


def test_a_token_on_the_command_line_is_not_an_option(processes: ProcessGroup) -> None:
    done = processes.run("-m", "hub.dashboard", "--control-token", TOKEN, timeout_s=30)
    assert done.returncode == 78
    assert TOKEN not in done.stderr


def test_a_port_in_use_is_a_one_line_config_error(processes: ProcessGroup) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = processes.run("-m", "hub.dashboard", "--port", str(taken.getsockname()[1]), timeout_s=30)
    assert done.returncode == 78
    assert "Traceback" not in done.stderr and "pass another --port" in done.stderr


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A redis-server of this test's own, so the test may stop and restart it."""
    port = free_port()
    command = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    servers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    url = f"redis://127.0.0.1:{port}/0"
    eventually(lambda: _pings(url), message="own redis")
    yield url, command
    for server in servers:
        server.terminate()
        server.wait(10)


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_redis_down_is_shown_and_the_page_recovers_when_it_is_back(
        processes: ProcessGroup, own_redis: tuple[str, list[str]]) -> None:
    url, command = own_redis
    base = start_dashboard(processes, env={"REDIS_URL": url})
    eventually(lambda: (snapshot(base) or {}).get("redis", {}).get("up"), message="Redis up")
    redis.Redis.from_url(url).shutdown(nosave=True)
    errors: list[str] = []
    with page(errors) as tab:
        tab.goto(base + "/")
        eventually(lambda: tab.is_visible("#banners [data-id=redis-down]"), message="the Redis-down banner")
        assert "DOWN" in tab.inner_text("#redis-state")
        restarted = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            eventually(lambda: not tab.is_visible("#banners [data-id=redis-down]"), timeout_s=15,
                       message="the banner gone once Redis is back")
            assert "up" in tab.inner_text("#redis-state")
            assert (snapshot(base) or {})["redis"]["reconnects"] == 1
        finally:
            restarted.terminate()
            restarted.wait(10)
    assert errors == []
