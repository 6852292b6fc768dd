"""An agent's validated settings: the seed's config dict, made strict."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from agents.membership import parse_shard
from core.errors import ConfigError
from core.settings import build, check_name_setting, option, option_specs

AgentType = Literal["event_driven", "periodic"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentSettings:
    """Settings every agent has. Agent-specific ones live in the agent's ``Params``."""

    instruments: tuple[str, ...] = option((), help="comma-separated symbols, e.g. AAPL,MSFT")
    throttle_ns: int = option("500ms", key="throttle", duration=True,
                              help="event-driven: min time between runs per instrument; periodic: the period")
    agent_type: AgentType = option("event_driven", help="event_driven or periodic")
    name: str = option("", help="unique name of this agent (heartbeat tf:agent:<name>); default: its module")
    on_quotes: bool = option(True, help="run on market-data quotes for the instruments")
    on_cache: tuple[str, ...] = option((), symbols=False,
                                       help="cache fields whose updates trigger a run, e.g. fair_price,spread")
    max_quote_age_ns: int = option("0s", key="max_quote_age", duration=True,
                                   help="skip quotes older than this at run time (0: never)")
    instruments_from: str = option("", help="serve the symbols in this Redis set instead of --instruments, "
                                            "re-read while running, e.g. tf:symbols:wanted")
    shard: str = option("", help="K/N: serve static shard K of N of the instruments; auto: share them "
                                 "with the live processes of this agent name (leases in Redis)")
    shard_lease_ns: int = option("2s", key="shard_lease", duration=True,
                                 help="--shard auto: a dead member's symbols move after at most 5/4 of this")

    def __post_init__(self) -> None:
        if self.name:
            check_name_setting(self.name, "name")
        if self.agent_type == "periodic" and self.throttle_ns <= 0:
            raise ConfigError("setting 'throttle': a periodic agent needs a period > 0, e.g. 1s")
        parse_shard(self.shard)  # raises ConfigError for anything but '', 'auto' or K/N
        if self.shard_lease_ns < 100_000_000:
            raise ConfigError("setting 'shard_lease': must be at least 100ms, e.g. 2s")
        if self.agent_type == "event_driven" and not self.instruments and not (self.shard or self.instruments_from):
            raise ConfigError("setting 'instruments' is empty: an event-driven agent needs symbols, "
                              "e.g. --instruments AAPL,MSFT (or --instruments-from KEY)")


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For agents without settings of their own."""


def split_config(config: Mapping[str, Any], params_cls: type, defaults: Mapping[str, Any]
                 ) -> tuple[AgentSettings, Any]:
    """Validate a seed-style config dict into (AgentSettings, Params); unknown keys are errors."""
    values = {**defaults, **config}
    common = {spec.key for spec in option_specs(AgentSettings)}
    own = {spec.key for spec in option_specs(params_cls)}
    unknown = sorted(set(values) - common - own)
    if unknown:
        raise ConfigError(f"unknown agent setting '{unknown[0]}'; known settings: {', '.join(sorted(common | own))}")
    params: Any = build(params_cls, {k: v for k, v in values.items() if k in own})
    settings = build(AgentSettings, {k: v for k, v in values.items() if k in common})
    return settings, params
