"""The hub: market data onto Redis, and the in-process TradingHub of the seed API."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"TradingHub": "hub.trading_hub", "Keys": "hub.keys", "Quote": "hub.codec"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
