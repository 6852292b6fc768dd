"""Agents: the TradingAgent base class and the built-in agents.

Names are imported lazily so ``python -m agents.spotter`` does not import its
own module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TradingAgent": "agents.base",
    "CacheUpdate": "agents.events",
    "Tick": "agents.events",
    "Quote": "core.codec",
    "Spotter": "agents.spotter",
    "SpreadCalculator": "agents.spread_calculator",
    "Volatility": "agents.volatility",
    "QuoteManager": "agents.quote_manager",
    "DeltaHedger": "agents.delta_hedger",
    "PnL": "agents.pnl",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
