"""Riding a failover: one time bound however redis-py nests its retries, on Sentinel and on a cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from core.cluster import cluster_client
from core.failover import FailoverRetry, RetryUnlessRefused


async def test_failover_retry_is_bounded_by_time_however_the_calls_nest(monkeypatch: pytest.MonkeyPatch) -> None:
    now_s = [0.0]  # the retry's clock: each failed attempt costs 0.1 s of it, whatever the machine's load
    monkeypatch.setattr("core.failover.time", type("FakeTime", (), {"monotonic": staticmethod(lambda: now_s[0])}))
    retry = FailoverRetry(wait_s=0.3)
    attempts: list[float] = []

    async def lost() -> None:
        now_s[0] += 0.1
        attempts.append(now_s[0])
        raise RedisConnectionError("master gone")

    async def reconnect(_: Exception) -> None:  # as redis-py's pub/sub does: a connect that retries itself
        await retry.call_with_retry(lost, lambda _e: asyncio.sleep(0))

    with pytest.raises(RedisConnectionError):
        await retry.call_with_retry(lost, reconnect)
    # retried, and stopped one attempt past wait_s: the nested retry shares the bound instead of multiplying it
    assert len(attempts) > 3 and attempts[-1] <= 0.3 + 0.1 + 1e-9
    answers = iter([RedisConnectionError("failing over"), None])

    async def recovers() -> str:
        if (error := next(answers)) is not None:
            raise error
        return "pong"

    assert await FailoverRetry(wait_s=5).call_with_retry(recovers, lambda _e: asyncio.sleep(0)) == "pong"


def _fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now_s = [0.0]
    monkeypatch.setattr("core.failover.time", type("FakeTime", (), {"monotonic": staticmethod(lambda: now_s[0])}))
    return now_s


@pytest.mark.parametrize("ride_failover", [True, False])
async def test_a_cluster_command_outlasts_redis_pys_own_retries_only_when_riding_the_failover(
        monkeypatch: pytest.MonkeyPatch, ride_failover: bool) -> None:
    # redis-py's loop re-reads the slot map and retries without waiting: against a killed master it gave
    # up in about 4 s, before the replica was promoted, and an agent's run() lost Redis (exit 69)
    now_s = _fake_clock(monkeypatch)
    calls: list[tuple[Any, ...]] = []

    async def master_promoted_after_10_s(self: RedisCluster, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if now_s[0] < 10.0:
            now_s[0] += 4.0  # one exhausted pass of redis-py's own retries
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:7001. Connection refused.")
        return "PONG"

    monkeypatch.setattr(RedisCluster, "execute_command", master_promoted_after_10_s)
    client = cluster_client("redis+cluster://127.0.0.1:7000/", ride_failover=ride_failover)
    if ride_failover:
        assert await client.execute_command("PING") == "PONG"
        assert len(calls) == 4  # three lost passes, then the promoted master answers
    else:
        with pytest.raises(RedisConnectionError):
            await client.execute_command("PING")
        assert len(calls) == 1  # the gateway rebuilds from the new master instead


@pytest.mark.parametrize("ride_failover", [True, False])
async def test_a_cluster_pipeline_outlasts_redis_pys_own_retries_with_every_command_each_time(
        monkeypatch: pytest.MonkeyPatch, ride_failover: bool) -> None:
    # redis-py's pipeline loop tries 30 times 250 ms apart, ~7.5 s: shorter than a promotion under
    # Redis's default cluster-node-timeout (15 s), and it empties the queue whatever the outcome
    now_s = _fake_clock(monkeypatch)
    queued_per_attempt: list[int] = []

    async def master_promoted_after_10_s(self: ClusterPipeline, *args: Any, **kwargs: Any) -> list[Any]:
        queued_per_attempt.append(len(self))
        await self.reset()
        if now_s[0] < 10.0:
            now_s[0] += 7.5
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:7001. Connection refused.")
        return [{"bid": "1"}, {"bid": "2"}]

    monkeypatch.setattr(ClusterPipeline, "execute", master_promoted_after_10_s)
    client = cluster_client("redis+cluster://127.0.0.1:7000/", ride_failover=ride_failover)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall("tf:quote:{A}")
    pipe.hgetall("tf:quote:{B}")
    if ride_failover:
        assert await pipe.execute() == [{"bid": "1"}, {"bid": "2"}]
        assert queued_per_attempt == [2, 2, 2]  # both commands sent again after each lost attempt
    else:
        with pytest.raises(RedisConnectionError):
            await pipe.execute()
        assert queued_per_attempt == [2]


async def test_a_refused_password_on_a_cluster_is_not_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def refused(self: RedisCluster, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise AuthenticationError("WRONGPASS invalid username-password pair or user is disabled.")

    monkeypatch.setattr(RedisCluster, "execute_command", refused)
    with pytest.raises(AuthenticationError):
        await cluster_client("redis+cluster://127.0.0.1:7000/").execute_command("PING")
    assert calls == 1


async def test_one_redis_retries_a_lost_connection_but_not_a_refused_certificate() -> None:
    attempts: list[str] = []

    def failing(message: str, then: str | None = None) -> Any:
        async def do() -> str:
            attempts.append(message)
            if then is not None and len(attempts) > 1:
                return then
            raise RedisConnectionError(message)
        return do

    retry = RetryUnlessRefused()
    with pytest.raises(RedisConnectionError):
        await retry.call_with_retry(failing("Error 1 connecting to 127.0.0.1:6390. [SSL: CERTIFICATE_VERIFY_FAILED] "
                                            "certificate verify failed: unable to get local issuer certificate"),
                                    lambda _e: asyncio.sleep(0))
    assert len(attempts) == 1  # reported at once (exit 78), not after redis-py's ~4.5 s of reconnecting
    attempts.clear()
    assert await retry.call_with_retry(failing("Error 111 connecting to 127.0.0.1:6390. Connection refused.", "PONG"),
                                       lambda _e: asyncio.sleep(0)) == "PONG"
    assert len(attempts) == 2
