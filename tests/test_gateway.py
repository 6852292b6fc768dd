"""The gateway process: durable intents, idempotent replays, kill -9 recovery, the kill switch."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import redis

from core.intents import encode_intent
from core.keys import Keys
from core.orders import Intent, to_decimal
from tests.execution_helpers import sim_stack
from tests.helpers import ProcessGroup, eventually

KEYS = Keys()


def count_orders(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(match="tf:order:*", count=1000))


def wait_all_handled(client: redis.Redis, total: int, timeout_s: float = 30.0) -> None:
    """Every intent read and acknowledged, and ``total`` order hashes written."""
    def done() -> bool:
        groups = client.xinfo_groups("tf:orders:intents")
        return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0 and \
            count_orders(client) == total
    eventually(done, timeout_s=timeout_s, message=f"all {total} intents handled")


def submit_fields(coid: str, price: str = "90", qty: str = "1", side: str = "buy") -> dict[str, str]:
    return encode_intent(Intent("submit", "tester", client_order_id=coid, symbol="AAPL", side=side,  # type: ignore[arg-type]
                                order_type="limit", qty=to_decimal(qty, "qty"),
                                limit_price=to_decimal(price, "price"), ts_ns=time.time_ns()))


def set_quote(client: redis.Redis, symbol: str = "AAPL", bid: float = 100.0, ask: float = 100.02) -> None:
    client.hset(KEYS.latest_quote(symbol), mapping={"bid": bid, "bid_size": 100, "ask": ask, "ask_size": 100,
                                                    "ts_ns": time.time_ns()})


def start_gateway(processes: ProcessGroup, *extra: str) -> subprocess.Popen[bytes]:
    proc = processes.start("-m", "hub.execution", "--broker", "sim", "--order-rate", "100000", "--order-burst",
                           "100000", "--max-open-orders", "100000", "--max-position", "10000000", *extra)
    return proc


def new_events(client: redis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, fields in client.xrange("tf:orders:events"):
        if fields["event"] == "new":
            counts[fields["client_order_id"]] = counts.get(fields["client_order_id"], 0) + 1
    return counts


def test_kill_9_mid_stream_and_restart_loses_and_duplicates_no_order(processes: ProcessGroup,
                                                                     sync_redis: redis.Redis) -> None:
    set_quote(sync_redis)
    gateway = start_gateway(processes)
    eventually(lambda: sync_redis.exists("tf:gateway:gateway"), message="the gateway heartbeat")
    total = 3000
    ids = [f"bulk-{i}" for i in range(total)]
    pipe = sync_redis.pipeline(transaction=False)
    for coid in ids:
        pipe.xadd("tf:orders:intents", submit_fields(coid))
    pipe.execute()
    eventually(lambda: count_orders(sync_redis) >= 200, timeout_s=20, message="the gateway to get going")
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.wait(10)
    handled_before_kill = count_orders(sync_redis)
    assert handled_before_kill < total, "the kill came too late to prove anything"

    # and the replayed tail of intents again, as a retrying agent would send them
    for coid in ids[-50:]:
        sync_redis.xadd("tf:orders:intents", submit_fields(coid))
    start_gateway(processes)
    wait_all_handled(sync_redis, total)
    assert sync_redis.scard("tf:orders:open") == total  # the sim's book: every order, once
    counts = new_events(sync_redis)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert {sync_redis.hget(f"tf:order:{c}", "status") for c in ids} == {"new"}


def test_a_replayed_intent_never_creates_a_second_order(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    set_quote(sync_redis)
    start_gateway(processes)
    fields = submit_fields("once-1", price="100.02", qty="10")  # marketable: fills at once
    for _ in range(3):
        sync_redis.xadd("tf:orders:intents", fields)
    wait_all_handled(sync_redis, 1)
    eventually(lambda: sync_redis.hget("tf:order:once-1", "status") == "filled", message="the fill")
    sync_redis.xadd("tf:orders:intents", fields)  # much later, again
    eventually(lambda: int(sync_redis.hget("tf:gateway:gateway", "duplicates") or 0) >= 3, timeout_s=5,
               message="the gateway to count the replays")
    assert new_events(sync_redis) == {"once-1": 1}
    assert sync_redis.hget("tf:position:AAPL", "qty") == "10"  # filled once, not four times


def test_halt_rejects_new_orders_and_cancels_open_ones_within_a_second(processes: ProcessGroup,
                                                                       sync_redis: redis.Redis) -> None:
    set_quote(sync_redis)
    start_gateway(processes)
    ids = [f"rest-{i}" for i in range(20)]
    for coid in ids:
        sync_redis.xadd("tf:orders:intents", submit_fields(coid, price="99"))
    wait_all_handled(sync_redis, len(ids))
    assert sync_redis.scard("tf:orders:open") == len(ids)

    sync_redis.set("tf:risk:halt", "1")  # what an operator types in redis-cli
    halted_at = time.monotonic()
    eventually(lambda: sync_redis.scard("tf:orders:open") == 0, timeout_s=1.0, interval_s=0.01,
               message="every open order canceled within a second")
    assert time.monotonic() - halted_at < 1.0
    assert {sync_redis.hget(f"tf:order:{c}", "status") for c in ids} == {"canceled"}

    sync_redis.xadd("tf:orders:intents", submit_fields("after-halt", price="99"))
    status = eventually(lambda: sync_redis.hget("tf:order:after-halt", "status"), message="the rejection")
    assert status == "rejected"
    assert "halt" in sync_redis.hget("tf:order:after-halt", "reject_reason")

    sync_redis.delete("tf:risk:halt")
    sync_redis.xadd("tf:orders:intents", submit_fields("after-resume", price="99"))
    assert eventually(lambda: sync_redis.hget("tf:order:after-resume", "status")) == "new"


def test_malformed_intents_are_rejected_back_or_counted_and_never_block_the_stream(
        processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    set_quote(sync_redis)
    start_gateway(processes)
    sync_redis.xadd("tf:orders:intents", {"v": "1", "kind": "submit", "agent": "a", "client_order_id": "bad-1",
                                          "symbol": "AAPL", "side": "buy", "type": "limit", "qty": "ten",
                                          "limit_price": "99"})
    sync_redis.xadd("tf:orders:intents", {"garbage": "yes"})
    sync_redis.xadd("tf:orders:intents", submit_fields("good-1", price="99"))
    assert eventually(lambda: sync_redis.hget("tf:order:good-1", "status")) == "new"
    bad = sync_redis.hgetall("tf:order:bad-1")
    assert bad["status"] == "rejected" and "qty" in bad["reject_reason"]
    assert eventually(lambda: int(sync_redis.hget("tf:gateway:gateway", "bad_intents") or 0) == 2, timeout_s=5)


def test_bad_settings_fail_at_start_naming_the_setting(processes: ProcessGroup) -> None:
    result = processes.run("-m", "hub.execution", "--broker", "alpaca")
    assert result.returncode == 78 and "alpaca_api_key" in result.stderr
    result = processes.run("-m", "hub.execution", "--price-collar", "5")
    assert result.returncode == 78 and "price_collar" in result.stderr
    result = processes.run("-m", "hub.execution", "--name", "gw\r\nFLUSHALL")  # the name goes into keys and logs
    assert result.returncode == 78 and "'name'" in result.stderr and "FLUSHALL\n" not in result.stderr


async def test_gateway_in_process_drains_pending_intents_on_start(redis_url: str) -> None:
    """Intents read but not acknowledged by a previous run (crash) are handled by the next."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    set_quote(client)
    client.xgroup_create("tf:orders:intents", "gateway", id="0", mkstream=True)
    client.xadd("tf:orders:intents", submit_fields("left-pending", price="99"))
    client.xreadgroup("gateway", "gateway", {"tf:orders:intents": ">"}, count=10)  # read, never acked
    assert client.xpending("tf:orders:intents", "gateway")["pending"] == 1
    async with sim_stack(redis_url) as stack:
        order = await stack.trading().wait_for("left-pending", {"new"})
        assert order.status == "new" and stack.gateway.stats.replayed == 1
    assert client.xpending("tf:orders:intents", "gateway")["pending"] == 0
    client.close()
