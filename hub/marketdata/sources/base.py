"""What a market-data source is to the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from hub.marketdata.publisher import Publisher


class Source(Protocol):
    """Streams quotes into a Publisher until stopped.

    ``run`` returns when ``stop`` is set; it raises a SourceError subclass for
    failures a restart cannot fix. ``add_symbols`` and ``remove_symbols`` may be
    called at any time from the hub's loop to widen or narrow the subscription
    without reconnecting (demand that lapsed stops costing bandwidth and Alpaca's
    symbol allowance).
    """

    async def run(self, publisher: Publisher, stop: asyncio.Event) -> None: ...

    async def add_symbols(self, symbols: tuple[str, ...]) -> None: ...

    async def remove_symbols(self, symbols: tuple[str, ...]) -> None: ...

    def status(self) -> Mapping[str, str | int | float]:
        """Source-specific heartbeat fields (connection state, reconnects, ...)."""
        ...
