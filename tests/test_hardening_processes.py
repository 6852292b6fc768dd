"""Real processes against hostile input: the issue's crossed-quote CSV, bad symbol demand, lapsed demand,
and a stalled agent that Redis cuts off."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from core.codec import encode_quote_rows
from core.exitcodes import ExitCode
from core.keys import Keys
from tests.helpers import ProcessGroup, eventually

KEYS = Keys()
ISSUE_CSV = """ts_ns,symbol,bid,bid_size,ask,ask_size
1381150000000000000,IBM,182.00,100,182.10,300
1381150000001000000,IBM,182.01,200,182.09,100
1381150000001000000,IBM,182.20,100,182.05,100
"""
EXPECTED_FAIR = (182.01 * 100.0 + 182.09 * 200.0) / 300.0  # micro-price of row 2: 182.0633...
SPREADS = (182.10 - 182.00, 182.09 - 182.01)


@pytest.mark.parametrize("throttle", ["0s", "1ms"])
def test_replayed_crossed_quote_does_not_hide_the_usable_ones(throttle: str, processes: ProcessGroup,
                                                              sync_redis: redis.Redis, tmp_path: Path) -> None:
    csv = tmp_path / "ibm.csv"
    csv.write_text(ISSUE_CSV)
    names = ("spotter", "spread_calculator", "volatility")
    for name in names:
        processes.start("-m", f"agents.{name}", "--instruments", "IBM", "--throttle", throttle)
    eventually(lambda: sync_redis.exists(*(KEYS.agent(n) for n in names)) == 3, message="three agents")
    hub = processes.start("-m", "hub", "--source", "replay", "--file", str(csv), "--speed", "max",
                          "--replay-end", "exit")
    assert hub.wait(30) == 0, processes.output(hub)
    eventually(lambda: sync_redis.hget("tf:cache:IBM", "fair_price") == repr(EXPECTED_FAIR), message="fair_price")
    assert f"{float(sync_redis.hget('tf:cache:IBM', 'fair_price')):.4f}" == "182.0633"
    # the spread averages the usable quotes the agent ran on: row 2 alone, or rows 1 and 2
    one, two = SPREADS
    eventually(lambda: sync_redis.hget("tf:cache:IBM", "spread") in (repr(two), repr((one + two) / 2)),
               message="spread of usable quotes only")
    for name in names:  # the crossed row was seen, refused by each agent's filter, never run
        eventually(lambda n=name: sync_redis.hget(KEYS.agent(n), "received") == "3", message=f"{name} read 3")
        assert sync_redis.hget(KEYS.agent(name), "unusable") == "1"
        assert sync_redis.hget(KEYS.agent(name), "errors") == "0"


def _hub_field(client: redis.Redis, field: str) -> str | None:
    value = client.hget(KEYS.hub("hub"), field)
    return value if isinstance(value, str) else None


def test_bad_wanted_members_are_skipped_and_counted_and_the_rest_streams(processes: ProcessGroup,
                                                                         redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    raw.sadd(KEYS.wanted_symbols(), b"BAD SYM", b"*", b"A" * 33, b"\xff\xfe", b"AAPL")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for attempt in range(2):  # it used to exit 78 at every start
        hub = processes.start("-m", "hub", "--source", "sim")
        eventually(lambda: client.exists(KEYS.latest_quote("AAPL")), message="AAPL streams")
        eventually(lambda: _hub_field(client, "bad_wanted") == "4", message="4 bad members counted")
        assert hub.poll() is None
        assert _hub_field(client, "symbols") == "AAPL"
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(15) == 0, processes.output(hub)
        client.delete(KEYS.latest_quote("AAPL"))
        if attempt == 0:  # the same members are still there for the second start
            assert raw.sismember(KEYS.wanted_symbols(), b"BAD SYM")
    raw.close()
    client.close()


def test_demand_lapses_with_the_heartbeats_of_the_agents_that_wanted_it(processes: ProcessGroup,
                                                                        sync_redis: redis.Redis) -> None:
    hub = processes.start("-m", "hub", "--source", "sim", "--symbols", "AAPL")
    keeper = processes.start("-m", "agents.spotter", "--instruments", "MSFT", "--name", "keeper")
    leaver = processes.start("-m", "agents.spotter", "--instruments", "TSLA,MSFT", "--name", "leaver")
    eventually(lambda: sync_redis.smembers(KEYS.wanted_symbols()) == {"MSFT", "TSLA"}, message="demand announced")
    eventually(lambda: sync_redis.hget("tf:cache:TSLA", "fair_price"), message="TSLA streamed")
    leaver.send_signal(signal.SIGTERM)
    assert leaver.wait(15) == 0
    # TSLA: nobody wants it any more; MSFT: keeper still does; AAPL was configured, never in the set
    eventually(lambda: sync_redis.smembers(KEYS.wanted_symbols()) == {"MSFT"}, timeout_s=20,
               message="TSLA demand lapsed")
    eventually(lambda: _hub_field(sync_redis, "lapsed_wanted") == "1", message="lapse counted")
    eventually(lambda: _hub_field(sync_redis, "symbols") == "AAPL,MSFT", message="TSLA no longer streamed")
    published_tsla, published_aapl = _hub_field(sync_redis, "published:TSLA"), _hub_field(sync_redis, "published:AAPL")
    eventually(lambda: _hub_field(sync_redis, "published:AAPL") != published_aapl, message="a later heartbeat")
    assert _hub_field(sync_redis, "published:TSLA") == published_tsla  # the sim dropped it, not just the set
    keeper.send_signal(signal.SIGKILL)  # no clean-up: its heartbeat has to expire first
    keeper.wait(10)
    eventually(lambda: not sync_redis.smembers(KEYS.wanted_symbols()), timeout_s=30, message="MSFT demand lapsed")
    eventually(lambda: _hub_field(sync_redis, "symbols") == "AAPL", message="only --symbols left")
    assert hub.poll() is None


def test_stalled_agent_is_cut_off_then_resubscribes_in_process(processes: ProcessGroup, redis_url: str,
                                                               sync_redis: redis.Redis) -> None:
    channel = KEYS.quote_channel("CUT")
    old_limit = sync_redis.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    agent = processes.start("-m", "agents.spotter", "--instruments", "CUT", "--throttle", "0s", "--name", "cut")
    eventually(lambda: sync_redis.pubsub_numsub(channel)[0][1] == 1, message="agent subscribed")
    instance = sync_redis.hget(KEYS.agent("cut"), "instance")
    publisher = redis.Redis.from_url(redis_url)
    rows = [(1_700_000_000_000_000_000 + i, 0, 10.0, 1.0, 10.5, 1.0) for i in range(200)]
    flood = encode_quote_rows("CUT", rows)  # ~10 KB a message
    try:
        sync_redis.config_set("client-output-buffer-limit", "pubsub 262144 65536 1")
        os.kill(agent.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while sync_redis.pubsub_numsub(channel)[0][1] and time.monotonic() < deadline:
            with publisher.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    pipe.publish(channel, flood)
                pipe.execute()
        assert sync_redis.pubsub_numsub(channel)[0][1] == 0, "Redis did not cut the stalled agent off"
        # what the hub's latest-quote hash says now: the agent restarts from it after the gap
        sync_redis.hset(KEYS.latest_quote("CUT"), mapping={"bid": "20.0", "bid_size": "1.0", "ask": "20.5",
                                                           "ask_size": "1.0", "ts_ns": "1700000001000000000"})
    finally:
        os.kill(agent.pid, signal.SIGCONT)
        sync_redis.config_set("client-output-buffer-limit", old_limit)
        publisher.close()
    eventually(lambda: sync_redis.hget(KEYS.agent("cut"), "cutoffs") == "1", timeout_s=30, message="cutoff counted")
    eventually(lambda: sync_redis.pubsub_numsub(channel)[0][1] == 1, timeout_s=30, message="resubscribed")
    eventually(lambda: sync_redis.hget("tf:cache:CUT", "fair_price") == repr(20.25), message="primed after the gap")
    sync_redis.publish(channel, encode_quote_rows("CUT", [(1_700_000_002_000_000_000, 0, 30.0, 1.0, 30.5, 1.0)]))
    eventually(lambda: sync_redis.hget("tf:cache:CUT", "fair_price") == repr(30.25), message="live again")
    # same process, same name, same heartbeat instance; still beating
    assert agent.poll() is None
    assert sync_redis.hget(KEYS.agent("cut"), "instance") == instance
    assert sync_redis.hget(KEYS.agent("cut"), "pid") == str(agent.pid)
    assert sync_redis.pttl(KEYS.agent("cut")) > 0
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(15) == 0, processes.output(agent)


def test_unknown_flag_names_the_nearest_one(processes: ProcessGroup) -> None:
    result = processes.run("-m", "agents.spotter", "--instrument", "AAPL")
    assert result.returncode == ExitCode.CONFIG
    assert "--instruments" in result.stderr
