"""rediss:// with a private CA and with client certificates (mTLS), against a real TLS redis-server.

Both client paths (redis-py and the lean RESP client of core.resp) read one parsed spec
(core.redis_spec), so the hub's publisher, the agents' subscriptions and every redis-py call
must all connect with the URL's CA and certificates.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from bench.server import RedisServer, free_port, start_redis_server
from core.connection import redis_client
from core.errors import ConfigError
from core.exitcodes import ExitCode
from core.redis_spec import parse_redis_url
from core.resp import Address, RespConnection, Subscription, command
from tests.helpers import ProcessGroup, eventually
from tests.tls_certs import Certs, make_certs, tls_server_args


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _tls_server(certs: Certs, *, client_certs: bool) -> RedisServer:
    tls_port = free_port()
    ping = {"port": tls_port, "ssl": True, "ssl_ca_certs": str(certs.ca)}
    if client_certs:
        ping |= {"ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key)}
    return start_redis_server(*tls_server_args(certs, tls_port, client_certs=client_certs), ping_kwargs=ping)


@pytest.fixture(scope="module")
def ca_server(certs: Certs) -> Iterator[RedisServer]:
    server = _tls_server(certs, client_certs=False)
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def mtls_server(certs: Certs) -> Iterator[RedisServer]:
    server = _tls_server(certs, client_certs=True)
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


def tls_url(server: RedisServer, **options: str) -> str:
    tls_port = server.ping_kwargs["port"]  # the plain port is closed
    return f"rediss://127.0.0.1:{tls_port}/0?{urlencode(options)}"


def sync_client(url: str) -> redis.Redis:
    return redis.Redis(decode_responses=True, **parse_redis_url(url).redis_py_kwargs())


async def _both_clients_work(url: str) -> None:
    client = redis_client(url)
    try:
        assert await client.set("tls:probe", "redis-py")
        connection = await RespConnection.open(Address.from_client(client))
        try:
            assert await connection.send(command(b"GET", b"tls:probe"), 1) == b"redis-py"
        finally:
            connection.close()
        sub = Subscription(Address.from_client(client))
        await sub.subscribe("tls:chan")
        assert await client.publish("tls:chan", "hello") == 1
        await sub.aclose()
    finally:
        await client.aclose()


async def test_private_ca_works_for_redis_py_and_the_lean_client(ca_server: RedisServer, certs: Certs) -> None:
    await _both_clients_work(tls_url(ca_server, ssl_ca_certs=str(certs.ca)))


async def test_mutual_tls_works_for_redis_py_and_the_lean_client(mtls_server: RedisServer, certs: Certs) -> None:
    await _both_clients_work(tls_url(mtls_server, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                                     ssl_keyfile=str(certs.client_key)))


async def test_an_untrusted_server_is_a_config_error_for_the_lean_client(ca_server: RedisServer,
                                                                        certs: Certs) -> None:
    spec = parse_redis_url(tls_url(ca_server, ssl_ca_certs=str(certs.other_ca)))
    with pytest.raises(ConfigError, match="ssl_ca_certs"):
        await RespConnection.open(spec)


def test_hub_and_agent_stream_over_mutual_tls(processes: ProcessGroup, mtls_server: RedisServer,
                                              certs: Certs) -> None:
    url = tls_url(mtls_server, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                  ssl_keyfile=str(certs.client_key))
    env = {"REDIS_URL": url}
    hub = processes.start("-m", "hub", "--symbols", "AAPL", "--sim-rate", "300", "--name", "tls-hub", env=env)
    agent = processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--throttle", "20ms",
                            "--name", "tls-spotter", env=env)
    client = sync_client(url)
    try:
        eventually(lambda: client.hget("tf:cache:AAPL", "fair_price"), timeout_s=20, message="fair_price over TLS")
        assert client.hget("tf:agent:tls-spotter", "errors") == "0"
        assert client.exists("tf:hub:tls-hub")
    finally:
        client.close()
    for proc in (agent, hub):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == ExitCode.OK


def test_hub_with_the_wrong_ca_exits_78_naming_the_fix(processes: ProcessGroup, ca_server: RedisServer,
                                                        certs: Certs, tmp_path: Path) -> None:
    url = tls_url(ca_server, ssl_ca_certs=str(certs.other_ca))
    result = processes.run("-m", "hub", "--symbols", "AAPL", "--redis-wait", "5s", env={"REDIS_URL": url})
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "ssl_ca_certs" in result.stderr and "Traceback" not in result.stderr
