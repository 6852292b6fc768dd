"""Run agents against Redis: used by ``python -m agents.<name>`` and by TradingHub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from agents.base import TradingAgent
from agents.runtime import AgentRuntime, run_agents
from agents.trading import TradingClient
from core.clock import Clock, SystemClock
from core.connection import ProcessSettings, redis_client, redis_up_before_stop
from core.errors import ConfigError


async def serve_agents(agents: Sequence[TradingAgent], settings: ProcessSettings, stop: asyncio.Event,
                       clock: Clock | None = None) -> None:
    """Connect, run every agent until ``stop`` is set, then close the connections."""
    for agent in agents:  # sharding restarts runtimes over a changing share: agents.sharding, one per process
        if agent.settings.shard or agent.settings.instruments_from:
            raise ConfigError(f"agent {agent.name!r}: 'shard' / 'instruments_from' need the agent in its own "
                              "process (python -m agents.<module> --shard ...), not several agents in one")
    clock = clock or SystemClock()
    client = redis_client(settings.redis_spec)
    raw_client = redis_client(settings.redis_spec, decode=False)
    trading_clients: list[TradingClient] = []
    try:
        if not await redis_up_before_stop(client, settings, stop):
            return
        runtimes = [AgentRuntime(agent, client=client, raw_client=raw_client, keys=settings.keys, clock=clock)
                    for agent in agents]
        for runtime in runtimes:  # orders go through the execution gateway (python -m hub.execution)
            trading = TradingClient(client, settings.keys, runtime.agent.name, clock)
            trading_clients.append(trading)
            runtime.agent.attach_trading(trading)
        await run_agents(runtimes, stop)  # on_stop (cancel quotes) runs in here, with the clients still open
    finally:
        for trading in trading_clients:
            with contextlib.suppress(Exception):
                await trading.aclose()
        with contextlib.suppress(Exception):
            await raw_client.aclose()
        with contextlib.suppress(Exception):
            await client.aclose()

