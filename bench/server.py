"""A private redis-server on a free port, configured like deploy/redis.conf (minus persistence)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

#: deploy/redis.conf's limit: a subscriber this far behind is cut off.
PUBSUB_LIMIT = "pubsub 32mb 8mb 60"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """Start redis-server, yield its URL, stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make setup` or `apt-get install -y redis-server`")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="tf-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--client-output-buffer-limit", PUBSUB_LIMIT],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"redis-server did not start on port {port}") from None
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def set_pubsub_limit(url: str, limit: str) -> None:
    """E.g. ``pubsub 0 0 0`` to let a throughput test queue freely, PUBSUB_LIMIT to restore."""
    client = redis.Redis.from_url(url)
    client.config_set("client-output-buffer-limit", limit)
    client.close()


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
