"""How long and how a Redis client keeps trying through a failover: one bound and one backoff for all.

Redis promotes a replica after cluster-node-timeout (or Sentinel's down-after-milliseconds) plus an
election, a few seconds. Every path that rides a failover in-process (redis-py clients on Sentinel and
on a cluster, the lean RESP paths, resubscriptions) gives up after :data:`FAILOVER_WAIT_S`; the
error then reaches the process, which exits 69 and is restarted by supervisord.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from core.redis_spec import RedisSpec
from core.refusals import redis_config_error

#: How long an operation keeps retrying through a failover or a slot move before it gives up.
FAILOVER_WAIT_S = 30.0
#: The backoff between attempts: 50 ms doubling to 1 s, jittered, so clients do not retry in step.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0

T = TypeVar("T")
_ANY_SPEC = RedisSpec()  # redis_config_error only classifies here; its wording is not shown


def backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S)


def refused(error: Exception) -> bool:
    """A refused password, right or certificate: no failover, so waiting would only delay the exit 78."""
    return redis_config_error(_ANY_SPEC, error) is not None


class RetryUnlessRefused(Retry):  # type: ignore[misc]
    """redis-py's default retry of one Redis (10 attempts, jittered backoff from 10 ms to 1 s), except
    that a refusal is raised at once: a wrong CA used to be reported only after ~4.5 s of reconnecting."""

    def __init__(self) -> None:
        super().__init__(ExponentialWithJitterBackoff(base=0.01, cap=1.0), retries=10)

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[..., Any],
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        def retryable(error: Exception) -> bool:
            return not refused(error) and (is_retryable is None or is_retryable(error))

        return await super().call_with_retry(do, fail, retryable, with_failure_count)  # type: ignore[no-any-return]


class FailoverRetry(Retry):  # type: ignore[misc]  # redis-py is typed Any here (pyproject)
    """redis-py's retry bounded by time instead of a count: a lost connection is retried for ``wait_s``
    from the first failure.

    redis-py nests retries (a command's retry reconnects through a connect that retries too, and the
    cluster client's own loop re-reads the slot map a number of times without waiting); a count would
    multiply across the levels or run out before Redis has promoted a replica, a deadline keeps a Redis
    that stays away at about ``wait_s`` before the error reaches the process.
    """

    def __init__(self, wait_s: float = FAILOVER_WAIT_S,
                 also_on: tuple[type[Exception], ...] = ()) -> None:
        super().__init__(backoff(), retries=-1)
        self.wait_s = wait_s
        if also_on:
            self.update_supported_errors(list(also_on))

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[..., Any],
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        self._backoff.reset()
        deadline = time.monotonic() + self.wait_s
        failures = 0
        while True:
            try:
                return await do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                if refused(error):
                    raise
                failures += 1
                await (fail(error, failures) if with_failure_count else fail(error))
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(self._backoff.compute(failures))
