"""Settings of ``--source alpaca`` (kept apart from the adapter so the hub imports alpaca-py only when used)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from core.settings import option

STOCK_STREAM_URL = "wss://stream.data.alpaca.markets/v2/{feed}"
CRYPTO_STREAM_URL = "wss://stream.data.alpaca.markets/v1beta3/crypto/{feed}"


@dataclass(frozen=True, kw_only=True)
class AlpacaSettings:
    api_key: str = option("", help="Alpaca API key id (prefer the env var)", env=("APCA_API_KEY_ID",), secret=True)
    api_secret: str = option("", help="Alpaca API secret key (prefer the env var)", env=("APCA_API_SECRET_KEY",),
                             secret=True)
    asset_class: Literal["stocks", "crypto"] = option("stocks", help="stocks or crypto")
    feed: Literal["iex", "sip", "delayed_sip"] = option(
        "iex", help="stock feed: iex (free), sip (paid, all exchanges) or delayed_sip")
    crypto_feed: str = option("us", help="crypto feed (location), e.g. us")
    data_url: str = option("", env=("APCA_DATA_STREAM_URL",),
                           help="websocket URL overriding the one derived from asset class and feed, "
                                "e.g. ws://127.0.0.1:8765/v2/iex")
    connect_grace_ns: int = option("120s", key="connect_grace", duration=True,
                                   help="how long to keep retrying a 406 'connection limit exceeded' before "
                                        "giving up (a stale connection can hold the slot ~90s)")
    stall_timeout_ns: int = option("60s", key="stall_timeout", duration=True,
                                   help="reconnect when no message arrives for this long (0 disables)")
    stall_check: Literal["market_hours", "always"] = option(
        "market_hours", help="when the stall timeout applies to stocks: US market hours only, or always "
                             "(crypto trades around the clock: always)")
    backoff_min_ns: int = option("1s", key="backoff_min", duration=True, help="first reconnect delay")
    backoff_max_ns: int = option("30s", key="backoff_max", duration=True, help="longest reconnect delay")

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_secret:
            raise ConfigError("settings 'api_key'/'api_secret' are missing; export APCA_API_KEY_ID and "
                              "APCA_API_SECRET_KEY (paper keys work for market data)")
        if self.data_url and not self.data_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"setting 'data_url': {self.data_url!r} is not a ws:// or wss:// URL")
        if not 0 < self.backoff_min_ns <= self.backoff_max_ns:
            raise ConfigError("settings 'backoff_min'/'backoff_max' must satisfy 0 < backoff_min <= backoff_max")

    @property
    def stream_url(self) -> str:
        if self.data_url:
            return self.data_url
        if self.asset_class == "crypto":
            return CRYPTO_STREAM_URL.format(feed=self.crypto_feed)
        return STOCK_STREAM_URL.format(feed=self.feed)


def us_market_open(now: dt.datetime | None = None) -> bool:
    """Regular US equity session, Mon-Fri 09:30-16:00 New York time (holidays not known)."""
    try:
        ny = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo("America/New_York"))
    except ZoneInfoNotFoundError:
        return True
    return ny.weekday() < 5 and dt.time(9, 30) <= ny.time() < dt.time(16, 0)
