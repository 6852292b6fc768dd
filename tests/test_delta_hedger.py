"""DeltaHedger: pure delta math, Alpaca option greeks through the real SDK, hedging against real Redis."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis

from agents.delta_hedger import DeltaHedger
from agents.events import Tick
from agents.greeks import (
    black_scholes_delta,
    hedge_price,
    hedge_quantity,
    parse_occ,
    portfolio_delta,
    underlying_of,
)
from agents.option_greeks import AlpacaOptionDeltas
from cache import DataCache
from core.clock import FakeClock
from core.errors import ConfigError
from core.keys import Keys
from tests.fake_trading import FakeTrading

D = Decimal
CALL = "AAPL240621C00190000"
PUT = "AAPL240621P00190000"


# pure --------------------------------------------------------------------------

def test_parse_occ_symbol() -> None:
    contract = parse_occ(CALL)
    assert contract is not None
    assert (contract.underlying, contract.expiry, contract.is_call, contract.strike) == (
        "AAPL", date(2024, 6, 21), True, 190.0)
    assert parse_occ("AAPL") is None
    assert parse_occ("AAPL241341C00190000") is None  # month 13
    assert underlying_of(PUT) == "AAPL" and underlying_of("SPY") == "SPY"


def test_black_scholes_delta_known_values() -> None:
    # S=K=100, T=1, sigma=0.2, r=0: d1 = 0.1, N(0.1) = 0.539828
    call = black_scholes_delta(100, 100, 1.0, 0.2, 0.0, True)
    put = black_scholes_delta(100, 100, 1.0, 0.2, 0.0, False)
    assert call == pytest.approx(0.539828, abs=1e-6)
    assert call - put == pytest.approx(1.0)  # put-call parity of deltas
    assert black_scholes_delta(300, 100, 0.5, 0.2, 0.0, True) == pytest.approx(1.0, abs=1e-6)


def test_black_scholes_at_expiry_is_intrinsic() -> None:
    assert black_scholes_delta(101, 100, 0.0, 0.2, 0.0, True) == 1.0
    assert black_scholes_delta(99, 100, 0.0, 0.2, 0.0, True) == 0.0
    assert black_scholes_delta(99, 100, 0.0, 0.2, 0.0, False) == -1.0


def test_portfolio_delta_sums_stock_and_options_per_underlying() -> None:
    view = portfolio_delta({"AAPL": D(50), CALL: D(2), PUT: D(-1), "MSFT": D(-30), "SPY240621C00500000": D(1)},
                           {CALL: 0.6, PUT: -0.4})
    assert view.delta["AAPL"] == pytest.approx(50 + 2 * 0.6 * 100 + (-1) * (-0.4) * 100)
    assert view.delta["MSFT"] == -30
    assert view.unknown == frozenset({"SPY"})


def test_hedge_quantity_to_zero_and_to_the_limit() -> None:
    assert hedge_quantity(80, 100, 0.0) == 0
    assert hedge_quantity(250, 100, 0.0) == D(-250)
    assert hedge_quantity(-150.3, 100, 0.0) == D(150)
    assert hedge_quantity(150.3, 100, 1.0) == D(-51)  # leaves 99.3: just inside
    assert hedge_quantity(-400, 100, 0.5) == D(350)


@pytest.mark.parametrize("delta", [101.0, 150.5, -333.3, 1000.0, -100.01])
@pytest.mark.parametrize("hedge_to", [0.0, 0.5, 1.0])
def test_hedged_delta_is_always_inside_the_limit(delta: float, hedge_to: float) -> None:
    after = delta + float(hedge_quantity(delta, 100, hedge_to))
    assert abs(after) <= 100


def test_hedge_price_goes_through_the_far_touch() -> None:
    assert hedge_price("buy", 99.0, 100.0, None, 10) == pytest.approx(100.1)
    assert hedge_price("sell", 99.0, 100.0, None, 10) == pytest.approx(98.901)
    assert hedge_price("buy", None, None, 50.0, 0) == 50.0
    assert hedge_price("sell", None, None, None, 10) is None


def test_agent_is_periodic_whatever_agent_type_says() -> None:
    agent = DeltaHedger(config={"instruments": ["AAPL"], "agent_type": "event_driven"})
    assert agent.agent_type == "periodic"
    assert DeltaHedger(agent_type="event_driven").agent_type == "periodic"


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="hedge_to"):
        DeltaHedger(config={"hedge_to": 2})
    with pytest.raises(ConfigError, match="order_type"):
        DeltaHedger(config={"order_type": "stop"})


def test_keys_never_show_in_repr() -> None:
    agent = DeltaHedger(config={"api_key": "AKID123", "secret_key": "s3cr3t"})
    assert "s3cr3t" not in repr(agent.params) and "AKID123" not in repr(agent.params)
    assert "s3cr3t" not in repr(agent.option_deltas)


# the agent against Redis --------------------------------------------------------

@pytest.fixture
async def hedger(redis_url: str) -> AsyncIterator[tuple[DeltaHedger, FakeTrading, DataCache, FakeClock]]:
    clock = FakeClock()
    cache = DataCache(redis_url, clock=clock)
    agent = DeltaHedger(config={"instruments": ["AAPL"], "instrument_delta_limit": 100, "hedge_timeout": "5s"},
                        data_cache=cache, clock=clock)
    trading = FakeTrading(agent="delta_hedger")
    agent.attach_trading(trading)
    yield agent, trading, cache, clock
    await cache.aclose()


async def put_quote(client: aioredis.Redis, symbol: str, bid: float, ask: float) -> None:
    await client.hset(Keys().latest_quote(symbol), mapping={
        "bid": repr(bid), "bid_size": "100.0", "ask": repr(ask), "ask_size": "100.0", "ts_ns": "1"})


def tick() -> Tick:
    return Tick("AAPL", 0, 0)


async def test_long_stock_beyond_the_limit_is_sold_once(
        hedger: tuple[DeltaHedger, FakeTrading, DataCache, FakeClock], aredis: aioredis.Redis) -> None:
    agent, trading, cache, _ = hedger
    await put_quote(aredis, "AAPL", 189.99, 190.01)
    trading.set_position("AAPL", 250, 190)
    await agent.run(tick())
    [hedge] = trading.open("AAPL")
    assert (hedge.side, hedge.qty, hedge.order_type) == ("sell", D(250), "limit")
    assert hedge.limit_price == D("189.80")  # 189.99 minus 10 bps, rounded down to the cent
    assert await cache.get_float("AAPL", "delta") == 250.0
    for _ in range(3):
        await agent.run(tick())
    assert len(trading.orders) == 1  # no duplicate while the hedge works
    trading.fill(hedge.client_order_id, D("189.99"))
    await agent.run(tick())
    assert len(trading.orders) == 1 and (await trading.position("AAPL")).qty == 0
    assert await cache.get_float("AAPL", "delta") == 0.0


async def test_short_stock_is_bought_back_to_the_limit_with_hedge_to_one(redis_url: str,
                                                                        aredis: aioredis.Redis) -> None:
    cache = DataCache(redis_url)
    agent = DeltaHedger(config={"instruments": ["AAPL"], "instrument_delta_limit": 100, "hedge_to": 1.0,
                                "order_type": "market"}, data_cache=cache)
    trading = FakeTrading()
    agent.attach_trading(trading)
    trading.set_position("AAPL", -180, 190)
    await agent.run(tick())
    [hedge] = trading.open()
    assert (hedge.side, hedge.qty, hedge.order_type) == ("buy", D(80), "market")
    await cache.aclose()


async def test_stuck_hedge_is_cancelled_after_the_timeout_then_redone(
        hedger: tuple[DeltaHedger, FakeTrading, DataCache, FakeClock], aredis: aioredis.Redis) -> None:
    agent, trading, _, clock = hedger
    await put_quote(aredis, "AAPL", 189.99, 190.01)
    trading.set_position("AAPL", 300, 190)
    await agent.run(tick())
    [first] = trading.open()
    await clock.advance(6_000_000_000)
    await agent.run(tick())
    assert ("cancel", first.client_order_id) in trading.calls
    await agent.run(tick())
    [second] = trading.open()
    assert second.client_order_id != first.client_order_id and second.qty == D(300)


async def test_rejected_hedge_waits_before_retrying(
        hedger: tuple[DeltaHedger, FakeTrading, DataCache, FakeClock], aredis: aioredis.Redis) -> None:
    agent, trading, _, clock = hedger
    await put_quote(aredis, "AAPL", 189.99, 190.01)
    trading.set_position("AAPL", 300, 190)
    trading.reject_next = "max order qty"
    await agent.run(tick())
    for _ in range(3):
        await agent.run(tick())
    assert len(trading.orders) == 1
    await clock.advance(1_100_000_000)  # first back-off: 1s
    await agent.run(tick())
    assert len(trading.orders) == 2
    assert trading.open()[0].qty == D(300)


async def test_halt_stops_hedging(hedger: tuple[DeltaHedger, FakeTrading, DataCache, FakeClock],
                                  aredis: aioredis.Redis) -> None:
    agent, trading, _, _ = hedger
    await put_quote(aredis, "AAPL", 189.99, 190.01)
    trading.set_position("AAPL", 300, 190)
    await aredis.set(Keys().risk_halt(), "1")
    await agent.run(tick())
    assert trading.orders == {}


async def test_option_delta_falls_back_to_black_scholes_on_cache_volatility(
        hedger: tuple[DeltaHedger, FakeTrading, DataCache, FakeClock]) -> None:
    agent, trading, cache, clock = hedger
    contract = parse_occ(CALL)
    assert contract is not None
    years = 0.25
    clock._wall_offset_ns = contract.expiry_ns() - int(years * 365 * 24 * 3600 * 1e9)
    await cache.update("AAPL", {"fair_price": 190.0, "volatility": 0.3})
    trading.set_position(CALL, 10, "5.0")
    await agent.run(tick())
    expected = 10 * 100 * black_scholes_delta(190.0, 190.0, years, 0.3, 0.04, True)
    assert await cache.get_float("AAPL", "delta") == pytest.approx(expected)
    [hedge] = trading.open()
    assert hedge.side == "sell" and hedge.qty == D(round(expected))


async def test_option_without_delta_is_not_hedged(hedger: tuple[DeltaHedger, FakeTrading, DataCache, FakeClock]
                                                  ) -> None:
    agent, trading, cache, _ = hedger
    trading.set_position(CALL, 10, "5.0")
    trading.set_position("AAPL", 500, 190)
    await agent.run(tick())  # no volatility, no greeks: hedging on half the picture would be wrong
    assert trading.orders == {}
    assert await cache.get_float("AAPL", "delta") is None


# Alpaca option snapshots through the real SDK --------------------------------------

class SnapshotServer:
    """Speaks GET /v1beta1/options/snapshots like Alpaca's market-data API."""

    def __init__(self, greeks: dict[str, float]) -> None:
        self.greeks = greeks
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                outer.requests.append({"path": url.path, "query": parse_qs(url.query),
                                       "key": self.headers.get("APCA-API-KEY-ID")})
                symbols = parse_qs(url.query).get("symbols", [""])[0].split(",")
                snapshots = {s: {"greeks": {"delta": outer.greeks[s], "gamma": 0.01, "rho": 0.1, "theta": -0.05,
                                            "vega": 0.2}, "impliedVolatility": 0.25}
                             for s in symbols if s in outer.greeks}
                body = json.dumps({"snapshots": snapshots, "next_page_token": None}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> SnapshotServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def snapshots() -> Iterator[SnapshotServer]:
    with SnapshotServer({CALL: 0.62, PUT: -0.35}) as server:
        yield server


async def test_alpaca_greeks_are_fetched_with_the_sdk_and_cached(snapshots: SnapshotServer) -> None:
    deltas = AlpacaOptionDeltas("AKID", "secret", url_override=snapshots.url, max_age_ns=60_000_000_000)
    assert await deltas.deltas([CALL, PUT]) == {CALL: 0.62, PUT: -0.35}
    assert await deltas.deltas([CALL]) == {CALL: 0.62}
    assert len(snapshots.requests) == 1
    request = snapshots.requests[0]
    assert request["path"] == "/v1beta1/options/snapshots" and request["key"] == "AKID"
    assert set(request["query"]["symbols"][0].split(",")) == {CALL, PUT}


async def test_agent_uses_alpaca_greeks_when_configured(redis_url: str, snapshots: SnapshotServer) -> None:
    cache = DataCache(redis_url)
    agent = DeltaHedger(config={"instruments": ["AAPL"], "instrument_delta_limit": 50, "api_key": "AKID",
                                "secret_key": "secret", "options_data_url": snapshots.url,
                                "order_type": "market"}, data_cache=cache)
    trading = FakeTrading()
    agent.attach_trading(trading)
    trading.set_position(CALL, 3, "4.0")
    trading.set_position("AAPL", -20, 190)
    await agent.run(tick())
    assert await cache.get_float("AAPL", "delta") == pytest.approx(3 * 0.62 * 100 - 20)
    [hedge] = trading.open()
    assert (hedge.side, hedge.qty) == ("sell", D(round(3 * 0.62 * 100 - 20)))
    await cache.aclose()


async def test_unreachable_greeks_service_falls_back_without_raising() -> None:
    deltas = AlpacaOptionDeltas("AKID", "secret", url_override="http://127.0.0.1:9")
    assert await deltas.deltas([CALL]) == {}
    assert math.isfinite(deltas._retry_at_ns) and deltas._retry_at_ns > 0
