"""rediss:// with a private CA and with client certificates (mTLS), against a real TLS redis-server.

Both client paths (redis-py and the lean RESP client of core.resp) read one parsed spec
(core.redis_spec), so the hub's publisher, the agents' subscriptions and every redis-py call
must all connect with the URL's CA and certificates. The same holds on many hosts: a 3+3 cluster
and a primary/replica/Sentinel setup, TLS-only with client certificates between every pair of
servers too, each node loading the per-role ACL of ``python -m core.acl --topology ...``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from bench.server import RedisServer, free_port, start_redis_server
from core.acl import Topology, render_example, setup_topology
from core.connection import ProcessSettings, redis_client
from core.errors import ConfigError
from core.exitcodes import ExitCode
from core.keys import Keys
from core.redis_spec import parse_redis_url
from core.resp import Address, RespConnection, Subscription, command
from tests.cluster import LocalCluster, redis_cluster
from tests.conftest import REPO
from tests.helpers import ProcessGroup, eventually
from tests.sentinel import SERVICE, LocalSentinel, redis_sentinel
from tests.tls_certs import Certs, NodeSecurity, make_certs, tls_server_args


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
    # the wait is far past the refusal, so the test reads the refusal and not the deadline
    result = processes.run("-m", "hub", "--symbols", "AAPL", "--redis-wait", "30s", env={"REDIS_URL": url})
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "ssl_ca_certs" in result.stderr and "Traceback" not in result.stderr


# --- many hosts: a TLS cluster and a TLS Sentinel setup, with the per-role ACL on every node --------------

CLUSTER_SYMBOLS = [f"T{i:02d}" for i in range(12)]
QUOTED = "T00,T01"  # the quote manager's instruments: enough for orders, few enough to stay in its rate


def _link_secured(certs: Certs, var: Path, topology: Topology) -> NodeSecurity:
    """TLS with client certificates everywhere and ``python -m core.acl --topology ...``'s files on every node."""
    acl = setup_topology(var, topology)
    return NodeSecurity(certs=certs, aclfile=acl, replication_conf=acl.parent / "replication.conf",
                        admin_password=_secret(var, "admin"),
                        sentinel_password=_secret(var, "sentinel") if topology == "sentinel" else None)


def _secret(var: Path, role: str) -> str:
    return (var / "secrets" / f"{role}.password").read_text().strip()


def _as_role(url_for: Callable[[str], str], var: Path, role: str) -> dict[str, str]:
    """A process's environment as ``role``: user in the URL, password in a file (never the command line)."""
    return {"REDIS_URL": url_for(role), "REDIS_PASSWORD_FILE": str(var / "secrets" / f"{role}.password")}


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    var = tmp_path_factory.mktemp("cluster-var")
    started = time.monotonic()
    with redis_cluster(security=_link_secured(certs, var, "cluster")) as cluster:
        print(f"TLS + ACL cluster (3+3, client certificates, tls-cluster, tls-replication) up in "
              f"{time.monotonic() - started:.2f}s")
        yield cluster, var


def _admin_cluster(cluster: LocalCluster) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports[:3]],
                        decode_responses=True, **cluster.security.client_kwargs())


def _acl_logs(cluster: LocalCluster) -> dict[int, list[Any]]:
    logs = {}
    for port in cluster.alive():
        node = cluster.client(port, decode_responses=True)
        try:
            logs[port] = node.acl_log()
        finally:
            node.close()
    return logs


def _start_stack(stack: ProcessGroup, cluster: LocalCluster, var: Path) -> None:
    """The gateway, the sim hub, a spotter and a quote manager, each as its role user with the client certificate."""
    symbols = ",".join(CLUSTER_SYMBOLS)
    agent = _as_role(cluster.url_for, var, "agent")
    stack.start("-m", "hub.execution", "--broker", "sim", env=_as_role(cluster.url_for, var, "gateway"))
    stack.start("-m", "hub", "--source", "sim", "--symbols", symbols, "--sim-rate", "600",
                env=_as_role(cluster.url_for, var, "hub"))
    stack.start("-m", "agents.spotter", "--instruments", symbols, "--throttle", "50ms", env=agent)
    stack.start("-m", "agents.quote_manager", "--instruments", QUOTED, "--throttle", "100ms", "--quote-size", "10",
                "--min-spread", "0.02", "--max-order-rate", "5", env=agent)


