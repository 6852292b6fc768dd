"""The dashboard's reader against the suite's Redis: one poll turns hashes and the event stream into state."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from core.keys import PORTFOLIO, Keys
from core.settings import build
from hub.dashboard.reader import Reader
from hub.dashboard.settings import DashboardSettings
from hub.dashboard.state import PRICE_COLUMNS, State
from hub.dashboard.view import View

KEYS = Keys()


async def _stack(client: aioredis.Redis) -> None:
    now = time.time_ns()
    await client.hset(KEYS.hub("hub"), mapping={"kind": "hub", "symbols": "AAPL", "instance": "a", "pid": "1",
                                                "started_ns": now, "beat_ns": now, "connection": "simulated"})
    await client.hset(KEYS.latest_quote("AAPL"), mapping={"bid": "100.0", "ask": "100.1", "bid_size": "5",
                                                          "ask_size": "7", "ts_ns": now, "ts_recv_ns": now})
    await client.hset(KEYS.cache("AAPL"), mapping={"fair_price": "100.04", "fair_price:ts_ns": now,
                                                   "volatility": "0.2", "spread": "0.1"})
    await client.hset(KEYS.cache(PORTFOLIO), mapping={"pnl_realized": "1.5", "pnl_unrealized": "-0.5",
                                                      "pnl_total": "1.0"})
    for coid, side, price in (("q-1", "buy", "99.95"), ("q-2", "sell", "100.15"), ("q-3", "buy", "99.90")):
        await client.hset(KEYS.order(coid), mapping={"client_order_id": coid, "symbol": "AAPL", "side": side,
                                                     "qty": "10", "filled_qty": "0", "limit_price": price,
                                                     "status": "new"})
        await client.sadd(KEYS.open_orders(), coid)
    await client.hset(KEYS.position("AAPL"), mapping={"qty": "20", "realized_pnl": "1.5"})
    await client.hset(KEYS.gateway("gateway"), mapping={"kind": "gateway", "instance": "g", "beat_ns": now,
                                                        "limit:max_position": "100", "limit:max_open_orders": "10"})


async def test_one_poll_reads_the_stack_into_state(aredis: aioredis.Redis) -> None:
    await _stack(aredis)
    state = State(history_samples=100)
    reader = Reader(aredis, KEYS, state, build(DashboardSettings, {}))
    await reader.poll(slow=True)
    assert state.redis_up and state.symbols == ["AAPL"]
    await aredis.xadd(KEYS.order_events(), {"event": "fill", "symbol": "AAPL", "side": "buy", "fill_price": "99.95",
                                            "fill_qty": "10", "updated_ns": str(time.time_ns())})
    await reader.poll(slow=True)
    row = dict(zip(PRICE_COLUMNS, state.series["AAPL"].samples[-1], strict=True))
    assert (row["bid"], row["ask"], row["fair_price"]) == (100.0, 100.1, 100.04)
    assert (row["own_bid"], row["own_ask"], row["fill_buy"], row["fill_sell"]) == (99.95, 100.15, 99.95, None)
    assert state.series["AAPL"].samples[0][PRICE_COLUMNS.index("fill_buy")] is None
    assert [f["fill_price"] for f in state.fills] == ["99.95"] and state.order_events["fill"] == 1
    assert state.pnl.samples[-1][1:] == (1.5, -0.5, 1.0)

    view = View(state, build(DashboardSettings, {}), control=False)
    tables = view.tables(time.time_ns())
    assert [p["name"] for p in tables["processes"]] == ["hub", "gateway"]
    assert {b["id"] for b in tables["banners"]} == set()
    limits = {r["limit"]: r for r in tables["risk"]["limits"]}
    assert limits["max_position"]["used"] == 40  # 20 held + 20 to buy
    assert limits["max_open_orders"]["ratio"] == 0.3

    await aredis.delete(KEYS.hub("hub"))
    await aredis.srem(KEYS.wanted_symbols(), "AAPL")
    await aredis.delete(KEYS.position("AAPL"))
    await reader.poll(slow=True)
    tables = view.tables(time.time_ns())
    assert "no-hub" in {b["id"] for b in tables["banners"]}
    assert tables["processes"][0]["state"] == "down"
    assert state.symbols == [] and "AAPL" not in state.quotes  # no longer followed: forgotten
