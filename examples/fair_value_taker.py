"""A custom agent that trades: take liquidity when the fair price leans away from the mid.

Reads the Spotter's ``fair_price`` (micro-price) from the cache on every quote; when it is
more than ``edge`` dollars above the mid it buys ``clip`` shares at the ask (below: sells
at the bid) with an immediate-or-cancel limit, never holding more than ``max_position``
and never with an order still working. Orders go through the execution gateway.

With ``make run`` up (its hub, gateway and spotter are what this agent needs), after
``source deploy/env.sh``::

    python examples/fair_value_taker.py --instruments AAPL --edge 0.002 --clip 10

Without the stack, start those three first, e.g. in a namespace of their own (``--namespace demo`` on
each, and on this agent)::

    python -m hub --symbols AAPL --namespace demo &
    python -m hub.execution --broker sim --namespace demo &
    python -m agents.spotter --instruments AAPL --namespace demo &
    python examples/fair_value_taker.py --instruments AAPL --edge 0.002 --clip 10 --namespace demo
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from agents import Quote, TradingAgent
from agents.cli import run_agent_module
from agents.pricing import round_through, to_decimal
from core.errors import ConfigError
from core.settings import option


@dataclass(frozen=True, kw_only=True)
class FairValueTakerParams:
    edge: float = option(0.002, help="trade when fair_price is this many dollars away from the mid")
    clip: int = option(10, help="shares per order")
    max_position: int = option(50, help="never hold more than this many shares either way")

    def __post_init__(self) -> None:
        if self.edge < 0 or self.clip <= 0 or self.max_position <= 0:
            raise ConfigError("settings 'edge' >= 0, 'clip' > 0 and 'max_position' > 0")


class FairValueTaker(TradingAgent):
    """Buys at the ask when the micro-price leans up, sells at the bid when it leans down."""

    Params = FairValueTakerParams
    defaults: ClassVar[dict[str, Any]] = {"throttle": "1s"}

    async def run(self, data: Any) -> None:
        if not isinstance(data, Quote) or data.mid is None:
            return
        fair = await self.data_cache.get_float(data.symbol, "fair_price", max_age_ns=1_000_000_000)
        if fair is None or abs(fair - data.mid) <= self.params.edge:
            return
        side = "buy" if fair > data.mid else "sell"
        position = await self.trading.position(data.symbol)
        exposure = position.qty if side == "buy" else -position.qty
        if exposure + self.params.clip > self.params.max_position or await self.trading.open_orders(data.symbol):
            return
        touch = data.ask if side == "buy" else data.bid
        price = round_through(to_decimal(touch), side)  # on Alpaca's tick grid, rounded toward a fill
        await self.trading.submit_limit(data.symbol, side, self.params.clip, price, time_in_force="ioc")


if __name__ == "__main__":
    run_agent_module(FairValueTaker)