def _status_shows_every_process_with_its_host(stack: ProcessGroup, cluster: LocalCluster, var: Path) -> None:
    status = stack.run("-m", "hub.status", "--json", "true", env=_as_role(cluster.url_for, var, "operator"))
    assert status.returncode == ExitCode.OK, status.stderr[-2000:]
    state = json.loads(status.stdout)
    assert {"spotter", "quote_manager"} <= set(state["agents"]) and "hub" in state["hubs"]
    here = socket.gethostname()  # what a remote process shows: its own host, from its heartbeat
    assert {state[kind][name]["host"] for kind, name in (("agents", "spotter"), ("hubs", "hub"),
                                                          ("gateways", "gateway"))} == {here}


@pytest.mark.timeout(120)
def test_role_users_run_the_sim_stack_over_a_tls_cluster_with_client_certificates(
        tls_cluster: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, var = tls_cluster
    keys = Keys("tf", cluster=True)
    admin = _admin_cluster(cluster)
    stack = ProcessGroup({**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}, tmp_path, cwd=REPO,
                         python=sys.executable)
    try:
        _start_stack(stack, cluster, var)
        eventually(lambda: all(admin.hget(keys.cache(s), "fair_price") for s in CLUSTER_SYMBOLS), timeout_s=60,
                   message="fair_price in every tf:cache:{SYM}")
        assert len({admin.get_node_from_key(keys.cache(s)).port for s in CLUSTER_SYMBOLS}) == 3  # all masters
        eventually(lambda: admin.scard(keys.open_orders()) > 0 or admin.xlen(keys.order_events()) > 0, timeout_s=60,
                   message="the quote manager's orders made by the gateway")
        events = [fields for _, fields in admin.xrange(keys.order_events())]
        assert {e["agent"] for e in events} == {"quote_manager"} and "new" in {e["event"] for e in events}
        _status_shows_every_process_with_its_host(stack, cluster, var)
        for proc, _ in stack.procs:
            assert proc.poll() is None, stack.output(proc)[-3000:]
        assert _acl_logs(cluster) == {port: [] for port in cluster.ports}  # no role lacked a right, on any node
    finally:
        stack.stop_all()
        admin.close()
    for proc, _ in stack.procs:
        assert proc.returncode == ExitCode.OK, stack.output(proc)[-3000:]


def test_the_tls_cluster_refuses_plaintext_cert_less_and_anonymous_clients(
        tls_cluster: tuple[LocalCluster, Path], certs: Certs) -> None:
    cluster, var = tls_cluster
    port = cluster.alive()[0]
    attempts = {
        "plaintext": {},
        "TLS without a client certificate": {"ssl": True, "ssl_ca_certs": str(certs.ca)},
        "a client certificate but no password": cluster.security.tls_kwargs(),
    }
    for what, kwargs in attempts.items():
        client = redis.Redis(port=port, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0),
                             **kwargs)
        with pytest.raises(redis.RedisError):
            client.ping()
            pytest.fail(f"{what} was let in")
        client.close()
    agent = cluster.client(port, username="agent", password=_secret(var, "agent"))
    try:  # the role's limits hold on the cluster too (the halt key and its {orders} slot)
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.execute_command("FLUSHALL")
    finally:
        agent.close()
    for node in cluster.alive():  # the refusals above are logged; keep the stack test's empty-log check honest
        cluster.client(node).acl_log_reset()


