"""Replay (CSV and recordings) onto the bus, checked against values computed here, independently."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import signal
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import msgpack
import pytest
import redis
import redis.asyncio as aioredis

from agents.spotter import Spotter
from agents.spread_calculator import SpreadCalculator
from agents.volatility import Volatility
from cache import DataCache
from core.codec import Quote, decode_quotes
from core.errors import ConfigError
from hub.marketdata.recording import Recorder, count_recorded_quotes, read_recording
from hub.marketdata.sources.replay import parse_speed, read_events
from tests.alpaca_data_server import AlpacaDataServer, ServerThread
from tests.helpers import ProcessGroup, eventually, eventually_async

DATA = Path(__file__).parent / "data" / "futures_cme_esu4_mbp1_20240701.csv"
Row = tuple[int, str, float, float, float, float]


def csv_rows(path: Path = DATA) -> list[Row]:
    with open(path, newline="") as file:
        return [(int(r["ts_ns"]), r["symbol"], float(r["bid"]), float(r["bid_size"]), float(r["ask"]),
                 float(r["ask_size"])) for r in csv.DictReader(file)]


# independent reference computations (the formulas of the agents' docstrings, written out again)
def micro_price(row: Row) -> float:
    _, _, bid, bid_size, ask, ask_size = row
    return (bid * ask_size + ask * bid_size) / (bid_size + ask_size)


def rolling_spread(rows: list[Row], window_ns: int) -> float:
    last_ts = rows[-1][0]
    spreads = [ask - bid for ts, _, bid, _, ask, _ in rows if ts >= last_ts - window_ns]
    return sum(spreads) / len(spreads)


def ewma_volatility(rows: list[Row], halflife_s: float, annualization: float) -> float:
    """One sample per timestamp, its last usable quote (timestamps ascending in the file)."""
    last_mid_at = {ts: (bid + ask) / 2 for ts, _, bid, _, ask, _ in rows if 0 < bid <= ask}
    samples = list(last_mid_at.items())
    variance, (prev_ts, prev_mid) = None, samples[0]
    for ts, mid in samples[1:]:
        dt_s = (ts - prev_ts) / 1e9
        rate = math.log(mid / prev_mid) ** 2 / dt_s
        weight = 1 - 0.5 ** (dt_s / halflife_s)
        variance = rate if variance is None else (1 - weight) * variance + weight * rate
        prev_ts, prev_mid = ts, mid
    assert variance is not None
    return math.sqrt(variance * annualization)


@contextlib.asynccontextmanager
async def bus_collector(redis_url: str, channel: str) -> AsyncIterator[list[Quote]]:
    """Every quote published on ``channel`` while inside the block, decoded."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    quotes: list[Quote] = []

    async def read() -> None:
        async for message in pubsub.listen():
            quotes.extend(decode_quotes(message["data"]))

    task = asyncio.ensure_future(read())
    try:
        yield quotes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


def test_parse_speed() -> None:
    assert (parse_speed("1x"), parse_speed("10x"), parse_speed("max"), parse_speed("0.5")) == (1.0, 10.0, 0.0, 0.5)
    for bad in ("fast", "0x", "-1x"):
        with pytest.raises(ConfigError, match="speed"):
            parse_speed(bad)


def test_csv_reader_keeps_every_row_and_skips_bad_ones(tmp_path: Path) -> None:
    skipped: list[int] = []
    events = list(read_events(DATA, skipped))
    assert [(e[1], e[0], *e[2:]) for e in events] == csv_rows() and len(events) == 2288 and not skipped
    bad = tmp_path / "bad.csv"
    bad.write_text("ts_ns,symbol,bid,bid_size,ask,ask_size\n1,AAA,1,1,2,1\nx,AAA,1,1,2,1\n3,AAA,nan,1,2,1\n"
                   "4,AAA,1,1\n5,AAA,1,1,2,1\n")
    assert [e[1] for e in read_events(bad, skipped)] == [1, 5]
    assert skipped == [3, 4, 5]


