"""``python -m hub.dashboard``: the live web dashboard and the stack's Prometheus metrics.

Serves http://127.0.0.1:8050 by default; reads only Redis (see reader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import redis.asyncio as aioredis
import uvicorn
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.cluster import is_cluster
from core.connection import ProcessSettings, redis_client
from core.errors import ConfigError
from core.process import config_failure, run_process
from core.redis_spec import RedisSpec
from core.settings import build, gather, pick
from hub.dashboard.control import Controls
from hub.dashboard.reader import Reader
from hub.dashboard.settings import TOKEN_ENV, ControlToken, DashboardSettings, load_token
from hub.dashboard.state import State
from hub.dashboard.view import View
from hub.dashboard.web import build_app

PROG = "python -m hub.dashboard"
#: The reader's patience with one Redis reply / connect before it shows Redis as down.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn inside our loop: core.process owns the signals (one shutdown path), not uvicorn."""

    def capture_signals(self) -> AbstractContextManager[None]:  # type: ignore[override]
        return nullcontext()


def dashboard_client(spec: RedisSpec) -> aioredis.Redis:
    """The process's client as every process gets it (core.connection.redis_client: single node, cluster
    or Sentinel, TLS options, the password file), made impatient before any I/O: no silent retries and
    short socket timeouts, so the reader notices a lost Redis (or a lost cluster master) at once and the
    page shows it; the reader's own backoff loop does the retrying."""
    client = redis_client(spec, ride_failover=False)
    client.set_retry(Retry(NoBackoff(), 0))
    if not is_cluster(client):  # a cluster's nodes already time out after 5 s (redis-py's default)
        client.connection_pool.connection_kwargs.update(socket_timeout=SOCKET_TIMEOUT_S,
                                                        socket_connect_timeout=CONNECT_TIMEOUT_S)
    return client


def warn_about_exposure(settings: DashboardSettings, token: ControlToken | None) -> None:
    if settings.loopback:
        return
    if token is None:
        log.warning("!!! serving on %s:%d, NOT loopback, with no control token: anyone who can reach this port "
                    "sees your orders, positions and PnL (read-only). Bind 127.0.0.1 and use an SSH tunnel "
                    "or a reverse proxy with authentication. !!!", settings.host, settings.port)
    else:
        log.warning("!!! serving on %s:%d, NOT loopback: the control token travels in plain HTTP; put TLS in "
                    "front (reverse proxy) before using the controls from another machine. !!!",
                    settings.host, settings.port)


async def _serve(server: uvicorn.Server, settings: DashboardSettings) -> None:
    """uvicorn exits the interpreter when it cannot bind; make that a one-line config error instead."""
    try:
        await server.serve()
    except SystemExit:
        raise ConfigError(f"cannot serve on {settings.host}:{settings.port} (address in use, or not this "
                          "machine's): stop the other server or pass another --port / --host") from None


async def run_dashboard(process: ProcessSettings, settings: DashboardSettings, token: ControlToken | None,
                        stop: asyncio.Event) -> None:
    client = dashboard_client(process.redis_spec)
    state = State(history_samples=settings.history_samples)
    view = View(state, settings, control=token is not None)
    app = build_app(state, view, settings, Controls(client, process.keys), token, stop)
    server = _Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                    access_log=False, lifespan="off", timeout_graceful_shutdown=2))
    reader = Reader(client, process.keys, state, settings)
    warn_about_exposure(settings, token)
    log.info("dashboard on http://%s:%d reading %s (%s)", settings.host, settings.port, process.display_url,
             "controls enabled" if token else "read-only: no control token")
    reading = asyncio.create_task(reader.run(stop), name="dashboard:reader")
    serving = asyncio.create_task(_serve(server, settings), name="dashboard:http")
    stopper = asyncio.create_task(stop.wait(), name="dashboard:stop")
    try:
        done, _ = await asyncio.wait((reading, serving, stopper), return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        server.should_exit = True
        state.bump()  # wakes every page stream so it sees the stop
        await asyncio.gather(reading, serving, return_exceptions=True)
        stopper.cancel()
        with contextlib.suppress(Exception):
            await client.aclose()
        log.info("dashboard stopped after %d polls", reader.polls)


def refuse_token_flag(argv: Sequence[str]) -> None:
    """A token typed as a flag would sit in ``ps`` and shell history; refuse it without echoing it."""
    if any(arg == "--control-token" or arg.startswith("--control-token=") for arg in argv):
        raise ConfigError(f"the control token is never a flag (ps and shell history would show it); "
                          f"use --control-token-file FILE or ${TOKEN_ENV}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        refuse_token_flag(sys.argv[1:] if argv is None else argv)
        values = gather(argv, [ProcessSettings, DashboardSettings], prog=PROG,
                        description=f"{__doc__.splitlines()[0]} Control token: --control-token-file or ${TOKEN_ENV}.")
        process = build(ProcessSettings, pick(values, ProcessSettings))
        settings = build(DashboardSettings, pick(values, DashboardSettings))
        token = load_token(settings)
    except ConfigError as e:
        return config_failure(PROG, e)
    return run_process(PROG, process.log_level, lambda stop: run_dashboard(process, settings, token, stop))


if __name__ == "__main__":
    sys.exit(main())
