"""Who serves which instrument when one agent type runs as N processes.

Two modes, chosen with ``--shard``:

- ``K/N`` (static): process K of N serves the symbols whose stable hash falls
  in bucket K. No coordination; a dead process's share waits for its restart.
- ``auto`` (membership): every process holds a lease in ``tf:members:<group>``
  (a sorted set scored by lease end, in Redis server time so host clocks do not
  matter) and renews it every ``lease/4``. Each symbol belongs to the live
  member with the highest rendezvous score, so a member's death moves only its
  own symbols, spread evenly over the others, and joining takes an even share.

Takeover bound (auto): a member killed with SIGKILL keeps its lease until it
runs out (at most ``lease`` after its last renewal); the survivors see it gone
at their next renewal (``lease/4`` later) and subscribe at once, priming from
the latest quote. So a symbol is unserved for at most ``lease * 5/4`` plus one
restart of the runtime (milliseconds). A member leaving cleanly removes its own
lease, so the bound is ``lease/4`` then.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from core.errors import ConfigError

# One round trip: drop expired leases, renew ours (unless leaving), return the live members.
# Server time (TIME) keeps the lease independent of the hosts' clocks; Redis 7 replicates
# script effects, so a non-deterministic command is allowed here.
_RENEW_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[3])
else
  redis.call('ZREM', KEYS[1], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 4)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ShardSpec:
    """``index`` is 1-based (``2/4``); ``auto`` means lease-based membership."""

    auto: bool
    index: int = 0
    count: int = 0

    @property
    def label(self) -> str:
        return "auto" if self.auto else f"{self.index}of{self.count}"


def parse_shard(value: str) -> ShardSpec | None:
    """``''`` -> None, ``'auto'`` -> membership, ``'2/4'`` -> static shard 2 of 4."""
    text = value.strip().lower()
    if not text:
        return None
    if text == "auto":
        return ShardSpec(auto=True)
    index_s, sep, count_s = text.partition("/")
    if not sep or not index_s.isdigit() or not count_s.isdigit() or not 1 <= int(index_s) <= int(count_s):
        raise ConfigError(f"setting 'shard': {value!r} is neither K/N with 1 <= K <= N (e.g. 2/4) nor 'auto'")
    return ShardSpec(auto=False, index=int(index_s), count=int(count_s))


def _score(member: str, symbol: str) -> int:
    digest = hashlib.blake2b(f"{member}\0{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(symbol: str, members: Sequence[str]) -> str:
    """Rendezvous (highest random weight) hashing: the member that serves ``symbol``."""
    return max(members, key=lambda member: (_score(member, symbol), member))


def share_of(me: str, symbols: Iterable[str], members: Sequence[str]) -> tuple[str, ...]:
    """The symbols ``me`` serves among ``members`` (``me`` counts as live even if not listed)."""
    live = sorted({*members, me})
    return tuple(sorted(s for s in symbols if owner(s, live) == me))


def static_share(spec: ShardSpec, symbols: Iterable[str]) -> tuple[str, ...]:
    """Static shard K of N: the same rendezvous hash over the members ``1`` .. ``N``."""
    return share_of(str(spec.index), symbols, [str(i) for i in range(1, spec.count + 1)])


class Membership:
    """This process's lease in a group; ``renew()`` returns the live members."""

    def __init__(self, client: aioredis.Redis, key: str, member: str, lease_ms: int) -> None:
        self.key = key
        self.member = member
        self.lease_ms = lease_ms
        self._script = client.register_script(_RENEW_LUA)

    @property
    def renew_interval_s(self) -> float:
        return self.lease_ms / 4 / 1000

    async def renew(self) -> list[str]:
        return await self._call(alive=True)

    async def leave(self) -> list[str]:
        """Drop our lease so the others take our share at their next renewal, not after the lease."""
        return await self._call(alive=False)

    async def _call(self, *, alive: bool) -> list[str]:
        members = await self._script(keys=[self.key], args=[self.lease_ms, "1" if alive else "0", self.member])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
