"""The hub's alpaca source, run as `python -m hub --source alpaca` through the real alpaca-py client
against the local Alpaca-protocol server (tests/alpaca_data_server)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Iterator

import msgpack
import pytest
import redis

from core.exitcodes import ExitCode
from tests.alpaca_data_server import AlpacaDataServer, ServerThread
from tests.alpaca_data_server.protocol import quote
from tests.helpers import ProcessGroup, eventually

TS0_NS = 1_719_878_281_218_485_389  # nine significant fraction digits, to prove none are lost
SECRET = "s3cret-value-never-logged"


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(AlpacaDataServer(credentials={"key": SECRET}, slow_client_timeout_s=0.5)) as thread:
        yield thread


def alpaca_env(server: ServerThread, path: str = "/v2/iex", secret: str = SECRET) -> dict[str, str]:
    return {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": secret, "APCA_DATA_STREAM_URL": server.url(path)}


def start_hub(processes: ProcessGroup, server: ServerThread, *args: str, path: str = "/v2/iex",
              secret: str = SECRET) -> subprocess.Popen[bytes]:
    return processes.start("-m", "hub", "--source", "alpaca", "--backoff-min", "100ms", "--backoff-max", "500ms",
                           *args, env=alpaca_env(server, path, secret))


def wait_subscribed(server: ServerThread, *symbols: str) -> None:
    eventually(lambda: set(symbols) <= server.server.subscribed(), message=f"subscription to {symbols}")


def push(server: ServerThread, *rows: tuple[str, int, float, float, float, float]) -> int:
    return server.call(server.server.push_quotes, list(rows))


def hub_status(sync_redis: redis.Redis) -> dict[str, str]:
    return dict(sync_redis.hgetall("tf:hub:hub"))


def test_quotes_reach_redis_and_spotter(server: ServerThread, processes: ProcessGroup,
                                        sync_redis: redis.Redis) -> None:
    start_hub(processes, server, "--symbols", "AAPL")
    processes.start("-m", "agents.spotter", "--instruments", "AAPL")
    wait_subscribed(server, "AAPL")
    push(server, ("AAPL", TS0_NS, 187.10, 3.0, 187.12, 1.0), ("AAPL", TS0_NS + 7, 187.11, 2.0, 187.13, 6.0))

    eventually(lambda: sync_redis.hget("tf:quote:AAPL", "ts_ns") == str(TS0_NS + 7), message="tf:quote:AAPL")
    latest = dict(sync_redis.hgetall("tf:quote:AAPL"))
    assert (float(latest["bid"]), float(latest["bid_size"]), float(latest["ask"]), float(latest["ask_size"])) == (
        187.11, 2.0, 187.13, 6.0)
    assert int(latest["ts_recv_ns"]) > 0
    expected = (187.11 * 6.0 + 187.13 * 2.0) / 8.0
    fair = eventually(lambda: sync_redis.hget("tf:cache:AAPL", "fair_price"), message="fair_price")
    assert math.isclose(float(fair), expected, rel_tol=1e-12)
    eventually(lambda: hub_status(sync_redis).get("received") == "2", message="received in heartbeat")
    status = hub_status(sync_redis)
    assert status["connection"] == "connected"
    assert int(status["last_message_age_ms"]) >= 0


def test_reconnects_after_abrupt_close(server: ServerThread, processes: ProcessGroup,
                                       sync_redis: redis.Redis) -> None:
    start_hub(processes, server, "--symbols", "AAPL,MSFT")
    wait_subscribed(server, "AAPL", "MSFT")
    server.call(server.server.cut_all)
    eventually(lambda: server.server.connections >= 2 and {"AAPL", "MSFT"} <= server.server.subscribed(),
               message="reconnect and resubscribe")
    push(server, ("MSFT", TS0_NS, 400.0, 1.0, 400.5, 1.0))
    eventually(lambda: sync_redis.hget("tf:quote:MSFT", "ts_ns") == str(TS0_NS), message="quote after reconnect")
    eventually(lambda: int(hub_status(sync_redis).get("reconnects", 0)) >= 1, message="reconnects in heartbeat")


def test_connection_limit_at_start_exits_75_after_grace(server: ServerThread, processes: ProcessGroup) -> None:
    server.server.reject_406_for(60)
    hub = start_hub(processes, server, "--symbols", "AAPL", "--connect-grace", "2s")
    assert hub.wait(20) == ExitCode.CONNECTION_LIMIT
    output = processes.output(hub)
    assert "CRITICAL" in output and "ConnectionLimitExceededError" in output
    auths = [a for _, a in server.server.actions if a.get("action") == "auth"]
    assert len(auths) >= 2  # it retried within the grace window
    assert SECRET not in output


def test_connection_limit_that_clears_within_grace_connects(server: ServerThread, processes: ProcessGroup,
                                                            sync_redis: redis.Redis) -> None:
    server.server.reject_next_auths_406(2)
    start_hub(processes, server, "--symbols", "AAPL", "--connect-grace", "30s")
    wait_subscribed(server, "AAPL")
    assert server.server.errors_sent.count(406) == 2
    assert server.server.connections == 3


def test_second_hub_on_the_same_account_gets_406(server: ServerThread, processes: ProcessGroup,
                                                 sync_redis: redis.Redis) -> None:
    start_hub(processes, server, "--symbols", "AAPL")
    wait_subscribed(server, "AAPL")
    second = start_hub(processes, server, "--symbols", "AAPL", "--name", "hub2", "--connect-grace", "1s")
    assert second.wait(20) == ExitCode.CONNECTION_LIMIT


@pytest.mark.parametrize(("case", "expected_code"), [("bad_keys", 402), ("sip_without_plan", 409),
                                                     ("too_many_symbols", 405)])
def test_provider_refusals_exit_77(case: str, expected_code: int, processes: ProcessGroup) -> None:
    server_obj = AlpacaDataServer(credentials={"key": SECRET}, sip_allowed=False, symbol_limit=2)
    with ServerThread(server_obj) as server:
        args = {"bad_keys": ("--symbols", "AAPL"), "sip_without_plan": ("--symbols", "AAPL"),
                "too_many_symbols": ("--symbols", "AAPL,MSFT,IBM")}[case]
        hub = start_hub(processes, server, *args, path="/v2/sip" if case == "sip_without_plan" else "/v2/iex",
                        secret="wrong-secret" if case == "bad_keys" else SECRET)
        assert hub.wait(20) == ExitCode.PROVIDER_REFUSED
        assert expected_code in server_obj.errors_sent
        assert SECRET not in processes.output(hub) and "wrong-secret" not in processes.output(hub)


def test_malformed_frames_are_skipped_and_counted(server: ServerThread, processes: ProcessGroup,
                                                  sync_redis: redis.Redis) -> None:
    start_hub(processes, server, "--symbols", "AAPL")
    wait_subscribed(server, "AAPL")
    bad_price = {**quote("AAPL", TS0_NS, 1.0, 1.0, 1.1, 1.0), "bp": "abc"}
    nan_price = {**quote("AAPL", TS0_NS, 1.0, 1.0, 1.1, 1.0), "ap": float("nan")}
    for frame in (b"\xc1", msgpack.packb(5), msgpack.packb(["not a message"]), msgpack.packb([bad_price]),
                  msgpack.packb([nan_price])):
        server.call(server.server.send_raw, frame)
    push(server, ("AAPL", TS0_NS + 1, 10.0, 1.0, 10.5, 1.0))
    eventually(lambda: sync_redis.hget("tf:quote:AAPL", "ts_ns") == str(TS0_NS + 1), message="good quote")
    eventually(lambda: hub_status(sync_redis).get("malformed") == "5", message="5 malformed counted")
    assert server.server.connections == 1
    assert sync_redis.hget("tf:quote:AAPL", "bid") == "10.0"


def test_symbols_added_at_runtime_without_reconnecting(server: ServerThread, processes: ProcessGroup,
                                                       sync_redis: redis.Redis) -> None:
    start_hub(processes, server, "--symbols", "AAPL")
    wait_subscribed(server, "AAPL")
    sync_redis.sadd("tf:symbols:wanted", "TSLA")
    sync_redis.publish("tf:ctl:symbols", "TSLA")
    wait_subscribed(server, "AAPL", "TSLA")
    push(server, ("TSLA", TS0_NS, 250.0, 1.0, 250.1, 1.0))
    eventually(lambda: sync_redis.hget("tf:quote:TSLA", "ts_ns") == str(TS0_NS), message="TSLA quote")
    assert server.server.connections == 1
    subscribes = [a for _, a in server.server.actions if a.get("action") == "subscribe"]
    assert len(subscribes) == 2
    # no agent's heartbeat wants TSLA: after the grace it is unsubscribed on the same connection
    eventually(lambda: server.server.subscribed() == {"AAPL"}, timeout_s=20, message="TSLA unsubscribed")
    assert [a.get("quotes") for _, a in server.server.actions if a.get("action") == "unsubscribe"] == [["TSLA"]]
    assert server.server.connections == 1


def test_silent_stall_forces_reconnect(server: ServerThread, processes: ProcessGroup,
                                       sync_redis: redis.Redis) -> None:
    start_hub(processes, server, "--symbols", "AAPL", "--stall-timeout", "1s", "--stall-check", "always")
    wait_subscribed(server, "AAPL")
    eventually(lambda: server.server.connections >= 2, message="reconnect after a stall")
    eventually(lambda: int(hub_status(sync_redis).get("stalls", 0)) >= 1, message="stalls in heartbeat")


def test_slow_client_is_cut_off_and_reconnects(server: ServerThread, processes: ProcessGroup,
                                               sync_redis: redis.Redis) -> None:
    hub = start_hub(processes, server, "--symbols", "AAPL,MSFT")
    wait_subscribed(server, "AAPL", "MSFT")
    server.run_sync(server.server.start_stream, 50_000.0, 1000)
    os.kill(hub.pid, signal.SIGSTOP)  # the hub stops reading; the server's sends back up
    try:
        eventually(lambda: server.server.cutoffs >= 1, timeout_s=20, message="407 slow client cut-off")
    finally:
        os.kill(hub.pid, signal.SIGCONT)
    server.call(server.server.stop_stream)
    # the hub first works through what was buffered before the cut-off: slow on a loaded machine
    eventually(lambda: server.server.connections >= 2 and {"AAPL", "MSFT"} <= server.server.subscribed(),
               timeout_s=30, message="reconnect after the cut-off")
    assert 407 in server.server.errors_sent
    eventually(lambda: int(hub_status(sync_redis).get("reconnects", 0)) >= 1, timeout_s=30,
               message="reconnects in heartbeat")


def test_stops_promptly_while_the_server_floods(server: ServerThread, processes: ProcessGroup,
                                                sync_redis: redis.Redis) -> None:
    hub = start_hub(processes, server, "--symbols", "AAPL,MSFT")
    wait_subscribed(server, "AAPL", "MSFT")
    server.run_sync(server.server.start_blast, 500)
    eventually(lambda: int(hub_status(sync_redis).get("received", 0)) > 10_000, message="flood arriving")
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(15) == 0
    assert hub_status(sync_redis) == {}  # heartbeat released on the way out
