"""Standby hub: two hubs with one leader lock; SIGKILL the leader and the standby streams on."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis

from hub.marketdata.leader import LeaderLock, LeadershipLostError
from hub.status import render
from tests.helpers import ProcessGroup, eventually

LEASE_S = 1.0
#: The lock moves within lease + lease/4; the new leader then starts its source (allow a loaded machine 1.5 s).
TAKEOVER_BOUND_S = LEASE_S * 5 / 4 + 1.5


def _role(r: redis.Redis, name: str) -> str | None:
    return r.hget(f"tf:hub:{name}", "role")


def _quote_ts(r: redis.Redis) -> int:
    return int(r.hget("tf:quote:AAPL", "ts_recv_ns") or 0)


def test_standby_hub_takes_over_the_stream_after_sigkill(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    common = ("--source", "sim", "--symbols", "AAPL", "--sim-rate", "500", "--leader-lock", "sim-main",
              "--leader-lease", f"{LEASE_S}s")
    first = processes.start("-m", "hub", "--name", "hub-a", *common)
    eventually(lambda: _role(sync_redis, "hub-a") == "leader", message="hub-a leads")
    second = processes.start("-m", "hub", "--name", "hub-b", *common)
    eventually(lambda: _role(sync_redis, "hub-b") == "standby", message="hub-b stands by")
    start = _quote_ts(sync_redis)
    eventually(lambda: _quote_ts(sync_redis) > start, message="quotes from the leader")
    assert sync_redis.hget("tf:hub:hub-b", "quotes") is None  # the standby streams nothing

    last_before = _quote_ts(sync_redis)
    first.kill()
    killed_ns = time.time_ns()
    first.wait(10)
    eventually(lambda: _role(sync_redis, "hub-b") == "leader", timeout_s=10, message="hub-b takes over")
    first_after = eventually(lambda: (ts := _quote_ts(sync_redis)) > killed_ns and ts, timeout_s=10,
                             message="quotes again after the kill")
    gap_s = (first_after - last_before) / 1e9
    print(f"standby takeover: quotes resumed {gap_s:.3f}s after the leader's last quote "
          f"(lease {LEASE_S}s, bound {TAKEOVER_BOUND_S}s)")
    assert gap_s <= TAKEOVER_BOUND_S
    eventually(lambda: int(sync_redis.hget("tf:hub:hub-b", "quotes") or 0) > 0, message="hub-b counts its quotes")
    assert second.poll() is None


def test_clean_stop_hands_the_lock_over_at_once(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    common = ("--source", "sim", "--symbols", "AAPL", "--leader-lock", "sim-main", "--leader-lease", "30s")
    first = processes.start("-m", "hub", "--name", "hub-a", *common)
    eventually(lambda: _role(sync_redis, "hub-a") == "leader", message="hub-a leads")
    processes.start("-m", "hub", "--name", "hub-b", *common)
    eventually(lambda: _role(sync_redis, "hub-b") == "standby", message="hub-b stands by")
    first.terminate()
    assert first.wait(10) == 0
    # far sooner than the 30 s lease: the leader released the lock on its way out
    eventually(lambda: _role(sync_redis, "hub-b") == "leader", timeout_s=15, message="hub-b leads")


async def test_lock_taken_by_another_hub_stops_the_leader(aredis: aioredis.Redis) -> None:
    lock = LeaderLock(aredis, "tf:leader:t", "me", lease_ms=300)
    assert await lock.try_acquire()
    assert not await LeaderLock(aredis, "tf:leader:t", "other", lease_ms=300).try_acquire()
    await aredis.set("tf:leader:t", "other")  # as if our lease had run out and another hub won
    stop = asyncio.Event()
    try:
        await asyncio.wait_for(lock.hold(stop), 5)
    except LeadershipLostError:
        assert lock.role == "standby"
    else:
        raise AssertionError("hold() returned although the lock is someone else's")
    await lock.release()
    assert await aredis.get("tf:leader:t") == "other"  # never deletes another hub's lock


def test_status_shows_each_hubs_role() -> None:
    state: dict[str, dict[str, dict[str, str]]] = {
        "hubs": {"hub-a": {"source": "alpaca", "role": "leader", "connection": "connected"},
                 "hub-b": {"source": "alpaca", "role": "standby"}},
        "gateways": {}, "agents": {}, "quotes": {}, "cache": {}}
    rows = {line.split()[0]: line.split() for line in render(state, 0).splitlines() if line.startswith("hub-")}
    assert rows["hub-a"][2] == "leader" and rows["hub-b"][2] == "standby"
