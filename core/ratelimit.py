"""Rate limits: a token bucket, and logging a recurring problem once per interval."""

from __future__ import annotations

import logging
import time

from core.clock import Clock


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last_s: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        self._log(logging.WARNING, kind, message, args)

    def error(self, kind: str, message: str, *args: object, exc_info: BaseException | None = None) -> None:
        self._log(logging.ERROR, kind, message, args, exc_info)

    def _log(self, level: int, kind: str, message: str, args: tuple[object, ...],
             exc_info: BaseException | None = None) -> None:
        now_s = time.monotonic()
        if now_s - self._last_s.get(kind, -self._interval_s) < self._interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        self._last_s[kind] = now_s
        if suppressed:
            message += f" (and {suppressed} more since the last report)"
        self._logger.log(level, message, *args, exc_info=exc_info)


class TokenBucket:
    """``rate_per_s`` tokens per second up to ``burst``; ``take()`` is False when empty."""

    def __init__(self, rate_per_s: float, burst: int, clock: Clock) -> None:
        self._rate_per_ns = rate_per_s / 1e9
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last_ns = clock.monotonic_ns()

    def take(self) -> bool:
        now_ns = self._clock.monotonic_ns()
        self._tokens = min(self._burst, self._tokens + (now_ns - self._last_ns) * self._rate_per_ns)
        self._last_ns = now_ns
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
