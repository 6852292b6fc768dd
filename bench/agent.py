"""The agent the latency, fan-out and overload benchmarks run: ``python -m bench.agent``.

``run()`` records, per quote it is called with, the time from the hub's
receive stamp (``ts_recv_ns``) to the start of ``run()``, optionally writes the
cache and records the time until that write was committed (visible to every
reader), and can be made slow. At stop it writes the samples to ``--out``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from agents.base import TradingAgent
from agents.cli import run_agent_module
from agents.events import Event
from core.codec import Quote
from core.settings import option


@dataclass(frozen=True, kw_only=True)
class BenchParams:
    out: str = option("", help="file the latency samples are written to at stop")
    cache_write: bool = option(False, help="write the cache on every run")
    run_sleep_ns: int = option("0s", key="run_sleep", duration=True, help="how long each run() takes")


class BenchAgent(TradingAgent):
    """Measures itself."""

    Params = BenchParams

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.run_ns: list[int] = []
        self.cache_ns: list[int] = []

    async def run(self, data: Event) -> None:
        if not isinstance(data, Quote) or not data.ts_recv_ns:
            return
        self.run_ns.append(time.time_ns() - data.ts_recv_ns)
        if self.params.cache_write:
            await self.data_cache.update(data.symbol, {"bench_bid": data.bid})
            self.cache_ns.append(time.time_ns() - data.ts_recv_ns)
        if self.params.run_sleep_ns:
            await asyncio.sleep(self.params.run_sleep_ns / 1e9)

    async def on_stop(self) -> None:
        if self.params.out:
            with open(self.params.out, "w") as f:
                json.dump({"run_ns": self.run_ns, "cache_ns": self.cache_ns}, f)


if __name__ == "__main__":
    run_agent_module(BenchAgent)
