"""A custom agent in a dozen lines: order-book imbalance into the cache.

Run it beside the stack of `make run` (its hub streams AAPL), after `source deploy/env.sh`:

    python examples/imbalance_agent.py --instruments AAPL --throttle 250ms
    redis-cli HGET tf:cache:AAPL imbalance
"""

from __future__ import annotations

from agents import Quote, TradingAgent
from agents.cli import run_agent_module


class Imbalance(TradingAgent):
    """(bid_size - ask_size) / (bid_size + ask_size), in [-1, 1]."""

    async def run(self, data: object) -> None:
        if not isinstance(data, Quote) or data.bid_size + data.ask_size == 0:
            return
        imbalance = (data.bid_size - data.ask_size) / (data.bid_size + data.ask_size)
        await self.data_cache.set(data.symbol, "imbalance", imbalance)


if __name__ == "__main__":
    run_agent_module(Imbalance)
