"""Fixtures: a real redis-server owned by the suite, clean per test; process helpers."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from bench.server import RedisServerError, free_port, start_redis_server
from tests.helpers import ProcessGroup

__all__ = ["free_port"]  # tests import it from here

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server on a free port in a temp dir; yields its URL."""
    try:
        server = start_redis_server()
    except RedisServerError as e:
        pytest.fail(f"{e} (make test installs it)", pytrace=False)
    yield server.url
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The suite's Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def processes(redis_url: str, tmp_path: Path) -> Iterator[ProcessGroup]:
    """Starts ``python -m ...`` subprocesses against the suite's Redis; stops them after the test."""
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
    yield group
    group.stop_all()
