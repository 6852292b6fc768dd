"""A backtest's config file: the data, the gateway's settings, the agents with their own settings.

TOML (or JSON)::

    [backtest]                       # BacktestSettings below
    data = ["tests/data/futures_cme_esu4_mbp1_20240701.csv"]
    cash = 1_000_000

    [gateway]                        # the keys of `python -m hub.execution`: risk and sim broker
    max_order_notional = 10_000_000
    sim_latency = "2ms"

    [positions]                      # starting positions: SYMBOL = qty, or {qty = ..., avg_price = ...}
    ESU4 = 0

    [[agents]]                       # one table per agent: `agent` names the class, the rest are
    agent = "spotter"                # exactly the keys `python -m agents.spotter --config` takes
    instruments = "ESU4"
    throttle = "100ms"

``agent`` is a module of the ``agents`` package (``spotter``, ``quote_manager``), a
``module:Class`` (``examples.imbalance_agent:Imbalance``) or a ``path.py:Class``.
Everything is validated here, before any data is read: an unknown key names itself.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents.base import TradingAgent, default_agent_name
from core.errors import ConfigError
from core.keys import DEFAULT_NAMESPACE
from core.orders import to_decimal
from core.settings import build, option, option_specs, pick, read_config_file
from hub.execution.brokers.sim import SimBrokerSettings
from hub.execution.risk import RiskSettings

#: What an Alpaca US-equities account pays on sells (see docs/backtest.md for the sources and dates).
ALPACA_SEC_FEE_PER_MILLION = 27.80
ALPACA_TAF_PER_SHARE = 0.000166
ALPACA_TAF_MAX = 8.30
#: The backtest's own defaults for the gateway section (a live gateway's defaults differ where noted).
GATEWAY_DEFAULTS: Mapping[str, Any] = {
    "sim_sec_fee_per_million": ALPACA_SEC_FEE_PER_MILLION,  # live sim: 0
    "sim_taf_per_share": ALPACA_TAF_PER_SHARE,  # live sim: 0
    "sim_taf_max": ALPACA_TAF_MAX,  # live sim: 0
    "sim_market_walk": True,  # live sim: the rest waits for the next quotes
}


@dataclass(frozen=True, kw_only=True)
class BacktestSettings:
    data: tuple[str, ...] = option((), symbols=False, help="quote files, merged in time order: normalized CSV, "
                                   "recordings (--record) or python -m hub.history output")
    cash: float = option(100_000.0, help="starting cash, dollars")
    sample_interval_ns: int = option("1s", key="sample_interval", duration=True,
                                     help="data-time grid of the equity curve, price samples and Sharpe/Sortino")
    intent_latency_ns: int = option("0s", key="intent_latency", duration=True,
                                    help="from an agent's order call to the gateway handling it")
    end_drain_ns: int = option("1s", key="end_drain", duration=True,
                               help="after the last quote, timers keep running this long before the agents stop")
    namespace: str = option(DEFAULT_NAMESPACE, help="key namespace of the in-memory state (and of --redis-url)")
    contract_multiplier: float = option(100.0, help="shares per option contract: OCC option symbols are "
                                        "marked and their PnL counted per contract, as the PnL agent does")
    periods_per_year: float = option(252 * 6.5 * 3600, help="seconds of trading per year, to annualize Sharpe "
                                     "and Sortino (default: US equities, 252 days of 6.5 h)")

    def __post_init__(self) -> None:
        for path in self.data:
            if not Path(path).is_file():
                raise ConfigError(f"setting 'data': {path} does not exist or is not a file")
        if self.cash <= 0:
            raise ConfigError("setting 'cash' must be > 0 dollars")
        if self.sample_interval_ns <= 0:
            raise ConfigError("setting 'sample_interval' must be > 0, e.g. 1s")
        if not self.contract_multiplier > 0:
            raise ConfigError("setting 'contract_multiplier' must be > 0, e.g. 100")


@dataclass(frozen=True)
class StartPosition:
    symbol: str
    qty: Decimal
    avg_price: Decimal | None  # None: the first quote's mid


@dataclass(frozen=True)
class AgentSpec:
    """One ``[[agents]]`` table: the class and its config dict, as ``--config`` would give them."""

    cls: type[TradingAgent]
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.config.get("name") or default_agent_name(self.cls))

    def build(self) -> TradingAgent:
        return self.cls(config=dict(self.config))


@dataclass(frozen=True)
class BacktestConfig:
    backtest: BacktestSettings
    risk: RiskSettings
    sim: SimBrokerSettings
    positions: tuple[StartPosition, ...]
    agents: tuple[AgentSpec, ...]
    source_path: str = ""
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)


def load_config(path: str, overrides: Sequence[tuple[str, Any]] = ()) -> BacktestConfig:
    """Read and validate a config file; ``overrides`` are ``(section.key, value)`` (a sweep's point)."""
    raw = read_config_file(path)
    section = raw.get("backtest")
    if isinstance(section, dict) and isinstance(section.get("data"), list):
        # paths are relative to the working directory, as the hub's --file; else to the config file
        base = Path(path).parent
        section["data"] = [str(base / d) if isinstance(d, str) and not Path(d).exists() and (base / d).is_file()
                           else d for d in section["data"]]
    return parse_config(raw, overrides, base=Path(path).parent, source_path=path)


def parse_config(raw: Mapping[str, Any], overrides: Sequence[tuple[str, Any]] = (), *, base: Path | None = None,
                 source_path: str = "") -> BacktestConfig:
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    unknown = sorted(set(data) - {"backtest", "gateway", "positions", "agents"})
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}'; sections: backtest, gateway, positions, agents")
    agent_tables = data.get("agents", [])
    if not isinstance(agent_tables, list) or not all(isinstance(t, dict) for t in agent_tables):
        raise ConfigError("config 'agents' must be a list of tables: [[agents]] agent = \"spotter\" ...")
    classes = [resolve_agent_class(table.get("agent", ""), base) for table in agent_tables]
    for key, value in overrides:
        _apply_override(data, agent_tables, classes, key, value)
    settings = _build_section(BacktestSettings, data.get("backtest", {}), "backtest")
    gateway = {**GATEWAY_DEFAULTS, **data.get("gateway", {})}
    known = {spec.key for cls in (RiskSettings, SimBrokerSettings) for spec in option_specs(cls)}
    extra = sorted(set(gateway) - known)
    if extra:
        raise ConfigError(f"unknown setting '{extra[0]}' in [gateway]; known: {', '.join(sorted(known))}")
    agents = tuple(_agent_spec(cls, table) for cls, table in zip(classes, agent_tables, strict=True))
    names = [a.name for a in agents]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"two agents named {duplicate!r}: give one a name = \"...\"")
    return BacktestConfig(settings, build(RiskSettings, pick(gateway, RiskSettings)),
                          build(SimBrokerSettings, pick(gateway, SimBrokerSettings)),
                          _positions(data.get("positions", {})), agents, source_path, data)


