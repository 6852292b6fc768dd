"""Option deltas from Alpaca's option snapshots (alpaca-py ``OptionHistoricalDataClient``).

Used by the DeltaHedger only when it holds option positions and API keys are
configured. The SDK is synchronous, so calls run in a worker thread; results
are reused for ``max_age_ns``; a failure is logged (rate-limited) and the caller
falls back to Black-Scholes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import warnings
from collections.abc import Sequence
from typing import Any

from core.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

MAX_RETRY_S = 60.0


class AlpacaOptionDeltas:
    """Latest greeks.delta per OCC symbol, cached."""

    def __init__(self, api_key: str, secret_key: str, *, url_override: str = "", max_age_ns: int = 30_000_000_000,
                 client: Any = None) -> None:
        self._api_key = api_key
        self._secret_key = secret_key
        self._url_override = url_override or None
        self._max_age_ns = max_age_ns
        self._client = client
        self._cache: dict[str, tuple[float, int]] = {}
        self._errors = RateLimitedLog(log, interval_s=60.0)
        self._failures = 0
        self._retry_at_ns = 0
        self.requests = 0

    def __repr__(self) -> str:
        return f"AlpacaOptionDeltas(url_override={self._url_override!r})"  # never the keys

    def _sdk(self) -> Any:
        """The SDK client, imported on first use (most deployments hold no options)."""
        if self._client is None:
            with warnings.catch_warnings():
                # alpaca-py imports websockets.legacy, which websockets >= 14 flags as deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                from alpaca.data.historical.option import OptionHistoricalDataClient

            self._client = OptionHistoricalDataClient(api_key=self._api_key, secret_key=self._secret_key,
                                                      url_override=self._url_override)
        return self._client

    async def deltas(self, symbols: Sequence[str]) -> dict[str, float]:
        """Delta per symbol for those Alpaca has greeks for (possibly none)."""
        now_ns = time.monotonic_ns()
        stale = [s for s in symbols if s not in self._cache or now_ns - self._cache[s][1] > self._max_age_ns]
        if stale and now_ns >= self._retry_at_ns:
            await self._refresh(stale, now_ns)
        return {s: self._cache[s][0] for s in symbols
                if s in self._cache and now_ns - self._cache[s][1] <= self._max_age_ns}

    async def _refresh(self, symbols: list[str], now_ns: int) -> None:
        try:
            fresh = await asyncio.to_thread(self._fetch, self._sdk(), symbols)
        except Exception as e:  # the SDK raises requests, pydantic and API errors alike
            self._failures += 1
            backoff_s = min(2.0 ** self._failures, MAX_RETRY_S) * (0.5 + random.random() / 2)
            self._retry_at_ns = now_ns + int(backoff_s * 1e9)
            self._errors.warning("snapshot", "option snapshots for %s failed (%s: %s); using Black-Scholes, "
                                 "retrying in %.0fs", ",".join(symbols), type(e).__name__, e, backoff_s)
            return
        self._failures = 0
        for symbol, delta in fresh.items():
            self._cache[symbol] = (delta, now_ns)

    def _fetch(self, client: Any, symbols: list[str]) -> dict[str, float]:
        from alpaca.data.requests import OptionSnapshotRequest  # already imported by _sdk()

        self.requests += 1
        snapshots = client.get_option_snapshot(OptionSnapshotRequest(symbol_or_symbols=symbols))
        deltas: dict[str, float] = {}
        for symbol, snapshot in snapshots.items():
            greeks = getattr(snapshot, "greeks", None)
            if greeks is not None and greeks.delta is not None:
                deltas[symbol] = float(greeks.delta)
        return deltas
