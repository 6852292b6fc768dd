"""TradingHub: the seed's in-process API. Agents (and optionally a market-data
source and the execution gateway) as tasks of one process, over the same Redis
bus and cache as the separate-process deployment::

    cache = DataCache()
    hub = TradingHub(cache=cache, source="sim", symbols=["AAPL"], gateway="sim")
    hub.add_agent(Spotter(config={"instruments": ["AAPL"]}, data_cache=cache))
    await hub.start()                 # runs until hub.stop() / request_stop() / Ctrl-C

In a notebook or a test, ``await hub.start(block=False)`` (or ``async with hub:``)
returns at once and ``await hub.stop()`` ends it. Stopping stops the agents
first (their ``on_stop`` cancels quotes), lets the in-process gateway handle
the intents they sent, then stops the gateway and the source.

A backtest is the same API with a historical source and a virtual clock; no Redis
is needed, ``start()`` returns when the data ends and ``hub.result`` holds orders,
fills, positions, the equity curve and the statistics (see docs/backtest.md)::

    clock = VirtualClock()
    hub = TradingHub(cache=cache, source=HistoricalSource("quotes.csv"), clock=clock,
                     gateway_settings={"max_order_notional": 1e6}, backtest_settings={"cash": 1e6})
    hub.add_agent(QuoteManager(config={...}, data_cache=cache, clock=clock))
    await hub.start()
    print(hub.result.stats["pnl_total"])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from agents.base import TradingAgent
from agents.serve import serve_agents
from cache import DataCache
from core.clock import Clock, VirtualClock
from core.connection import ProcessSettings, redis_client
from core.errors import ConfigError
from core.settings import build, option_specs
from hub.marketdata.app import HubConfig, HubSettings, hub_config, run_hub
from hub.marketdata.sources import SOURCES

log = logging.getLogger(__name__)

#: How long stop() lets the in-process gateway work off the agents' last intents.
INTENT_DRAIN_S = 3.0


class TradingHub:
    """Runs agents, and optionally a source and the gateway, in this process."""

    def __init__(self, cache: DataCache | None = None, *, source: Any = None, symbols: Sequence[str] = (),
                 source_settings: Mapping[str, Any] | None = None, gateway: str | None = None,
                 gateway_settings: Mapping[str, Any] | None = None, redis_url: str | None = None,
                 namespace: str | None = None, name: str = "hub", clock: Clock | None = None,
                 backtest_settings: Mapping[str, Any] | None = None,
                 positions: Mapping[str, Any] | None = None) -> None:
        """``source``: ``'sim'``, ``'replay'``, ``'alpaca'`` ... to stream market data in-process (with
        ``symbols`` and the source's settings, e.g. ``{'sim_rate': 100}``); ``gateway``: ``'sim'`` or
        ``'alpaca'`` to run the execution gateway in-process (``gateway_settings``: risk and broker
        settings of ``python -m hub.execution``). Bad settings raise ConfigError here, before any I/O.

        A backtest: ``source`` a :class:`backtest.HistoricalSource`, a file path (``Path``) or an
        iterable of ``(symbol, ts_ns, bid, bid_size, ask, ask_size)``, and/or ``clock`` a
        :class:`~core.clock.VirtualClock`; ``gateway_settings`` are the same risk and sim-broker keys,
        ``backtest_settings`` the ``[backtest]`` keys of a config file, ``positions`` its ``[positions]``."""
        self.result: Any = None
        self.backtest: Any = None
        if isinstance(clock, VirtualClock) or (source is not None and not isinstance(source, str)):
            self._init_backtest(cache, source, clock, gateway, gateway_settings, backtest_settings, positions)
            return
        self.cache = cache if cache is not None else DataCache(redis_url, namespace=namespace or "tf")
        self.process: ProcessSettings = build(ProcessSettings, {
            "redis_url": redis_url or self.cache.redis_url, "namespace": namespace or self.cache.keys.namespace,
            "redis_password_file": os.environ.get("REDIS_PASSWORD_FILE", "")})
        common = {"redis_url": self.process.redis_url, "namespace": self.process.namespace}
        self.hub_config: HubConfig | None = None
        if source is not None:
            self.hub_config = hub_config({**(source_settings or {}), **common, "source": source,
                                          "symbols": list(symbols), "name": name})
            _reject_unknown(source_settings, [HubSettings, SOURCES[source][0]], "source_settings")
        elif symbols or source_settings:
            raise ConfigError("TradingHub: 'symbols' and 'source_settings' need a source, e.g. source='sim'")
        self.gateway_config: Any = None
        if gateway is not None:
            from hub.execution.app import gateway_config, settings_classes

            self.gateway_config = gateway_config({**(gateway_settings or {}), **common, "broker": gateway,
                                                  "name": f"{name}-gateway"})
            _reject_unknown(gateway_settings, [c for c in settings_classes() if c is not ProcessSettings],
                            "gateway_settings")
        self.agents: list[TradingAgent] = []
        self._runner: asyncio.Task[None] | None = None
        self._agents_stop = asyncio.Event()
        self._infra_stop = asyncio.Event()

    def _init_backtest(self, cache: DataCache | None, source: Any, clock: Clock | None, gateway: str | None,
                       gateway_settings: Mapping[str, Any] | None, backtest_settings: Mapping[str, Any] | None,
                       positions: Mapping[str, Any] | None) -> None:
        from backtest import HistoricalSource, parse_config

        if gateway not in (None, "sim"):
            raise ConfigError(f"TradingHub: a backtest trades on the sim broker only, not gateway={gateway!r}")
        if source is None:
            raise ConfigError("TradingHub: a backtest needs source=HistoricalSource('quotes.csv') (or a Path)")
        if clock is not None and not isinstance(clock, VirtualClock):
            raise ConfigError("TradingHub: a historical source runs in data time; pass clock=VirtualClock()")
        self.cache = cache if cache is not None else DataCache()
        self.backtest = parse_config({"backtest": dict(backtest_settings or {}),
                                      "gateway": dict(gateway_settings or {}), "positions": dict(positions or {})})
        self._source = HistoricalSource(source) if isinstance(source, Path) else source
        self.clock = clock if clock is not None else VirtualClock()
        self.hub_config, self.gateway_config = None, None
        self.agents = []
        self._runner = None
        self._agents_stop = asyncio.Event()
        self._infra_stop = asyncio.Event()

    def __repr__(self) -> str:
        if self.backtest is not None:
            return f"TradingHub(agents={[a.name for a in self.agents]}, backtest={self._source!r})"
        return (f"TradingHub(agents={[a.name for a in self.agents]}, source="
                f"{self.hub_config.hub.source if self.hub_config else None!r}, gateway="
                f"{self.gateway_config.gateway.broker if self.gateway_config else None!r})")

    def add_agent(self, agent: TradingAgent) -> TradingAgent:
        """Add an agent before start(); names must be unique (they name heartbeats and orders)."""
        if self._runner is not None:
            raise RuntimeError("TradingHub: add agents before start()")
        if any(a.name == agent.name for a in self.agents):
            raise ConfigError(f"TradingHub: two agents named {agent.name!r}; pass config name='...' to one")
        self.agents.append(agent)
        return agent

    @property
    def stop_event(self) -> asyncio.Event:
        """Setting this event stops the hub (same as request_stop())."""
        return self._agents_stop

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def start(self, *, block: bool = True, stop_on_signals: bool = False) -> None:
        """Start everything. ``block``: return only when stopped (raising what made it stop, if anything).
        ``stop_on_signals``: SIGINT/SIGTERM stop the hub gracefully (a script's Ctrl-C)."""
        if self._runner is not None:
            raise RuntimeError("TradingHub already started")
        if not self.agents and self.hub_config is None and self.gateway_config is None and self.backtest is None:
            raise ConfigError("TradingHub: nothing to run; add_agent() first")
        self._runner = asyncio.create_task(self._run(), name="trading-hub")
        if stop_on_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_stop)
        if block:
            await self.wait()

    async def wait(self) -> None:
        """Until the hub has stopped; a cancelled waiter stops the hub gracefully first."""
        if self._runner is None:
            raise RuntimeError("TradingHub not started")
        try:
            await asyncio.shield(self._runner)
        except asyncio.CancelledError:
            await self.stop()
            raise

    def request_stop(self) -> None:
        """Ask the hub to stop (safe from a signal handler or a callback)."""
        self._agents_stop.set()

    async def stop(self) -> None:
        """Stop the agents, then the gateway and the source; returns when all have finished."""
        self.request_stop()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self._runner)

    async def __aenter__(self) -> TradingHub:
        await self.start(block=False)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # the run ---------------------------------------------------------------------------

    async def _run(self) -> None:
        if self.backtest is not None:
            from backtest import run_backtest

            self.result = await run_backtest(self.backtest, self._source, agents=self.agents, clock=self.clock)
            return
        infra = self._infra_tasks()
        agents = asyncio.create_task(self._serve_agents(), name="trading-hub:agents")
        log.info("trading hub running %d agents%s%s", len(self.agents),
                 f", source {self.hub_config.hub.source}" if self.hub_config else "",
                 f", gateway {self.gateway_config.gateway.broker}" if self.gateway_config else "")
        try:
            await asyncio.wait([agents, *infra], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._agents_stop.set()
            results = list(await asyncio.gather(agents, return_exceptions=True))
            if self.gateway_config is not None and not any(t.done() for t in infra):
                await self._drain_intents()
            self._infra_stop.set()
            results += list(await asyncio.gather(*infra, return_exceptions=True))
            log.info("trading hub stopped")
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _serve_agents(self) -> None:
        if self.agents:
            await serve_agents(self.agents, self.process, self._agents_stop)
        else:  # a hub that only streams and/or executes runs until stopped
            await self._agents_stop.wait()

    def _infra_tasks(self) -> list[asyncio.Task[None]]:
        tasks = []
        if self.hub_config is not None:
            tasks.append(asyncio.create_task(run_hub(self.hub_config, self._infra_stop), name="trading-hub:source"))
        if self.gateway_config is not None:
            from hub.execution.app import run_gateway

            tasks.append(asyncio.create_task(run_gateway(self.gateway_config, self._infra_stop),
                                             name="trading-hub:gateway"))
        return tasks

    async def _drain_intents(self) -> None:
        """Wait (bounded) until the gateway has handled every intent, e.g. the agents' last cancels."""
        from hub.execution.gateway import GROUP

        client = redis_client(self.process.redis_spec)
        deadline = time.monotonic() + INTENT_DRAIN_S
        try:
            while time.monotonic() < deadline:
                groups = await client.xinfo_groups(self.process.keys.order_intents())
                group = next((g for g in groups if g["name"] == GROUP), None)
                if group is not None and not group["pending"] and not group.get("lag"):
                    return
                await asyncio.sleep(0.02)
            log.warning("gateway still had unhandled intents after %.0fs; stopping it anyway", INTENT_DRAIN_S)
        except Exception as e:  # best effort: the stream is durable and a restarted gateway resumes it
            log.warning("could not check the gateway's backlog: %s", e)
        finally:
            await client.aclose()


def _reject_unknown(values: Mapping[str, Any] | None, classes: Sequence[type], what: str) -> None:
    known = {spec.key for cls in classes for spec in option_specs(cls)}
    unknown = sorted(set(values or {}) - known)
    if unknown:
        raise ConfigError(f"TradingHub {what}: unknown setting '{unknown[0]}'; known: {', '.join(sorted(known))}")
