"""TradingAgent: the class strategy authors subclass.

Write ``async def run(self, data)``; optionally ``on_start`` / ``on_stop``.
Throttling, conflation, heartbeats and metrics are done around it by
:mod:`agents.runtime`, in its own process (``python -m agents.spotter``) or
as tasks of an in-process :class:`hub.TradingHub`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol

from agents.config import AgentSettings, NoParams, split_config
from agents.events import Event
from agents.quote_checks import EVERY_QUOTE, QuoteFilter
from cache import DataCache
from core.errors import ConfigError
from core.orders import Order, Position
from core.settings import check_name_setting

_SETTING_KWARGS = ("agent_type", "name", "instruments", "throttle", "on_quotes", "on_cache")

Number = Decimal | int | str | float


class Trading(Protocol):
    """What ``self.trading`` offers an agent: orders through the execution gateway.

    :class:`agents.trading.TradingClient` is the implementation the runtime attaches;
    tests attach in-memory fakes with the same methods.
    """

    async def submit_limit(self, symbol: str, side: Literal["buy", "sell"], qty: Number, limit_price: Number, *,
                           time_in_force: str = ..., client_order_id: str | None = ...) -> str: ...

    async def submit_market(self, symbol: str, side: Literal["buy", "sell"], qty: Number, *,
                            client_order_id: str | None = ...) -> str: ...

    async def cancel(self, client_order_id: str) -> None: ...

    async def replace(self, client_order_id: str, *, qty: Number | None = ...,
                      limit_price: Number | None = ...) -> str: ...

    async def cancel_all(self, symbol: str | None = ...) -> None: ...

    async def order(self, client_order_id: str) -> Order | None: ...

    async def open_orders(self, symbol: str | None = ...) -> list[Order]: ...

    async def position(self, symbol: str) -> Position: ...

    async def positions(self) -> dict[str, Position]: ...

    async def wait_for(self, client_order_id: str, statuses: Collection[str] = ...,
                       timeout_s: float = ...) -> Order: ...

    def on_update(self, callback: Callable[[Order], Awaitable[None] | None]) -> None: ...


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
    #: Which quotes ``run()`` can use, judged as they are conflated (agents.quote_checks): the
    #: runtime keeps the newest quote that passes, so an unusable one never hides a usable one.
    usable_quotes: ClassVar[QuoteFilter] = EVERY_QUOTE

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
        check_name_setting(self.name, "name")  # a class name can hold what a key must not
        self.log = logging.getLogger(f"agents.{self.name}")
        self._trading: Trading | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, instruments={list(self.instruments)!r})"

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.settings.instruments

    @property
    def agent_type(self) -> str:
        return self.settings.agent_type

    @property
    def trading(self) -> Trading:
        """The order client (through the execution gateway); set by the runtime."""
        if self._trading is None:
            raise RuntimeError(f"agent {self.name!r} is not running: no trading client yet")
        return self._trading

    def attach_trading(self, client: Trading) -> None:
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
