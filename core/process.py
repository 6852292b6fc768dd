"""The one way a process starts and stops.

``run_process`` configures logging once, runs the async entry point on uvloop,
turns the first SIGTERM/SIGINT into a stop event (drain, deregister, close) and
a second into an immediate exit, and maps exceptions to the exit codes in
:mod:`core.exitcodes`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import uvloop
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError as RedisNoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionLimitExceededError,
    DuplicateInstanceError,
    InsufficientSubscriptionError,
    RedisUnavailableError,
    SymbolLimitExceededError,
)
from core.exitcodes import ExitCode

log = logging.getLogger(__name__)

_EXIT_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (ConfigError, ExitCode.CONFIG),
    (DuplicateInstanceError, ExitCode.DUPLICATE),
    (ConnectionLimitExceededError, ExitCode.CONNECTION_LIMIT),
    (AuthenticationError, ExitCode.PROVIDER_REFUSED),
    (InsufficientSubscriptionError, ExitCode.PROVIDER_REFUSED),
    (SymbolLimitExceededError, ExitCode.PROVIDER_REFUSED),
    # before RedisConnectionError (its base): a refused password or a missing ACL right will not
    # cure itself by restarting
    (RedisAuthenticationError, ExitCode.CONFIG),
    (RedisNoPermissionError, ExitCode.CONFIG),
    (RedisUnavailableError, ExitCode.REDIS_UNAVAILABLE),
    (RedisConnectionError, ExitCode.REDIS_UNAVAILABLE),
    (RedisTimeoutError, ExitCode.REDIS_UNAVAILABLE),
)


def exit_code_for(error: BaseException) -> ExitCode:
    for kind, code in _EXIT_CODES:
        if isinstance(error, kind):
            return code
    return ExitCode.SOFTWARE


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def install_stop_handlers(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT sets ``stop``; a second exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(ExitCode.INTERRUPTED)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def run_process(program: str, log_level: str,
                entry: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``entry(stop)`` on uvloop and return the exit code."""
    configure_logging(log_level)

    async def guarded() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        await entry(stop)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(guarded())
    except Exception as e:
        return report_failure(program, e)
    return ExitCode.OK


def report_failure(program: str, error: BaseException) -> int:
    """One line for errors a person must act on; a traceback only for bugs."""
    code = exit_code_for(error)
    if code is ExitCode.SOFTWARE:
        log.critical("%s crashed", program, exc_info=error)
    elif code is ExitCode.CONNECTION_LIMIT:
        log.critical("%s: %s: %s", program, type(error).__name__, error)
    else:
        log.error("%s: %s", program, error)
    return code


def config_failure(program: str, error: ConfigError) -> int:
    """For errors raised while reading settings, before logging is configured."""
    print(f"{program}: config error: {error}", file=sys.stderr)
    return ExitCode.CONFIG
