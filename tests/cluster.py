"""A real local Redis Cluster for the tests: 3 masters + 3 replicas on free loopback ports, in a temp dir.

``redis_cluster(security=NodeSecurity(...))`` (tests/tls_certs.py) starts it TLS-only with client
certificates (cluster bus and replication over TLS too) and/or with an ACL file on every node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.tls_certs import NodeSecurity

NODES = 6


def _free_ports(count: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free too."""
    import socket

    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _cluster_ok(port: int, security: NodeSecurity) -> bool:
    client = redis.Redis(port=port, decode_responses=True, **security.client_kwargs())
    try:
        info = client.execute_command("CLUSTER", "INFO")
        return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
    except redis.RedisError:
        return False
    finally:
        client.close()


class LocalCluster:
    """The nodes of a running test cluster."""

    def __init__(self, ports: list[int], procs: list[subprocess.Popen[bytes]],
                 security: NodeSecurity | None = None) -> None:
        self.ports = ports
        self._procs = dict(zip(ports, procs, strict=True))
        self.security = security or NodeSecurity()

    @property
    def url(self) -> str:
        return self.url_for()

    def url_for(self, user: str | None = None) -> str:
        """The cluster URL (``rediss+cluster://`` with the CA and client certificate if TLS), as ``user``."""
        scheme = "rediss+cluster" if self.security.certs else "redis+cluster"
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])
        return f"{scheme}://{f'{user}@' if user else ''}{seeds}/{self.security.url_options()}"

    def client(self, port: int, **kwargs: Any) -> redis.Redis:
        """A client of one node, as the helper's admin (TLS and credentials from the security)."""
        return redis.Redis(port=port, **{**self.security.client_kwargs(), **kwargs})

    def alive(self) -> list[int]:
        """The ports of the nodes not killed."""
        return [port for port, proc in self._procs.items() if proc.poll() is None]

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crashed host would be."""
        self._procs[port].kill()
        self._procs[port].wait(10)


@contextmanager
def redis_cluster(replicas: int = 1, security: NodeSecurity | None = None) -> Iterator[LocalCluster]:
    """Start, create and wait for a cluster of 3 masters with ``replicas`` each; yields it; tears it all down.
    (``replicas=0``: the bench's fan-out without the replication stream; such a cluster cannot fail over.)"""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server / redis-cli missing: `apt-get install -y redis-server` (make test does)")
    secured = security or NodeSecurity()
    workdir = Path(tempfile.mkdtemp(prefix="tf-cluster-"))
    ports = _free_ports(NODES // 2 * (1 + replicas))  # with TLS these are the TLS ports (the bus is tls-port + 10000)
    procs = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            conf = node_dir / "node.conf"
            conf.write_text(secured.config_lines())
            conf.chmod(0o600)
            procs.append(subprocess.Popen(
                [server, str(conf), *secured.server_args(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--save", "",
                 "--appendonly", "no", "--dir", str(node_dir),
                 # Redis 7 waits 5 s for more replicas before a diskless full sync: that was most of the start
                 "--repl-diskless-sync-delay", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(lambda: all(_pings(p, secured) for p in ports), "cluster nodes to start")
        subprocess.run([cli, *secured.cli_args(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", str(replicas), "--cluster-yes"], check=True, capture_output=True,
                       timeout=60, env={**os.environ, **secured.cli_env()})
        _wait(lambda: all(_cluster_ok(p, secured) for p in ports), "cluster_state:ok on every node")
        _wait(lambda: _replicas_synced(ports, NODES // 2 * replicas, secured), "the replicas in sync")
        yield LocalCluster(ports, procs, secured)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _replicas_synced(ports: list[int], expected: int, security: NodeSecurity) -> bool:
    """``expected`` replicas with their link up: one that never synced cannot be promoted (its data is "too old")."""
    synced = 0
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True, **security.client_kwargs())
        try:
            info = client.info("replication")
            synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()
    return synced == expected


def _pings(port: int, security: NodeSecurity) -> bool:
    client = redis.Redis(port=port, **security.client_kwargs())
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait(check: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
