"""A real primary + replica + one Sentinel (quorum 1) on free loopback ports, in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.conftest import free_port

SERVICE = "tfmaster"


class LocalSentinel:
    def __init__(self, ports: dict[str, int], procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.ports = ports
        self._procs = procs

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.ports['sentinel']}/{SERVICE}"

    def kill(self, role: str) -> None:
        self._procs[role].kill()
        self._procs[role].wait(10)

    def master_port(self) -> int | None:
        client = redis.Redis(port=self.ports["sentinel"], decode_responses=True)
        try:
            address = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
            return int(address[1]) if address else None
        except redis.RedisError:
            return None
        finally:
            client.close()


def _wait(check: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _replica_synced(port: int) -> bool:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def redis_sentinel() -> Iterator[LocalSentinel]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server missing: `apt-get install -y redis-server` (make test does)")
    workdir = Path(tempfile.mkdtemp(prefix="tf-sentinel-"))
    ports = {"primary": free_port(), "replica": free_port(), "sentinel": free_port()}
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for role in ("primary", "replica"):
            (workdir / role).mkdir()
            extra = ["--replicaof", "127.0.0.1", str(ports["primary"])] if role == "replica" else []
            procs[role] = subprocess.Popen([server, "--port", str(ports[role]), *common, "--dir", str(workdir / role),
                                            *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _replica_synced(ports["replica"]), "the replica in sync")
        conf = workdir / "sentinel.conf"
        conf.write_text(f"port {ports['sentinel']}\nbind 127.0.0.1\ndir {workdir}\n"
                        f"sentinel monitor {SERVICE} 127.0.0.1 {ports['primary']} 1\n"
                        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                        f"sentinel failover-timeout {SERVICE} 5000\n")
        procs["sentinel"] = subprocess.Popen([server, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
        sentinel = LocalSentinel(ports, procs)
        _wait(lambda: sentinel.master_port() == ports["primary"], "the Sentinel to see the primary")
        yield sentinel
    finally:
        for proc in procs.values():
            proc.kill()
        for proc in procs.values():
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
