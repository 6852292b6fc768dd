"""Settings of the Alpaca broker (kept apart so reading them does not import the SDK)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from core.errors import ConfigError
from core.settings import option

PAPER_URL = "https://paper-api.alpaca.markets"


@dataclass(frozen=True, kw_only=True)
class AlpacaBrokerSettings:
    api_key: str = option("", key="alpaca_api_key", env=("APCA_API_KEY_ID",), secret=True,
                          help="Alpaca API key id (alpaca broker)")
    secret_key: str = option("", key="alpaca_secret_key", env=("APCA_API_SECRET_KEY",), secret=True,
                             help="Alpaca API secret key (alpaca broker)")
    base_url: str = option(PAPER_URL, key="alpaca_base_url", env=("APCA_API_BASE_URL",),
                           help="Alpaca trading REST base URL; paper by default")
    stream_url: str = option("", key="alpaca_stream_url",
                             help="trade_updates websocket URL (default: <base url>/stream over wss)")
    requests_per_min: int = option(190, key="alpaca_requests_per_min",
                                   help="REST requests per minute the broker paces itself to (Alpaca allows 200)")
    request_timeout_s: float = option(10.0, key="alpaca_request_timeout",
                                      help="seconds before a REST request counts as failed")

    def __post_init__(self) -> None:
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"setting 'alpaca_base_url': {self.base_url!r} is not an http(s) URL; "
                              f"use e.g. {PAPER_URL}")
        if not 1 <= self.requests_per_min <= 10_000:
            raise ConfigError("setting 'alpaca_requests_per_min' must be in [1, 10000]")

    def require_keys(self) -> None:
        if not self.api_key or not self.secret_key:
            raise ConfigError("settings 'alpaca_api_key' and 'alpaca_secret_key' are required for --broker alpaca; "
                              "set APCA_API_KEY_ID and APCA_API_SECRET_KEY")

    @property
    def trade_stream_url(self) -> str:
        if self.stream_url:
            return self.stream_url
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/stream", "", ""))