def _sentinel_sees_the_replica(sentinel: LocalSentinel) -> bool:
    client = sentinel.client("sentinel", decode_responses=True)  # TLS with the client certificate
    try:
        return [r["flags"] for r in client.execute_command("SENTINEL", "replicas", SERVICE)] == ["slave"]
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_role_users_through_tls_sentinels_and_a_failover_under_the_acl(certs: Certs, tmp_path: Path) -> None:
    var = tmp_path / "var"
    with redis_sentinel(_link_secured(certs, var, "sentinel")) as sentinel:
        group = ProcessGroup({**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}, tmp_path, cwd=REPO,
                             python=sys.executable)
        nodes = {role: sentinel.client(role, decode_responses=True) for role in ("primary", "replica")}
        try:
            group.start("-m", "hub", "--source", "sim", "--symbols", "AAPL,MSFT", "--sim-rate", "300",
                        env=_as_role(sentinel.url_for, var, "hub"))
            group.start("-m", "agents.spotter", "--instruments", "AAPL,MSFT", "--throttle", "50ms",
                        env=_as_role(sentinel.url_for, var, "agent"))
            for role, node in nodes.items():  # written on the primary; replicated over TLS as 'replica'
                eventually(lambda n=node: all(n.hget(f"tf:cache:{s}", "fair_price") for s in ("AAPL", "MSFT")),
                           timeout_s=30, message=f"fair_price on the {role}, the master found through the Sentinel")
            eventually(lambda: _sentinel_sees_the_replica(sentinel), message="the Sentinel monitoring both over TLS")
            for proc, _ in group.procs:
                assert proc.poll() is None, group.output(proc)[-3000:]
            assert {role: node.acl_log() for role, node in nodes.items()} == {"primary": [], "replica": []}
            group.stop_all()
            for proc, _ in group.procs:
                assert proc.returncode == ExitCode.OK, group.output(proc)[-3000:]
            # a failover under TLS + ACL: the Sentinel promotes the replica as 'sentinel' (SLAVEOF NO ONE,
            # CONFIG REWRITE, CLIENT KILL), and nothing it sends is refused
            sentinel.kill("primary")
            eventually(lambda: sentinel.master_port() == sentinel.ports["replica"], timeout_s=30,
                       message="the replica promoted by the TLS Sentinel")
            eventually(lambda: nodes["replica"].info("replication")["role"] == "master", message="the replica's role")
            assert nodes["replica"].acl_log() == []
        finally:
            group.stop_all()
            for node in nodes.values():
                node.close()


def test_the_cluster_acl_sample_is_what_core_acl_renders() -> None:
    for topology in ("cluster", "sentinel"):  # regenerate: python -m core.acl --topology T --example
        assert (REPO / "deploy" / topology / "users.acl.example").read_text() == render_example(topology)
    rules = render_example("cluster")
    assert "+spublish" in rules and "~tf:{orders}:risk:halt" in rules and "user replica on" in rules


def _directives(path: Path) -> dict[str, list[str]]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {words[0]: words[1:] for words in lines}


def test_the_deploy_node_configs_secure_as_the_tested_nodes(certs: Certs) -> None:
    """deploy/*/redis-node.conf set every security option the tested nodes run with, to the same values."""
    args = NodeSecurity(certs=certs, aclfile=Path("users.acl")).server_args(7000)
    tested = {name[2:]: value for name, value in zip(args[::2], args[1::2], strict=True)}
    for topology in ("cluster", "sentinel"):
        sample = _directives(REPO / "deploy" / topology / "redis-node.conf")
        wanted = {k: v for k, v in tested.items() if topology == "cluster" or k != "tls-cluster"}
        assert set(wanted) <= set(sample) and "include" in sample, topology
        switches = {k: v for k, v in wanted.items() if v in ("0", "yes")}
        assert switches == {k: sample[k][0] for k in switches}, topology
    sentinel = _directives(REPO / "deploy" / "sentinel" / "sentinel.conf")
    assert sentinel["tls-auth-clients"] == ["yes"] and sentinel["tls-replication"] == ["yes"]
    assert sentinel["port"] == ["0"] and sentinel["sentinel"]  # auth-user/auth-pass follow the monitor line


def test_multi_host_urls_take_the_tls_options(certs: Certs) -> None:
    query = f"?ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
    for url in (f"rediss+cluster://agent:pw@10.0.0.1:7000,10.0.0.2:7000/{query}",
                f"rediss+sentinel://agent:pw@10.0.0.1:26379/tfmaster{query}"):
        spec = ProcessSettings(redis_url=url).redis_spec
        assert spec.node_kwargs()["ssl_certfile"] == str(certs.client_cert) and spec.node_kwargs()["ssl"]
        assert "pw" not in spec.display and "pw" not in repr(spec)
    for bad, fix in ((f"redis+cluster://10.0.0.1:7000/{query}", "need a rediss://"),
                     ("rediss+cluster://10.0.0.1:7000/?ssl_certfile=/nonexistent.pem", "not a readable file"),
                     ("rediss+cluster://10.0.0.1:7000/?sslcert=x", "unknown URL option"),
                     ("rediss+sentinel://10.0.0.1:26379/m?db=2", "in the path")):
        with pytest.raises(ConfigError, match=fix):
            ProcessSettings(redis_url=bad)
