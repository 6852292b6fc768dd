"""The processes: market data (``python -m hub``), execution (``python -m hub.execution``),
the operator tools (``hub.status``, ``hub.history``) and the in-process TradingHub facade.

``from hub import TradingHub`` keeps the seed's API; names are imported lazily so that
``python -m hub`` does not pull in the agents.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"TradingHub": "hub.trading_hub", "Keys": "core.keys", "Quote": "core.codec"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
