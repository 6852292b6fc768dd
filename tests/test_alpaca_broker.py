"""The gateway with --broker alpaca, through the real alpaca-py SDK, against the local Alpaca stand-in.

Everything is a real process: redis-server, the stand-in (REST + trade_updates websocket) and
``python -m hub.execution --broker alpaca``; the test speaks to the gateway only through the
agents' TradingClient, and to the stand-in only to make it fill orders or to count its orders.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import requests

from agents.trading import TradingClient
from core.clock import SystemClock
from core.keys import Keys
from core.orders import Order
from hub.execution.brokers.alpaca_settings import AlpacaBrokerSettings
from hub.execution.store import OrderStore
from tests.conftest import free_port
from tests.helpers import ProcessGroup, eventually
from tests.test_gateway import count_orders, wait_all_handled

KEYS_ENV = {"APCA_API_KEY_ID": "test-key", "APCA_API_SECRET_KEY": "test-secret"}


@dataclass
class StandIn:
    rest: str
    ws: str

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        if payload is None:
            return requests.get(self.rest + path, timeout=5).json()
        return requests.post(self.rest + path, json=payload, timeout=5).json()

    def fill(self, client_order_id: str, qty: int, price: str) -> None:
        self.control("/test/fill", {"client_order_id": client_order_id, "qty": qty, "price": price})

    def stats(self) -> dict[str, int]:
        return self.control("/test/stats")  # type: ignore[no-any-return]


@pytest.fixture
def stand_in(processes: ProcessGroup) -> Iterator[StandIn]:
    proc = processes.start("-m", "tests.alpaca_trading_server", "--port", str(free_port()),
                           "--ws-port", str(free_port()))
    line = eventually(lambda: re.search(r"READY rest=(\S+) ws=(\S+)", processes.output(proc)), timeout_s=15,
                      message="the Alpaca stand-in to listen")
    yield StandIn(line.group(1), line.group(2))


def start_gateway(processes: ProcessGroup, stand_in: StandIn) -> subprocess.Popen[bytes]:
    proc = processes.start(
        "-m", "hub.execution", "--broker", "alpaca", "--alpaca-base-url", stand_in.rest,
        "--alpaca-stream-url", stand_in.ws, "--alpaca-requests-per-min", "10000", "--require-quote", "false",
        "--price-collar", "0", "--order-rate", "10000", "--order-burst", "10000", "--max-open-orders", "5000",
        "--max-position", "1000000", env=KEYS_ENV)
    eventually(lambda: stand_in.stats()["listeners"] >= 1, timeout_s=20,
               message="the gateway to listen to trade_updates")
    return proc


@pytest.fixture
async def trading(aredis: aioredis.Redis) -> Any:
    client = TradingClient(aredis, Keys(), "alpaca_test")
    yield client
    await client.aclose()


async def test_submit_fill_replace_cancel_through_the_sdk(processes: ProcessGroup, stand_in: StandIn,
                                                          trading: TradingClient) -> None:
    start_gateway(processes, stand_in)
    coid = await trading.submit_limit("AAPL", "buy", 10, "100.01")
    order = await trading.wait_for(coid, {"new"}, timeout_s=10)
    assert order.broker_order_id  # Alpaca's id, from the REST answer or the stream

    stand_in.fill(coid, 4, "100.00")
    order = await trading.wait_for(coid, {"partially_filled"}, timeout_s=10)
    assert (order.filled_qty, order.filled_avg_price) == (4, Decimal("100"))
    assert (await trading.position("AAPL")).qty == 4

    new_coid = await trading.replace(coid, limit_price="100.02")
    new = await trading.wait_for(new_coid, {"new"}, timeout_s=10)
    assert (new.qty, new.limit_price, new.replaces) == (6, Decimal("100.02"), coid)
    assert (await trading.wait_for(coid, {"replaced"}, timeout_s=10)).status == "replaced"

    stand_in.fill(new_coid, 6, "100.02")
    assert (await trading.wait_for(new_coid, timeout_s=10)).status == "filled"
    position = await trading.position("AAPL")
    assert position.qty == 10
    assert position.avg_price == (4 * Decimal("100") + 6 * Decimal("100.02")) / 10

    other = await trading.submit_limit("AAPL", "sell", 5, "101.50")
    await trading.wait_for(other, {"new"}, timeout_s=10)
    await trading.cancel(other)
    assert (await trading.wait_for(other, timeout_s=10)).status == "canceled"
    assert stand_in.stats()["open"] == 0 and stand_in.stats()["duplicate_submits"] == 0


async def test_api_errors_become_rejections_with_reasons(processes: ProcessGroup, stand_in: StandIn,
                                                         trading: TradingClient) -> None:
    start_gateway(processes, stand_in)
    unknown = await trading.submit_limit("ZZZZ", "buy", 1, "10")
    order = await trading.wait_for(unknown, timeout_s=10)
    assert order.status == "rejected" and "422" in order.reject_reason and "not found" in order.reject_reason

    stand_in.control("/test/config", {"buying_power": 500})
    too_big = await trading.submit_limit("AAPL", "buy", 100, "100")
    order = await trading.wait_for(too_big, timeout_s=10)
    assert order.status == "rejected" and "403" in order.reject_reason and "buying power" in order.reject_reason

    stand_in.control("/test/config", {"buying_power": 1_000_000, "rate_limit_per_min": 0})
    throttled = await trading.submit_limit("AAPL", "buy", 1, "100")
    order = await trading.wait_for(throttled, timeout_s=10)
    assert order.status == "rejected" and "429" in order.reject_reason and "rate limit" in order.reject_reason

    stand_in.control("/test/config", {"rate_limit_per_min": 10_000})
    fine = await trading.submit_limit("AAPL", "buy", 1, "100")
    assert (await trading.wait_for(fine, {"new"}, timeout_s=10)).status == "new"


async def test_restart_reconciles_orders_and_positions_with_the_account(
        processes: ProcessGroup, stand_in: StandIn, trading: TradingClient, sync_redis: redis.Redis) -> None:
    gateway = start_gateway(processes, stand_in)
    first = await trading.submit_limit("MSFT", "buy", 10, "300")
    second = await trading.submit_limit("MSFT", "buy", 5, "299")
    await trading.wait_for(first, {"new"}, timeout_s=10)
    await trading.wait_for(second, {"new"}, timeout_s=10)
    gateway.send_signal(signal.SIGKILL)
    gateway.wait(10)

    # while the gateway is down: a fill, and an order placed by hand on the account
    stand_in.fill(first, 10, "299.50")
    with warnings.catch_warnings():  # alpaca-py 0.44 imports websockets.legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.trading.requests import LimitOrderRequest
    _sdk(stand_in).submit_order(LimitOrderRequest(symbol="MSFT", qty=3, side="sell", time_in_force="day",
                                                  limit_price=310, client_order_id="by-hand-1"))

    start_gateway(processes, stand_in)
    order = await trading.wait_for(first, timeout_s=10)
    assert (order.status, order.filled_qty, order.filled_avg_price) == ("filled", 10, Decimal("299.5"))
    assert (await trading.order(second)).status == "new"  # type: ignore[union-attr]
    external = eventually(lambda: sync_redis.hgetall("tf:order:by-hand-1"), message="the external order")
    assert (external["agent"], external["status"], external["qty"]) == ("external", "new", "3")
    position = await trading.position("MSFT")
    assert (position.qty, position.avg_price) == (10, Decimal("299.5"))


async def test_kill_9_mid_stream_loses_and_duplicates_no_alpaca_order(
        processes: ProcessGroup, stand_in: StandIn, sync_redis: redis.Redis) -> None:
    gateway = start_gateway(processes, stand_in)
    total = 150
    ids = [f"k9-{i}" for i in range(total)]
    pipe = sync_redis.pipeline(transaction=False)
    for coid in ids:
        pipe.xadd("tf:orders:intents", {"v": "1", "kind": "submit", "agent": "k9", "client_order_id": coid,
                                        "symbol": "AAPL", "side": "buy", "type": "limit", "qty": "1",
                                        "limit_price": "90", "tif": "day"})
    pipe.execute()
    eventually(lambda: count_orders(sync_redis) >= 30, timeout_s=20, message="some orders to be placed")
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.wait(10)
    assert count_orders(sync_redis) < total  # killed mid-stream

    start_gateway(processes, stand_in)
    wait_all_handled(sync_redis, total)
    eventually(lambda: {sync_redis.hget(f"tf:order:{coid}", "status") for coid in ids} == {"new"},
               message="every order new at Alpaca")
    stats = stand_in.stats()
    assert (stats["orders"], stats["duplicate_submits"]) == (total, 0)
    assert count_orders(sync_redis) == total


async def test_fractional_orders_follow_the_assets_fractionable_flag(processes: ProcessGroup, stand_in: StandIn,
                                                                    trading: TradingClient,
                                                                    aredis: aioredis.Redis) -> None:
    for symbol in ("AAPL", "WHOLE"):
        await aredis.hset(Keys().latest_quote(symbol), mapping={"bid": "99.99", "ask": "100.01", "bid_size": "100",
                                                              "ask_size": "100", "ts_ns": "1"})
    start_gateway(processes, stand_in)
    half = await trading.submit_market("AAPL", "buy", "0.5")
    assert (await trading.wait_for(half, {"new", "rejected"}, timeout_s=10)).status == "new"
    again = await trading.submit_market("AAPL", "buy", "0.25")
    assert (await trading.wait_for(again, {"new", "rejected"}, timeout_s=10)).status == "new"
    whole = await trading.submit_market("WHOLE", "buy", "0.5")
    order = await trading.wait_for(whole, timeout_s=10)
    assert order.status == "rejected" and "not fractionable" in order.reject_reason
    assert stand_in.stats()["asset_lookups"] == 2  # once per symbol, then from the gateway's memory


def _sdk(stand_in: StandIn) -> Any:
    with warnings.catch_warnings():  # alpaca-py 0.44 imports websockets.legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.trading.client import TradingClient as SdkClient
    return SdkClient("test-key", "test-secret", url_override=stand_in.rest)


async def test_replayed_intent_whose_record_redis_lost_adopts_the_alpaca_order(
        processes: ProcessGroup, stand_in: StandIn, trading: TradingClient, sync_redis: redis.Redis) -> None:
    gateway = start_gateway(processes, stand_in)
    coid = await trading.submit_limit("AAPL", "buy", 10, "100.01")
    placed = await trading.wait_for(coid, {"new"}, timeout_s=10)
    stand_in.fill(coid, 4, "100.00")
    await trading.wait_for(coid, {"partially_filled"}, timeout_s=10)
    intent = sync_redis.xrange("tf:orders:intents")[-1][1]
    gateway.send_signal(signal.SIGKILL)
    gateway.wait(10)
    # A failover under async replication lost the order's writes (its hash, open-set membership, the fill's
    # position) and the intent's acknowledgement: the intent is replayed.
    sync_redis.delete(f"tf:order:{coid}", "tf:position:AAPL")
    sync_redis.srem("tf:orders:open", coid)
    sync_redis.xadd("tf:orders:intents", intent)

    start_gateway(processes, stand_in)
    eventually(lambda: sync_redis.hget("tf:gateway:gateway", "adopted") == "1", message="the order adopted")
    order = await trading.order(coid)
    assert order is not None and order.agent == trading.agent_name  # the sender's again, not "external"
    assert (order.status, order.filled_qty, order.filled_avg_price) == ("partially_filled", 4, Decimal("100"))
    assert order.broker_order_id == placed.broker_order_id
    assert (await trading.position("AAPL")).qty == 4
    assert trading.rejection(coid) is None
    events = [f["event"] for _, f in sync_redis.xrange("tf:orders:events") if f.get("client_order_id") == coid]
    assert "intent_rejected" not in events and events[-1] == "adopted"
    assert stand_in.stats()["orders"] == 1  # one order at Alpaca, never a second


async def test_submit_refused_as_a_reused_id_adopts_alpacas_order(processes: ProcessGroup, stand_in: StandIn,
                                                                 aredis: aioredis.Redis) -> None:
    """The other way a lost record shows: the submit reaches Alpaca first, which refuses the id
    (HTTP 422 "client_order_id must be unique"); the broker looks it up by id and takes Alpaca's state."""
    with warnings.catch_warnings():  # alpaca-py 0.44 imports websockets.legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.trading.requests import LimitOrderRequest

        from hub.execution.brokers.alpaca import AlpacaBroker

    remote = _sdk(stand_in).submit_order(LimitOrderRequest(symbol="MSFT", qty=5, side="buy", time_in_force="day",
                                                           limit_price=300, client_order_id="mm-lost-1"))
    stand_in.fill("mm-lost-1", 2, "299.90")
    store = OrderStore(aredis, Keys(), SystemClock())
    broker = AlpacaBroker(store, AlpacaBrokerSettings(api_key="test-key", secret_key="test-secret",
                                                      base_url=stand_in.rest, stream_url=stand_in.ws))
    await broker.submit(Order(client_order_id="mm-lost-1", agent="mm", symbol="MSFT", side="buy",
                              order_type="limit", qty=Decimal(5), limit_price=Decimal(300)))
    order = await store.get("mm-lost-1")
    assert order is not None and (order.agent, order.broker_order_id) == ("mm", str(remote.id))
    assert (order.status, order.filled_qty, order.filled_avg_price) == ("partially_filled", 2, Decimal("299.9"))
    assert store.position("MSFT").qty == 2
    assert (stand_in.stats()["orders"], stand_in.stats()["duplicate_submits"]) == (1, 1)
    await broker.close()
