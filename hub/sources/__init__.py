"""Market-data sources the hub can run: name -> (settings class, factory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sources.base import Source
from hub.sources.sim import SimSettings, SimSource

SourceFactory = Callable[[tuple[str, ...], Any], Source]

#: ``--source`` name -> (its settings dataclass, a factory taking (symbols, settings)).
SOURCES: dict[str, tuple[type, SourceFactory]] = {
    "sim": (SimSettings, SimSource),
}

__all__ = ["SOURCES", "Source", "SourceFactory"]
