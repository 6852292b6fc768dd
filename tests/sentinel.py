"""A real primary + replica + one Sentinel (quorum 1) on free loopback ports, in a temp dir.

``redis_sentinel(security=NodeSecurity(...))`` (tests/tls_certs.py) runs all three TLS-only with client
certificates (replication and the Sentinel's links too) and/or with the ACL file on the data nodes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.conftest import free_port
from tests.tls_certs import NodeSecurity

SERVICE = "tfmaster"


class LocalSentinel:
    def __init__(self, ports: dict[str, int], procs: dict[str, subprocess.Popen[bytes]],
                 security: NodeSecurity | None = None) -> None:
        self.ports = ports
        self._procs = procs
        self.security = security or NodeSecurity()

    @property
    def url(self) -> str:
        return self.url_for()

    def url_for(self, user: str | None = None) -> str:
        """The Sentinel URL (``rediss+sentinel://`` with the CA and client certificate if TLS), as ``user``."""
        scheme = "rediss+sentinel" if self.security.certs else "redis+sentinel"
        login = f"{user}@" if user else ""
        return f"{scheme}://{login}127.0.0.1:{self.ports['sentinel']}/{SERVICE}{self.security.url_options()}"

    def client(self, role: str, **kwargs: Any) -> redis.Redis:
        """A client of the primary or the replica (as admin), or of the Sentinel (TLS only: it has no ACL)."""
        auth = self.security.tls_kwargs() if role == "sentinel" else self.security.client_kwargs()
        return redis.Redis(port=self.ports[role], **{**auth, **kwargs})

    def kill(self, role: str) -> None:
        self._procs[role].kill()
        self._procs[role].wait(10)

    def master_port(self) -> int | None:
        client = self.client("sentinel", decode_responses=True)
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


def _replica_synced(port: int, security: NodeSecurity) -> bool:
    client = redis.Redis(port=port, decode_responses=True, **security.client_kwargs())
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def redis_sentinel(security: NodeSecurity | None = None) -> Iterator[LocalSentinel]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server missing: `apt-get install -y redis-server` (make test does)")
    secured = security or NodeSecurity()
    workdir = Path(tempfile.mkdtemp(prefix="tf-sentinel-"))
    ports = {"primary": free_port(), "replica": free_port(), "sentinel": free_port()}
    # no 5 s wait for more replicas before the diskless full sync (Redis 7's default)
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for role in ("primary", "replica"):
            (workdir / role).mkdir()
            node_conf = workdir / role / "node.conf"
            node_conf.write_text(secured.config_lines())  # masterauth: a 0600 file, not the command line
            node_conf.chmod(0o600)
            extra = ["--replicaof", "127.0.0.1", str(ports["primary"])] if role == "replica" else []
            procs[role] = subprocess.Popen([server, str(node_conf), *secured.server_args(ports[role]), *common,
                                            "--dir", str(workdir / role), *extra],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _replica_synced(ports["replica"], secured), "the replica in sync")
        conf = workdir / "sentinel.conf"
        conf.write_text(f"{secured.sentinel_lines(ports['sentinel'])}bind 127.0.0.1\ndir {workdir}\n"
                        f"sentinel monitor {SERVICE} 127.0.0.1 {ports['primary']} 1\n"
                        f"{secured.sentinel_auth_lines(SERVICE)}"
                        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                        f"sentinel failover-timeout {SERVICE} 5000\n")
        conf.chmod(0o600)
        procs["sentinel"] = subprocess.Popen([server, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
        sentinel = LocalSentinel(ports, procs, secured)
        _wait(lambda: sentinel.master_port() == ports["primary"], "the Sentinel to see the primary")
        yield sentinel
    finally:
        for proc in procs.values():
            proc.kill()
        for proc in procs.values():
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
