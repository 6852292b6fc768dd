"""A real local Redis Cluster for the tests: 3 masters + 3 replicas on free loopback ports, in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

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


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        info = client.execute_command("CLUSTER", "INFO")
        return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
    except redis.RedisError:
        return False
    finally:
        client.close()


class LocalCluster:
    """The nodes of a running test cluster."""

    def __init__(self, ports: list[int], procs: list[subprocess.Popen[bytes]]) -> None:
        self.ports = ports
        self._procs = dict(zip(ports, procs, strict=True))

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]},127.0.0.1:{self.ports[2]}/"

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crashed host would be."""
        self._procs[port].kill()
        self._procs[port].wait(10)


@contextmanager
def redis_cluster(replicas: int = 1) -> Iterator[LocalCluster]:
    """Start, create and wait for a cluster of 3 masters with ``replicas`` each; yields it; tears it all down.
    (``replicas=0``: the bench's fan-out without the replication stream; such a cluster cannot fail over.)"""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server / redis-cli missing: `apt-get install -y redis-server` (make test does)")
    workdir = Path(tempfile.mkdtemp(prefix="tf-cluster-"))
    ports = _free_ports(NODES // 2 * (1 + replicas))
    procs = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--save", "",
                 "--appendonly", "no", "--dir", str(node_dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(lambda: all(_pings(p) for p in ports), "cluster nodes to start")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas",
                        str(replicas), "--cluster-yes"], check=True, capture_output=True, timeout=60)
        _wait(lambda: all(_cluster_ok(p) for p in ports), "cluster_state:ok on every node")
        _wait(lambda: _replicas_synced(ports, NODES // 2 * replicas), "the replicas in sync")
        yield LocalCluster(ports, procs)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _replicas_synced(ports: list[int], expected: int) -> bool:
    """``expected`` replicas with their link up: one that never synced cannot be promoted (its data is "too old")."""
    synced = 0
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        try:
            info = client.info("replication")
            synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()
    return synced == expected


def _pings(port: int) -> bool:
    client = redis.Redis(port=port)
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
