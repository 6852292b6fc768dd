"""One measured backtest run, in its own process: ``python -m bench.backtest_case CASE FILE`` -> one JSON line.

Cases: ``floor`` (a plain loop over the file's rows: micro-price into a dict), ``asyncio`` (the floor
plus one bare asyncio.Event wake of a task per row: what any asyncio agent runtime pays), ``noop`` (an
event-driven agent doing nothing at throttle 0 on every symbol), ``spotter`` (Spotter at throttle 0)
and ``mm`` (the layered market maker at the stack's default throttles).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from agents.base import TradingAgent
from agents.events import Event
from backtest import HistoricalSource, parse_config, run_backtest
from backtest.engine import spec_build
from backtest.loop import run as run_loop
from core.clock import VirtualClock


class Noop(TradingAgent):
    async def run(self, data: Event) -> None:
        return None


def floor(path: Path) -> int:
    fair: dict[str, float] = {}
    count = 0
    with open(path, "rb") as file:
        unpacker = msgpack.Unpacker(file, raw=False)
        next(unpacker)  # header
        for _, symbol, rows in unpacker:
            for _, _, bid, bid_size, ask, ask_size in rows:
                fair[symbol] = (bid * ask_size + ask * bid_size) / (bid_size + ask_size)
                count += 1
    return count


def asyncio_wakes(count: int) -> int:
    """The cost floor of waking an agent task once per quote: a bare asyncio.Event ping-pong, same loop."""
    import asyncio

    from backtest.loop import BacktestLoop

    async def main() -> int:
        event, woken = asyncio.Event(), 0

        async def worker() -> None:
            nonlocal woken
            while True:
                await event.wait()
                event.clear()
                woken += 1

        task = asyncio.get_running_loop().create_task(worker())
        await asyncio.sleep(0)
        for _ in range(count):
            event.set()
            await asyncio.sleep(0)
        task.cancel()
        return woken

    with asyncio.Runner(loop_factory=BacktestLoop) as runner:
        return runner.run(main())


def config_for(case: str, symbols: list[str]) -> dict[str, Any]:
    instruments = ",".join(symbols)
    gateway = {"max_order_notional": 10_000_000, "max_open_orders": 1_000, "order_rate": 1_000,
               "order_burst": 1_000}
    if case == "mm":
        agents = [{"agent": "spotter", "instruments": instruments},
                  {"agent": "volatility", "instruments": instruments},
                  {"agent": "spread_calculator", "instruments": instruments},
                  {"agent": "quote_manager", "instruments": instruments},
                  {"agent": "pnl", "instruments": instruments}]
    elif case == "spotter":
        agents = [{"agent": "spotter", "instruments": instruments, "throttle": "0s"}]
    else:
        agents = []
    return {"backtest": {"cash": 10_000_000, "end_drain": "0s", "sample_interval": "1s"}, "gateway": gateway,
            "agents": agents}


def main() -> None:
    case, path, symbol_count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    started, cpu_started = time.perf_counter(), time.process_time()
    if case == "floor":
        quotes, extra = floor(path), {}
    elif case == "asyncio":
        quotes, extra = asyncio_wakes(floor(path)), {}
    else:
        symbols = [f"SYM{i:02d}" for i in range(symbol_count)]
        config = parse_config(config_for(case, symbols))
        clock = VirtualClock()
        agents = [Noop(config={"instruments": ",".join(symbols), "throttle": "0s"})] if case == "noop" else \
            [spec_build(spec, clock) for spec in config.agents]
        result = run_loop(run_backtest(config, HistoricalSource(path), agents=agents, clock=clock))
        quotes = result.stats["quotes_processed"]
        extra = {"runs": sum(result.stats["agent_runs"].values()), "orders": result.stats["orders_accepted"],
                 "fills": result.stats["fills"]}
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started  # on a shared machine the steadier figure of the two
    print(json.dumps({"case": case, "quotes": quotes, "seconds": seconds, "quotes_per_s": quotes / seconds,
                      "cpu_s": cpu_s, "quotes_per_cpu_s": quotes / cpu_s if cpu_s else 0.0,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))


if __name__ == "__main__":
    main()