def test_recording_round_trip_and_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "session.tfrec"
    recorder = Recorder(str(path), "sim")
    recorder({"AAA": [(1, 2, 1.0, 1.0, 1.5, 2.0)], "BBB": [(3, 4, 2.0, 1.0, 2.5, 2.0), (5, 6, 2.0, 3.0, 2.5, 2.0)]})
    recorder.close()
    records = list(read_recording(path))
    assert records == [("AAA", [[1, 2, 1.0, 1.0, 1.5, 2.0]]),
                       ("BBB", [[3, 4, 2.0, 1.0, 2.5, 2.0], [5, 6, 2.0, 3.0, 2.5, 2.0]])]
    assert count_recorded_quotes(path) == 3  # the backtest's progress total, counted without decoding
    path.write_bytes(path.read_bytes()[:-5])  # a crash mid-write
    assert list(read_recording(path)) == records[:1]
    assert count_recorded_quotes(path) == 1


async def test_csv_replay_at_max_speed_drives_the_agents(redis_url: str, processes: ProcessGroup,
                                                         aredis: aioredis.Redis) -> None:
    rows = csv_rows()
    processes.start("-m", "agents.spotter", "--instruments", "ESU4")
    processes.start("-m", "agents.spread_calculator", "--instruments", "ESU4", "--window", "1ns")
    # unthrottled, so it runs on enough quotes to see the mid move even when replay outpaces it
    processes.start("-m", "agents.volatility", "--instruments", "ESU4", "--throttle", "0s")
    agent_keys = ("tf:agent:spotter", "tf:agent:spread_calculator", "tf:agent:volatility")
    await eventually_async(lambda: _count_is(aredis.exists(*agent_keys), 3), message="three agents running")
    async with bus_collector(redis_url, "tf:md:quote:ESU4") as published:
        hub = processes.start("-m", "hub", "--source", "replay", "--file", str(DATA), "--speed", "max",
                              "--replay-end", "exit")
        await eventually_async(lambda: asyncio.sleep(0, hub.poll() is not None), timeout_s=30, message="replay end")
        assert hub.returncode == 0, processes.output(hub)
        await eventually_async(lambda: asyncio.sleep(0, len(published) >= len(rows)), message="all quotes")
    # the bus carried exactly the file, in order, with the original timestamps
    assert [(q.ts_event_ns, q.symbol, q.bid, q.bid_size, q.ask, q.ask_size) for q in published] == rows
    last = rows[-1]

    async def cache_is(field: str, expected: str) -> bool:
        return bool(await aredis.hget("tf:cache:ESU4", field) == expected)

    await eventually_async(lambda: cache_is("fair_price", repr(micro_price(last))), message="fair_price")
    await eventually_async(lambda: cache_is("spread", repr(last[4] - last[2])), message="spread")
    await eventually_async(lambda: aredis.hexists("tf:cache:ESU4", "volatility"), message="volatility")
    volatility = float(await aredis.hget("tf:cache:ESU4", "volatility"))
    assert math.isfinite(volatility) and volatility > 0


async def _count_is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_agents_fed_in_process_match_independent_values(redis_url: str) -> None:
    """Every quote, in order, through the agent classes (no conflation), against the formulas above."""
    rows = csv_rows()
    quotes = [Quote(symbol, bid, bid_size, ask, ask_size, ts, ts) for ts, symbol, bid, bid_size, ask, ask_size in rows]
    cache = DataCache(redis_url, namespace="inproc")
    agents = [Spotter({"instruments": ["ESU4"]}, cache), SpreadCalculator({"instruments": ["ESU4"]}, cache),
              Volatility({"instruments": ["ESU4"], "annualization": 31_536_000}, cache)]
    try:
        for quote in quotes:
            for agent in agents:
                await agent.run(quote)
        assert await cache.get("ESU4", "fair_price") == micro_price(rows[-1])
        assert math.isclose(float(await cache.get("ESU4", "spread") or 0), rolling_spread(rows, 60 * 10**9),
                            rel_tol=1e-9)
        assert math.isclose(float(await cache.get("ESU4", "volatility") or 0),
                            ewma_volatility(rows, 60.0, 31_536_000), rel_tol=1e-9)
    finally:
        await cache.aclose()


