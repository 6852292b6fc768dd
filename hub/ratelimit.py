"""Log a recurring problem once per interval, with how often it happened meanwhile."""

from __future__ import annotations

import logging
import time


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
