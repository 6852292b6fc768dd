"""TradingAgent: the class strategy authors subclass.

Write ``async def run(self, data)``; optionally ``on_start`` / ``on_stop``.
Throttling, conflation, heartbeats and metrics are done around it by
:mod:`agents.runtime`, in its own process (``python -m agents.spotter``) or
as tasks of an in-process :class:`hub.TradingHub`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from agents.config import AgentSettings, NoParams, split_config
from agents.events import Event
from cache import DataCache
from core.errors import ConfigError

_SETTING_KWARGS = ("agent_type", "name", "instruments", "throttle", "on_quotes", "on_cache")


class TradingAgent:
    """Base class of every agent.

    ``config`` is the seed's dict: ``instruments``, ``throttle`` (``'500ms'``)
    and ``agent_type`` (``'event_driven'`` or ``'periodic'``), plus the
    settings of the subclass's ``Params`` dataclass. Unknown keys raise
    :class:`~core.errors.ConfigError`.
    """

    #: Frozen dataclass of the agent's own settings (fields made with core.settings.option).
    Params: ClassVar[type] = NoParams
    #: Config values a subclass uses unless the user overrides them.
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None,
                 **kwargs: Any) -> None:
        merged = dict(config or {})
        for key in list(kwargs):
            if key in _SETTING_KWARGS:
                merged[key] = kwargs.pop(key)
        if kwargs:
            raise ConfigError(f"unknown agent argument '{sorted(kwargs)[0]}'; "
                              f"settings go in config (known: {', '.join(_SETTING_KWARGS)})")
        self.config: dict[str, Any] = merged
        self.settings: AgentSettings
        self.settings, self.params = split_config(merged, self.Params, self.defaults)
        self.data_cache = data_cache if data_cache is not None else DataCache()
        self.name = self.settings.name or default_agent_name(type(self))
        self.log = logging.getLogger(f"agents.{self.name}")
        self._trading: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, instruments={list(self.instruments)!r})"

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.settings.instruments

    @property
    def agent_type(self) -> str:
        return self.settings.agent_type

    @property
    def trading(self) -> Any:
        """The order client (through the execution gateway); set by the runtime."""
        if self._trading is None:
            raise RuntimeError(f"agent {self.name!r} is not running: no trading client yet")
        return self._trading

    def attach_trading(self, client: Any) -> None:
        self._trading = client

    async def on_start(self) -> None:
        """Called once before the first run."""

    async def on_stop(self) -> None:
        """Called once at shutdown, after the last run (cancel quotes here)."""

    async def run(self, data: Event) -> None:
        """Called with the latest event (a Quote, a CacheUpdate or a periodic Tick)."""
        raise NotImplementedError(f"{type(self).__name__} must implement async def run(self, data)")


def default_agent_name(cls: type) -> str:
    """``SpreadCalculator`` -> ``spread_calculator``."""
    explicit = getattr(cls, "default_name", None)
    if isinstance(explicit, str):
        return explicit
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