def test_recorded_alpaca_session_replays_to_the_same_cache_values(processes: ProcessGroup, sync_redis: redis.Redis,
                                                                  tmp_path: Path) -> None:
    recording = tmp_path / "session.tfrec"
    pushed = [("AAPL", 1_719_878_281_000_000_000 + i * 1_000_003, 187.0 + i / 100, float(1 + i % 5),
               187.02 + i / 100, float(1 + i % 3)) for i in range(50)]
    with ServerThread(AlpacaDataServer(credentials={"key": "secret"})) as server:
        env = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret", "APCA_DATA_STREAM_URL": server.url()}
        hub = processes.start("-m", "hub", "--source", "alpaca", "--symbols", "AAPL", "--record", str(recording),
                              env=env)
        processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--name", "spotter")
        eventually(lambda: "AAPL" in server.server.subscribed(), message="subscription")
        for start in range(0, len(pushed), 10):
            server.call(server.server.push_quotes, pushed[start:start + 10])
        eventually(lambda: sync_redis.hget("tf:quote:AAPL", "ts_ns") == str(pushed[-1][1]), message="last quote")
        symbol, ts_ns, bid, bid_size, ask, ask_size = pushed[-1]
        live_fair = repr(micro_price((ts_ns, symbol, bid, bid_size, ask, ask_size)))
        eventually(lambda: sync_redis.hget("tf:cache:AAPL", "fair_price") == live_fair, message="live fair_price")
        live_quote = {k: v for k, v in sync_redis.hgetall("tf:quote:AAPL").items() if k != "ts_recv_ns"}
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(15) == 0
    recorded = [(symbol, row) for symbol, rows in read_recording(recording) for row in rows]
    assert [(s, r[0], *r[2:]) for s, r in recorded] == pushed
    assert all(r[1] >= r[0] for _, r in recorded)  # receive time kept beside the event time
    processes.stop_all()
    sync_redis.flushall()

    processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--name", "spotter")
    replay = processes.start("-m", "hub", "--source", "replay", "--file", str(recording), "--speed", "max",
                             "--replay-end", "exit")
    assert replay.wait(20) == 0, processes.output(replay)
    eventually(lambda: sync_redis.hget("tf:cache:AAPL", "fair_price") == live_fair, message="same fair_price")
    assert {k: v for k, v in sync_redis.hgetall("tf:quote:AAPL").items() if k != "ts_recv_ns"} == live_quote


def test_paced_replay_keeps_the_gaps(processes: ProcessGroup, redis_url: str, tmp_path: Path) -> None:
    """At 2x, quotes 400 ms apart in the file are published at least 200 ms apart."""
    path = tmp_path / "paced.csv"
    path.write_text("ts_ns,symbol,bid,bid_size,ask,ask_size\n" + "".join(
        f"{1_000_000_000 + i * 400_000_000},PCD,10,1,10.5,1\n" for i in range(3)))
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("tf:md:quote:PCD")
    hub = processes.start("-m", "hub", "--source", "replay", "--file", str(path), "--speed", "2x",
                          "--replay-end", "exit")
    assert hub.wait(20) == 0
    received: list[list[int]] = []

    def read_all() -> bool:
        while (message := pubsub.get_message(timeout=0.1)) is not None:
            received.extend(row[:2] for row in msgpack.unpackb(message["data"])[2])
        return len(received) >= 3

    eventually(read_all, message="three quotes")
    pubsub.close()
    client.close()
    assert [ts for ts, _ in received] == [1_000_000_000, 1_400_000_000, 1_800_000_000]
    recv = [r for _, r in received]
    # paced against one start time, so a late first quote may shorten the next gap a little;
    # the span shows the pacing (at max speed it would be well under a millisecond)
    assert recv[2] - recv[0] >= 395_000_000
    assert min(recv[1] - recv[0], recv[2] - recv[1]) >= 150_000_000
