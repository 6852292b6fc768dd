"""Shadow market making: the seed's layered market maker, in one process, on the simulated market.

Layers (each an agent; all run as tasks of this process over Redis)::

    quotes ──> Spotter ──────────> fair_price ─┐
           ──> Volatility ───────> volatility  ├─> QuoteManager ──> bid/ask orders ─┐
           ──> SpreadCalculator ─> spread ─────┘                                    │
    positions <── sim broker fills (execution gateway) <────────────────────────────┘
    positions ──> DeltaHedger (every second: hedge |delta| > limit back inside)
              ──> PnL (every second: pnl_* per symbol and in tf:cache:portfolio)

"Shadow" mode: the orders are real orders through the real gateway and its risk
checks, filled by the sim broker against the live quotes on the bus. Nothing
reaches a real account. Swap ``source="sim"`` for ``"alpaca"`` (with keys) to
shadow-trade the real market.

Run it (needs only a Redis; ``make run`` starts one on 6379, or ``redis-server &``)::

    .venv/bin/python examples/shadow_market_making_algo.py --seconds 30

The market-data source and the execution gateway run in-process. To use the
separate processes of ``make run`` instead (``python -m hub`` and
``python -m hub.execution --broker sim`` already running)::

    .venv/bin/python examples/shadow_market_making_algo.py --external

Watch it meanwhile: ``redis-cli HGETALL tf:cache:AAPL``, ``redis-cli HGETALL tf:position:AAPL``,
``redis-cli HGETALL tf:cache:portfolio``, ``python -m hub.status``. Stop: Ctrl-C (quotes are
cancelled on the way out).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import redis.asyncio as aioredis

from agents import DeltaHedger, PnL, QuoteManager, Spotter, SpreadCalculator, Volatility
from cache import DataCache
from core.keys import PORTFOLIO, Keys
from hub import TradingHub

SYMBOLS = ["AAPL", "MSFT"]
KEYS = Keys()


def build_hub(redis_url: str, external: bool, sim_rate: float) -> TradingHub:
    """The seed API: one cache, one hub, the agents added one by one."""
    cache = DataCache(redis_url)
    if external:
        hub = TradingHub(cache=cache)
    else:
        hub = TradingHub(cache=cache, source="sim", symbols=SYMBOLS,
                         source_settings={"sim_rate": sim_rate, "sim_volatility": 0.6},
                         gateway="sim", gateway_settings={"order_rate": 20, "order_burst": 40})
    hub.add_agent(Spotter(config={"instruments": SYMBOLS, "throttle": "100ms"}, data_cache=cache))
    hub.add_agent(Volatility(config={"instruments": SYMBOLS, "throttle": "250ms", "halflife": "60s"},
                             data_cache=cache))
    hub.add_agent(SpreadCalculator(config={"instruments": SYMBOLS, "throttle": "100ms", "window": "30s"},
                                   data_cache=cache))
    hub.add_agent(QuoteManager(config={
        "instruments": SYMBOLS, "throttle": "200ms", "on_cache": ["fair_price", "spread"],
        "quote_size": 50, "tolerance": 0.02, "min_spread": 0.02, "skew_per_share": 0.0001,
        "max_inventory": 300, "max_data_age": "2s"}, data_cache=cache))
    hub.add_agent(DeltaHedger(config={
        "instruments": SYMBOLS, "throttle": "1s", "agent_type": "periodic",
        "instrument_delta_limit": 150, "hedge_to": 0.5}, data_cache=cache))
    hub.add_agent(PnL(config={"instruments": SYMBOLS, "throttle": "1s"}, data_cache=cache))
    return hub


async def summary(redis_url: str) -> str:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=KEYS.order_pattern(), count=1000)]
        statuses = [await client.hget(k, "status") for k in keys]
        lines = [f"orders: {len(keys)}, filled: {statuses.count('filled')}, "
                 f"open: {await client.scard(KEYS.open_orders())}"]
        for symbol in SYMBOLS:
            position = await client.hgetall(KEYS.position(symbol))
            cache = await client.hgetall(KEYS.cache(symbol))
            lines.append(f"{symbol}: position {position.get('qty', '0')} @ {position.get('avg_price', '-')}, "
                         f"fair {cache.get('fair_price', '-')}, delta {cache.get('delta', '-')}, "
                         f"pnl {cache.get('pnl_total', '-')}")
        portfolio = await client.hgetall(KEYS.cache(PORTFOLIO))
        lines.append(f"portfolio pnl: {portfolio.get('pnl_total', '-')} "
                     f"(realized {portfolio.get('pnl_realized', '-')})")
        return "\n".join(lines)
    finally:
        await client.aclose()


async def main(seconds: float, external: bool, redis_url: str, sim_rate: float) -> None:
    hub = build_hub(redis_url, external, sim_rate)
    if seconds > 0:
        asyncio.get_running_loop().call_later(seconds, hub.request_stop)
    await hub.start(stop_on_signals=True)  # returns once stopped (time up, Ctrl-C or SIGTERM)
    print(await summary(redis_url))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the layered market maker in shadow mode.")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")
    parser.add_argument("--external", action="store_true",
                        help="use the hub and gateway processes of `make run` instead of in-process ones")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--sim-rate", type=float, default=200.0, help="simulated quotes per second")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args.seconds, args.external, args.redis_url, args.sim_rate))
