"""Market-data sources the hub can run: name -> (settings class, factory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.marketdata.sources.alpaca_settings import AlpacaSettings
from hub.marketdata.sources.base import Source
from hub.marketdata.sources.replay import ReplaySettings, ReplaySource
from hub.marketdata.sources.sim import SimSettings, SimSource

SourceFactory = Callable[[tuple[str, ...], Any], Source]


def _alpaca(symbols: tuple[str, ...], settings: AlpacaSettings) -> Source:
    """Imported on use: alpaca-py is large and only this source needs it."""
    from hub.marketdata.sources.alpaca import AlpacaSource

    return AlpacaSource(symbols, settings)


#: ``--source`` name -> (its settings dataclass, a factory taking (symbols, settings)).
SOURCES: dict[str, tuple[type, SourceFactory]] = {
    "sim": (SimSettings, SimSource),
    "alpaca": (AlpacaSettings, _alpaca),
    "replay": (ReplaySettings, ReplaySource),
}

__all__ = ["SOURCES", "Source", "SourceFactory"]
