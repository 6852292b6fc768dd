"""Process heartbeats: a readable, expiring hash per live process (``tf:agent:<name>``).

The hash is claimed at start; a second live process with the same name is
refused. A hash left by a process that died without cleaning up (kill -9)
on this host is taken over at once when its pid is gone, so supervisord
restarts are not refused; on other hosts it expires after ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis

from core.clock import Clock
from core.cluster import is_cluster, retryable
from core.errors import DuplicateInstanceError
from core.failover import FAILOVER_WAIT_S
from core.sentinel import is_sentinel

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_NS = 1_000_000_000
HEARTBEAT_TTL_MS = 5_000

# The claim writes every field and the TTL in one step: a reader never sees a
# half-written heartbeat, and a process killed mid-claim cannot leave a hash
# without a TTL that would refuse every later start.
_CLAIM_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# A beat rewrites the hash unless another instance holds the name: after a stall longer than the
# TTL (SIGSTOP, a swapped-out host) the hash has expired and the beat takes the name back, but it
# never overwrites a process that claimed the name in the meantime.
_BEAT_LUA = """
local holder = redis.call('HGET', KEYS[1], 'instance')
if holder and holder ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


FAILOVER_WAIT_NS = int(FAILOVER_WAIT_S * 1e9)


class Heartbeat:
    """Owns one heartbeat hash; ``fields()`` supplies the live figures each beat."""

    def __init__(self, client: aioredis.Redis, key: str, clock: Clock,
                 fields: Callable[[], Mapping[str, str | int | float]],
                 interval_ns: int = HEARTBEAT_INTERVAL_NS, ttl_ms: int = HEARTBEAT_TTL_MS) -> None:
        self._client = client
        self.key = key
        self._clock = clock
        self._fields = fields
        self._interval_ns = interval_ns
        self._ttl_ms = ttl_ms
        self.instance = uuid.uuid4().hex
        self._claim_script = client.register_script(_CLAIM_LUA)
        self._beat_script = client.register_script(_BEAT_LUA)
        self._identity: dict[str, str | int | float] = {
            "instance": self.instance, "pid": os.getpid(), "host": socket.gethostname(),
            "started_ns": clock.time_ns()}

    async def claim(self) -> None:
        """Take the name, or raise DuplicateInstanceError if a live process holds it."""
        for _ in range(2):
            if await self._claim_script(keys=[self.key], args=[self._ttl_ms, *self._flat_fields()]):
                return
            holder = await self._client.hgetall(self.key)
            if not self._is_stale(holder):
                raise DuplicateInstanceError(
                    f"'{self.key}' is held by a live process (pid {holder.get('pid')} on "
                    f"{holder.get('host')}); stop it or give this one another --name")
            log.warning("taking over %s from dead pid %s", self.key, holder.get("pid"))
            await self._client.delete(self.key)
        raise DuplicateInstanceError(f"'{self.key}' is being claimed by another process at the same time")

    def _mapping(self) -> dict[str, str | int | float]:
        """Identity first, so ``instance`` is the first pair the claim script sets; ``beat_ns`` lets a
        reader tell a stalled process (old beat) from a live one before the hash expires."""
        return {**self._identity, **self._fields(), "beat_ns": self._clock.time_ns()}

    def _flat_fields(self) -> list[str | int | float]:
        return [item for pair in self._mapping().items() for item in pair]

    def _is_stale(self, holder: Mapping[str, str]) -> bool:
        if "pid" not in holder:  # written by something other than a Heartbeat: never ours to delete
            return False
        same_host = holder.get("host") == socket.gethostname()
        return same_host and not _pid_alive(int(holder["pid"]))

    async def beat(self) -> None:
        """Refresh the hash; DuplicateInstanceError if another process took the name while we stalled."""
        if not await self._beat_script(keys=[self.key], args=[self._ttl_ms, *self._flat_fields()]):
            holder = await self._client.hgetall(self.key)
            raise DuplicateInstanceError(
                f"'{self.key}' was taken by pid {holder.get('pid')} on {holder.get('host')} while this "
                "process was not beating (stalled longer than the heartbeat TTL); stopping this one")

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every interval until ``stop`` is set."""
        next_ns = self._clock.monotonic_ns()
        failing_since_ns: int | None = None
        while not stop.is_set():
            started_ns = self._clock.monotonic_ns()
            try:
                await self.beat()
                failing_since_ns = None
            except Exception as e:
                # On a cluster or under Sentinel a master may be mid-failover: skip beats for as long as a
                # failover takes (the hash's TTL may lapse meanwhile; the next beat sets it again). On one
                # node, a lost Redis ends the process as before. The failure dates from before the beat:
                # under Sentinel the beat itself may have waited out most of the failover.
                now_ns = self._clock.monotonic_ns()
                failing_since_ns = started_ns if failing_since_ns is None else failing_since_ns
                fails_over = is_cluster(self._client) or is_sentinel(self._client)
                if not (fails_over and retryable(e)) or now_ns - failing_since_ns > FAILOVER_WAIT_NS:
                    raise
                log.warning("heartbeat %s not written (%s); retrying at the next beat", self.key, e)
            next_ns = max(next_ns + self._interval_ns, self._clock.monotonic_ns())  # late: no burst of beats
            sleeper = asyncio.ensure_future(self._clock.sleep_until_ns(next_ns))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                stopper.cancel()

    async def release(self) -> None:
        """Delete the hash if it is still ours."""
        if await self._client.hget(self.key, "instance") == self.instance:
            await self._client.delete(self.key)
