"""core.resp: the lean RESP client under partial frames, large messages, errors and lost connections."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
import redis.asyncio as aioredis

from core.codec import decode_quotes
from core.connection import redis_client
from core.errors import RedisUnavailableError
from core.keys import Keys
from core.resp import Address, RespConnection, RespError, Subscription, _Protocol, command
from hub.marketdata.publisher import Publisher
from tests.helpers import eventually_async


async def test_messages_split_at_every_byte_are_delivered_once_and_whole() -> None:
    payloads = [b"x" * 3, b"", b"\r\n*3\r\n$7\r\nmessage\r\n", bytes(range(256)) * 40]
    wire = b"".join(command(b"message", b"tf:md:quote:A", p) for p in payloads)
    protocol = _Protocol()
    got: list[tuple[bytes, bytes]] = []
    protocol.on_message = lambda channel, data: got.append((channel, data))
    for i in range(len(wire)):
        protocol.data_received(wire[i:i + 1])
    assert got == [(b"tf:md:quote:A", p) for p in payloads]


async def _subscription(redis_url: str, *channels: str) -> Subscription:
    sub = Subscription(Address.from_client(aioredis.Redis.from_url(redis_url)))
    await sub.subscribe(*channels)
    return sub


async def test_subscription_delivers_large_and_early_messages_in_order(redis_url: str, aredis: aioredis.Redis) -> None:
    sub = await _subscription(redis_url, "a", "b")
    assert dict(await aredis.pubsub_numsub("a", "b")) == {"a": 1, "b": 1}
    big = b"\xff" * 3_000_000
    await aredis.publish("a", "early")  # before listen(): held, not lost
    await aredis.publish("b", big)
    got: list[tuple[bytes, bytes]] = []
    listener = asyncio.create_task(sub.listen(lambda c, d: got.append((c, d))))
    for i in range(1000):
        await aredis.publish("a", str(i))
    await eventually_async(lambda: asyncio.sleep(0, len(got) == 1002), message="all messages")
    assert got[0] == (b"a", b"early") and got[1] == (b"b", big)
    assert [d for _, d in got[2:]] == [str(i).encode() for i in range(1000)]
    await sub.aclose()
    await asyncio.wait_for(listener, 5)  # aclose ends listen quietly


async def test_subscription_raises_when_redis_drops_it(redis_url: str, aredis: aioredis.Redis) -> None:
    sub = await _subscription(redis_url, "a")
    listener = asyncio.create_task(sub.listen(lambda c, d: None))
    await asyncio.sleep(0)
    assert await aredis.client_kill_filter(_type="pubsub") == 1
    with pytest.raises(RedisUnavailableError, match="lost the connection"):
        await asyncio.wait_for(listener, 5)


async def test_callback_failure_is_raised_not_swallowed(redis_url: str, aredis: aioredis.Redis) -> None:
    sub = await _subscription(redis_url, "a")

    def broken(channel: bytes, data: bytes) -> None:
        raise ValueError("bug in a handler")

    listener = asyncio.create_task(sub.listen(broken))
    await eventually_async(lambda: aredis.publish("a", "x"), message="a subscriber")
    with pytest.raises(ValueError, match="bug in a handler"):
        await asyncio.wait_for(listener, 5)


async def test_pipelined_replies_errors_and_closed_connection(redis_url: str) -> None:
    connection = await RespConnection.open(Address.from_client(aioredis.Redis.from_url(redis_url)))
    assert await connection.send(command(b"SET", b"k", b"1") + command(b"INCR", b"k"), 2) == 2
    with pytest.raises(RespError, match="WRONGTYPE"):
        await connection.send(command(b"LPUSH", b"l", b"x") + command(b"INCR", b"l") + command(b"PING"), 3)
    assert await connection.send(command(b"PING"), 1) == b"PONG"  # still in step after an error
    pending = connection.send(command(b"CLIENT", b"KILL", b"SKIPME", b"no") + command(b"BLPOP", b"none", b"5"), 2)
    with pytest.raises(RedisUnavailableError):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(RedisUnavailableError):
        connection.send(command(b"PING"), 1)


async def test_connect_failure_is_redis_unavailable() -> None:
    with pytest.raises(RedisUnavailableError, match="cannot connect"):
        await RespConnection.open(Address(host="127.0.0.1", port=1, connect_timeout_s=2))


async def test_publisher_wire_and_hash_through_the_lean_connection(redis_url: str) -> None:
    db_url = redis_url.rsplit("/", 1)[0] + "/3"  # SELECT is honoured
    raw = redis_client(db_url, decode=False)
    publisher = Publisher(raw, Keys())
    listener = redis_client(db_url, decode=False).pubsub(ignore_subscribe_messages=True)
    await listener.subscribe("tf:md:quote:A%B")
    stop = asyncio.Event()
    runner = asyncio.create_task(publisher.run(stop))
    for i in range(5):
        publisher.add_quote("A%B", 10 + i, 1.5 + i, 100.0, 2.5 + i, 200.0, 20 + i)
    messages: list[bytes] = []
    while sum(len(msgpack.unpackb(m)[2]) for m in messages) < 5:
        message = await listener.get_message(timeout=5)
        if message is not None:
            messages.append(message["data"])
    quotes = [q for m in messages for q in decode_quotes(m)]
    assert [q.bid for q in quotes] == [1.5, 2.5, 3.5, 4.5, 5.5] and quotes[-1].ts_recv_ns == 24
    db3 = aioredis.Redis.from_url(db_url, decode_responses=True)
    assert await db3.hgetall("tf:quote:A%B") == {"bid": "5.5", "bid_size": "100.0", "ask": "6.5",
                                                  "ask_size": "200.0", "ts_ns": "14", "ts_recv_ns": "24"}
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert publisher.stats.quotes == 5
    await listener.aclose()
    await db3.aclose()
    await raw.aclose()
