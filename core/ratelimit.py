"""Rate limits: token buckets (in memory, or in Redis so a restart cannot refill them), and logging a
recurring problem once per interval."""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

import redis.asyncio as aioredis

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

    def give_back(self, count: int) -> None:
        """Return tokens taken but not used (never above ``burst``)."""
        self._tokens = min(self._burst, self._tokens + count)


class RateGate(Protocol):
    async def take(self, count: int = 1) -> int:
        """Take up to ``count`` tokens; how many were granted (0 when the bucket is empty)."""

    async def give_back(self, count: int) -> None:
        """Return tokens taken but not used."""


class LocalRateGate:
    """A :class:`TokenBucket` behind the async :class:`RateGate` face (in-process gateways, tests)."""

    def __init__(self, bucket: TokenBucket) -> None:
        self._bucket = bucket

    async def take(self, count: int = 1) -> int:
        granted = 0
        while granted < count and self._bucket.take():
            granted += 1
        return granted

    async def give_back(self, count: int) -> None:
        self._bucket.give_back(count)


# Redis's own clock (TIME) is used so every process and every restart refills from the same
# timeline; the hash expires once it would be full anyway, so an idle bucket leaves no key.
# ARGV: rate per second, burst, expiry in ms, tokens wanted (negative: tokens given back).
_TAKE = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate_per_us = tonumber(ARGV[1]) / 1000000
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts_us')
local tokens, ts_us = tonumber(state[1]), tonumber(state[2])
if tokens == nil or ts_us == nil then
  tokens, ts_us = burst, now_us
end
if now_us > ts_us then
  tokens = math.min(burst, tokens + (now_us - ts_us) * rate_per_us)
  ts_us = now_us
end
local granted = 0
if want > 0 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  tokens = math.min(burst, tokens - want)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts_us', string.format('%.0f', ts_us))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return granted
"""


class RedisTokenBucket:
    """A token bucket kept in a Redis hash and updated by one Lua script, so it is atomic across
    processes and survives restarts: a gateway in a crash loop starts each run with the tokens the
    last run left, not a full burst."""

    def __init__(self, client: aioredis.Redis, key: str, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")
        self._script = client.register_script(_TAKE)
        self._key = key
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._ttl_ms = math.ceil(burst / rate_per_s * 1000) + 1000

    async def take(self, count: int = 1) -> int:
        return await self._run(count) if count > 0 else 0

    async def give_back(self, count: int) -> None:
        if count > 0:
            await self._run(-count)

    async def _run(self, want: int) -> int:
        return int(await self._script(keys=[self._key], args=[repr(self._rate_per_s), self._burst, self._ttl_ms,
                                                               want]))
