"""Private redis-servers for the bench and the test suite (one start-and-ping helper for both).

Configured like deploy/redis.conf minus persistence, unless the caller passes more arguments
(``--appendonly yes``, ``--tls-port ...``, ``--aclfile ...``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

#: deploy/redis.conf's limit: a subscriber this far behind is cut off.
PUBSUB_LIMIT = "pubsub 32mb 8mb 60"
BASE_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--client-output-buffer-limit", PUBSUB_LIMIT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up."""


@dataclass
class RedisServer:
    """One redis-server process; ``restart`` brings it back on the same port and directory."""

    args: tuple[str, ...]
    port: int
    workdir: Path
    ping_kwargs: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None  # redis-server wants it before every other argument
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError("redis-server is not installed: run `make setup` "
                                   "or `apt-get install -y redis-server`")
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115  # the child keeps it
        config = [self.config_file] if self.config_file else []
        argv = [binary, *config, "--port", str(self.port), "--dir", str(self.workdir), *self.args]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        kwargs = {"host": "127.0.0.1", "port": self.port, **self.ping_kwargs}
        client = redis.Redis(socket_connect_timeout=1, **kwargs)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.AuthenticationError:
                    return  # it answered: an ACL server refusing the anonymous ping is up
                except redis.ResponseError as e:
                    if "NOAUTH" in str(e) or "NOPERM" in str(e):
                        return
                    raise
                except (redis.ConnectionError, OSError):
                    assert self.proc is not None
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        self.kill()
                        tail = (self.workdir / "redis.log").read_text(errors="replace")[-800:]
                        raise RedisServerError(f"redis-server did not start on port {self.port}:\n{tail}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout_s: float = 10.0) -> RedisServer:
        self.kill()
        return self.start(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_redis_server(*extra: str, port: int | None = None, workdir: Path | None = None,
                       ping_kwargs: dict[str, Any] | None = None, base: Sequence[str] = BASE_ARGS,
                       config_file: str | None = None) -> RedisServer:
    """Start redis-server (``config_file``, then ``base`` then ``extra`` arguments; later ones win) and wait
    until it answers."""
    directory = workdir or Path(tempfile.mkdtemp(prefix="tf-redis-"))
    chosen = port or free_port()
    if chosen == 6379:
        raise RedisServerError("refusing port 6379: that is the stack's Redis")
    server = RedisServer(args=(*base, *extra), port=chosen, workdir=directory, ping_kwargs=dict(ping_kwargs or {}),
                         config_file=config_file)
    return server.start()


@contextmanager
def redis_server(*extra: str) -> Iterator[str]:
    """Start redis-server, yield its URL, stop it and remove its directory."""
    server = start_redis_server(*extra)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def set_pubsub_limit(url: str, limit: str) -> None:
    """E.g. ``pubsub 0 0 0`` to let a throughput test queue freely, PUBSUB_LIMIT to restore."""
    client = redis.Redis.from_url(url)
    client.config_set("client-output-buffer-limit", limit)
    client.close()


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