def _build_section(cls: type, values: Any, section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config [{section}] must be a table")
    try:
        return build(cls, values)
    except ConfigError as e:
        raise ConfigError(f"[{section}] {e}") from None


def _agent_spec(cls: type[TradingAgent], table: Mapping[str, Any]) -> AgentSpec:
    config = {k: v for k, v in table.items() if k != "agent"}
    try:
        cls(config=dict(config))  # validates every key now, before any data is read
    except ConfigError as e:
        raise ConfigError(f"[[agents]] {table.get('agent')}: {e}") from None
    return AgentSpec(cls, config)


def _positions(values: Any) -> tuple[StartPosition, ...]:
    if not isinstance(values, dict):
        raise ConfigError("config [positions] must be a table of SYMBOL = qty")
    result = []
    for symbol, value in sorted(values.items()):
        entry = value if isinstance(value, dict) else {"qty": value}
        unknown = sorted(set(entry) - {"qty", "avg_price"})
        if unknown:
            raise ConfigError(f"[positions] {symbol}: unknown key '{unknown[0]}' (qty, avg_price)")
        try:
            qty = to_decimal(entry.get("qty", 0), f"positions.{symbol}.qty")
            avg = to_decimal(entry["avg_price"], f"positions.{symbol}.avg_price") if "avg_price" in entry else None
        except ValueError as e:
            raise ConfigError(f"[positions] {e}") from None
        result.append(StartPosition(symbol.upper(), qty, avg))
    return tuple(result)


def _apply_override(raw: dict[str, Any], tables: list[dict[str, Any]], classes: list[type[TradingAgent]],
                    key: str, value: Any) -> None:
    section, _, setting = key.partition(".")
    if not setting:
        raise ConfigError(f"sweep key {key!r} must be SECTION.SETTING, e.g. quote_manager.min_spread")
    if section in ("backtest", "gateway"):
        raw.setdefault(section, {})[setting] = value
        return
    for table, cls in zip(tables, classes, strict=True):
        if str(table.get("name") or default_agent_name(cls)) == section:
            table[setting] = value
            return
    names = [str(t.get("name") or default_agent_name(c)) for t, c in zip(tables, classes, strict=True)]
    raise ConfigError(f"sweep key {key!r}: no agent named {section!r} (agents: {', '.join(names)}; "
                      "or backtest.*, gateway.*)")


def resolve_agent_class(name: str, base: Path | None = None) -> type[TradingAgent]:
    """``spotter`` -> agents.spotter's agent class; ``pkg.mod:Class``; ``path/to/file.py:Class``."""
    if not name:
        raise ConfigError("an [[agents]] table needs agent = \"...\" (e.g. \"spotter\" or \"module:Class\")")
    module_name, _, class_name = name.partition(":")
    module = _import(module_name, base)
    if class_name:
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, TradingAgent)):
            raise ConfigError(f"agent {name!r}: {class_name} is not a TradingAgent class in {module_name}")
        return cls
    found = [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, TradingAgent)
             and c is not TradingAgent and c.__module__ == module.__name__]
    if len(found) != 1:
        raise ConfigError(f"agent {name!r}: expected one TradingAgent class in {module.__name__}, found "
                          f"{len(found)}; name it as {module_name}:ClassName")
    return found[0]


def _import(module_name: str, base: Path | None) -> Any:
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file() and base is not None and (base / path).is_file():
            path = base / path
        if not path.is_file():
            raise ConfigError(f"agent module {module_name} does not exist")
        spec = importlib.util.spec_from_file_location(f"backtest_agent_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import {module_name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    candidates = [module_name] if "." in module_name else [f"agents.{module_name}", module_name]
    for candidate in candidates:
        try:
            return importlib.import_module(candidate)
        except ModuleNotFoundError as e:
            if e.name is not None and not candidate.startswith(e.name):
                raise  # the module exists but one of its own imports is missing
    raise ConfigError(f"agent {module_name!r}: no module agents.{module_name} or {module_name}")
