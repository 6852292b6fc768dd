"""One streaming hub per Alpaca account: a leader lock with a lease, the other hubs stand by.

Alpaca allows one stream per account, so two hubs with the same keys must not
both stream. Hubs started with the same ``--leader-lock NAME`` compete for
``tf:leader:<NAME>``, a string holding the leader's instance id:

- acquire: ``SET key id NX PX lease`` (a standby retries every ``lease/4``);
- renew: a script that extends the TTL only if the value is still ours, every
  ``lease/3``;
- release: a script that deletes the key only if it is still ours (clean stop,
  so a standby takes over at its next try instead of after the lease).

Fencing: the leader measures its lease from the moment it *sent* the last
successful renewal, which is no later than when Redis started the TTL, so when
Redis fails to answer for a whole lease the leader stops streaming before any
standby can take the lock. A renewal answered "not yours" stops it at once.
Either raises :class:`LeadershipLostError` (a RedisUnavailableError, exit 69):
supervisord restarts the hub and it stands by.

Takeover bound: a leader killed with SIGKILL holds the lock until the lease
runs out; a standby then takes it within ``lease/4`` and connects. Alpaca may
still count the dead leader's connection for a while; the Alpaca source retries
406 for ``connect_grace`` (120 s by default), which the lease must stay below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import RedisUnavailableError
from core.heartbeat import Heartbeat
from core.tasks import stopped_within

log = logging.getLogger(__name__)

Role = Literal["leader", "standby"]

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeadershipLostError(RedisUnavailableError):
    """The hub could not keep its leader lock; it stopped streaming (exit 69, restarted as standby)."""


class LeaderLock:
    """A lease-based lock held by one hub instance."""

    def __init__(self, client: aioredis.Redis, key: str, instance: str, lease_ms: int) -> None:
        self.key = key
        self.instance = instance
        self.lease_ms = lease_ms
        self.role: Role = "standby"
        self._client = client
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._valid_until_s = 0.0

    def status(self) -> dict[str, str]:
        """Heartbeat fields: the role and which lock it is about."""
        return {"role": self.role, "leader_lock": self.key}

    async def try_acquire(self) -> bool:
        sent_s = time.monotonic()
        if await self._client.set(self.key, self.instance, nx=True, px=self.lease_ms):
            self._valid_until_s = sent_s + self.lease_ms / 1000
            self.role = "leader"
            return True
        return False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Stand by until the lock is ours (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if await self.try_acquire():
                return True
            await stopped_within(stop, self.lease_ms / 4000)
        return False

    async def hold(self, stop: asyncio.Event) -> None:
        """Renew every ``lease/3`` until ``stop``; raise LeadershipLostError when the lease is gone."""
        while not await stopped_within(stop, self._next_wait_s()):
            await self._renew_once()

    def _next_wait_s(self) -> float:
        return max(0.0, min(self.lease_ms / 3000, self._valid_until_s - time.monotonic()))

    async def _renew_once(self) -> None:
        sent_s = time.monotonic()
        try:
            renewed = await asyncio.wait_for(
                self._renew(keys=[self.key], args=[self.instance, self.lease_ms]),
                max(0.05, self._valid_until_s - sent_s))
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as e:
            if time.monotonic() >= self._valid_until_s:
                self.role = "standby"
                raise LeadershipLostError(f"could not renew {self.key} within its lease ({e}); "
                                          "stopped streaming so a standby can take over") from e
            log.warning("renewing %s failed (%s); retrying until the lease ends", self.key, e)
            return
        if not renewed:
            self.role = "standby"
            raise LeadershipLostError(f"{self.key} is held by another hub now; stopped streaming")
        self._valid_until_s = sent_s + self.lease_ms / 1000

    async def release(self) -> None:
        if self.role == "leader":
            self.role = "standby"
            with contextlib.suppress(Exception):
                await self._release(keys=[self.key], args=[self.instance])


async def stand_by(lock: LeaderLock, heartbeat: Heartbeat, stop: asyncio.Event) -> bool:
    """Heartbeat as ``role=standby`` until the lock is ours (True) or ``stop`` is set (False).

    The standby's heartbeat hash is released on return; the streaming hub claims its own.
    The heartbeat is ended through its own event, never cancelled: a redis-py command
    cancelled mid-flight can leave the shared connection pool waiting forever.
    """
    await heartbeat.claim()
    done = asyncio.Event()
    beating = asyncio.ensure_future(heartbeat.run(done))
    try:
        log.info("hub standing by for %s (lease %d ms)", lock.key, lock.lease_ms)
        return await lock.acquire(stop)
    finally:
        done.set()
        await beating
        with contextlib.suppress(Exception):
            await heartbeat.release()
