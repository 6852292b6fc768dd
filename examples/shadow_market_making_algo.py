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

Run it (needs only a Redis: ``make run`` starts one on 6379, or ``redis-server &``; with the venv
active, ``source deploy/env.sh``)::

    python examples/shadow_market_making_algo.py --seconds 30

The market-data source and the execution gateway run in-process, in a namespace of their own
(``--namespace shadow``: keys ``shadow:*``), so it runs beside the ``make run`` stack without
meeting it. Watch it meanwhile: ``redis-cli HGETALL shadow:cache:AAPL``,
``redis-cli HGETALL shadow:position:AAPL``, ``python -m hub.status --namespace shadow``.

To trade through the stack's own hub and gateway instead (namespace ``tf``; the agents are then
named ``shadow_spotter``, ``shadow_quote_manager`` ... so they never take the stack's names)::

    python examples/shadow_market_making_algo.py --external --seconds 30

Positions are per symbol and namespace, so with ``--external`` this market maker and the stack's
share AAPL's and MSFT's positions (and both hedgers hedge them); ``supervisorctl -c
deploy/supervisord.conf stop quote_manager delta_hedger`` first for a book of its own.
Stop: Ctrl-C (quotes are cancelled on the way out). An expected failure (no Redis, a name
already taken, a bad setting) ends with one line and the framework's exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from agents import DeltaHedger, PnL, QuoteManager, Spotter, SpreadCalculator, Volatility
from cache import DataCache
from core.connection import redis_client, spec_from_env
from core.exitcodes import ExitCode
from core.keys import DEFAULT_NAMESPACE, PORTFOLIO, Keys
from core.orders import TERMINAL
from core.process import exit_code_for
from hub import TradingHub
from hub.status import shown

SYMBOLS = ["AAPL", "MSFT"]
PROG = "shadow_market_making_algo"
#: The in-process run's own namespace: its hub, gateway and agents never meet the `make run` stack's.
SHADOW_NAMESPACE = "shadow"
#: With --external the agents share the stack's namespace, so they take names of their own.
EXTERNAL_PREFIX = "shadow_"


def build_hub(redis_url: str, external: bool, sim_rate: float, namespace: str) -> TradingHub:
    """The seed API: one cache, one hub, the agents added one by one."""
    cache = DataCache(redis_url, namespace=namespace)
    if external:
        hub = TradingHub(cache=cache)
    else:
        hub = TradingHub(cache=cache, source="sim", symbols=SYMBOLS,
                         source_settings={"sim_rate": sim_rate, "sim_volatility": 0.6},
                         gateway="sim", gateway_settings={"order_rate": 20, "order_burst": 40})
    prefix = EXTERNAL_PREFIX if external else ""

    def config(name: str, **settings: object) -> dict[str, object]:
        return {"name": prefix + name, "instruments": SYMBOLS, **settings}

    hub.add_agent(Spotter(config=config("spotter", throttle="100ms"), data_cache=cache))
    hub.add_agent(Volatility(config=config("volatility", throttle="250ms", halflife="60s"), data_cache=cache))
    hub.add_agent(SpreadCalculator(config=config("spread_calculator", throttle="100ms", window="30s"),
                                   data_cache=cache))
    hub.add_agent(QuoteManager(config=config(
        "quote_manager", throttle="200ms", on_cache=["fair_price", "spread"], quote_size=50, tolerance=0.02,
        min_spread=0.02, skew_per_share=0.0001, max_inventory=300, max_data_age="2s"), data_cache=cache))
    hub.add_agent(DeltaHedger(config=config(
        "delta_hedger", throttle="1s", agent_type="periodic", instrument_delta_limit=150, hedge_to=0.5),
        data_cache=cache))
    hub.add_agent(PnL(config=config("pnl", throttle="1s"), data_cache=cache))
    return hub


async def summary(redis_url: str, keys: Keys, agent_prefix: str) -> str:
    """This run's orders (its agents' names start with ``agent_prefix``), positions and PnL, rounded."""
    client = redis_client(spec_from_env(redis_url))  # REDIS_PASSWORD_FILE too, as DataCache does
    try:
        order_keys = [k async for k in client.scan_iter(match=keys.order_pattern(), count=1000)]
        orders = [o for k in order_keys if (o := await client.hgetall(k)).get("agent", "").startswith(agent_prefix)]
        statuses = [o.get("status") for o in orders]
        lines = [f"orders: {len(orders)}, filled: {statuses.count('filled')}, "
                 f"open: {sum(1 for s in statuses if s not in TERMINAL)}"]
        for symbol in SYMBOLS:
            position = await client.hgetall(keys.position(symbol))
            cache = await client.hgetall(keys.cache(symbol))
            avg = shown("avg_price", position.get("avg_price", "-"))
            fair, delta = shown("fair_price", cache.get("fair_price", "-")), shown("delta", cache.get("delta", "-"))
            lines.append(f"{symbol}: position {position.get('qty', '0')} @ {avg}, fair {fair}, delta {delta}, "
                         f"pnl {shown('pnl_total', cache.get('pnl_total', '-'))}")
        portfolio = await client.hgetall(keys.cache(PORTFOLIO))
        lines.append(f"portfolio pnl: {shown('pnl_total', portfolio.get('pnl_total', '-'))} "
                     f"(realized {shown('pnl_realized', portfolio.get('pnl_realized', '-'))})")
        return "\n".join(lines)
    finally:
        await client.aclose()


async def main(args: argparse.Namespace) -> None:
    hub = build_hub(args.redis_url, args.external, args.sim_rate, args.namespace)
    if args.seconds > 0:
        asyncio.get_running_loop().call_later(args.seconds, hub.request_stop)
    await hub.start(stop_on_signals=True)  # returns once stopped (time up, Ctrl-C or SIGTERM)
    print(await summary(args.redis_url, hub.cache.keys, EXTERNAL_PREFIX if args.external else ""))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the layered market maker in shadow mode.")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")
    parser.add_argument("--external", action="store_true",
                        help="use the hub and gateway processes of `make run` (namespace tf) instead of in-process "
                             "ones; the agents are named shadow_<agent>")
    parser.add_argument("--namespace", default=None,
                        help=f"Redis namespace (default: {SHADOW_NAMESPACE}, or {DEFAULT_NAMESPACE} with --external)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--sim-rate", type=float, default=200.0, help="simulated quotes per second")
    args = parser.parse_args()
    if args.namespace is None:
        args.namespace = DEFAULT_NAMESPACE if args.external else SHADOW_NAMESPACE
    return args


def run() -> int:
    """The example's exit code; an expected failure is one line, never a traceback."""
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(main(args))
    except Exception as e:
        code = exit_code_for(e)
        if code is ExitCode.SOFTWARE:
            raise  # a bug: the traceback is the report
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(run())
