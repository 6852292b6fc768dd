"""Alpaca's stream error frames, and which of our errors each one becomes.

Codes from Alpaca's market-data stream documentation: 400 invalid syntax,
401 not authenticated, 402 auth failed, 403 already authenticated, 404 auth
timeout, 405 symbol limit exceeded, 406 connection limit exceeded, 407 slow
client, 409 insufficient subscription, 410 invalid subscribe action, 500
internal error.
"""

from __future__ import annotations

from typing import Any

from core.errors import (
    AuthenticationError,
    InsufficientSubscriptionError,
    SourceError,
    SymbolLimitExceededError,
)

AUTH_FAILED = 402
SYMBOL_LIMIT = 405
CONNECTION_LIMIT = 406
SLOW_CLIENT = 407
INSUFFICIENT_SUBSCRIPTION = 409
#: Error frames about one request; the connection stays usable.
HARMLESS_CODES = (400, 410)


class AlpacaStreamError(Exception):
    """An ``{"T": "error", "code": ..., "msg": ...}`` frame from Alpaca."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"Alpaca error {code}: {message}")
        self.code = code
        self.message = message


class StallError(Exception):
    """No message (data or control) for the stall timeout."""


def error_from_frame(frame: Any) -> AlpacaStreamError:
    code = frame.get("code", 0) if isinstance(frame, dict) else 0
    message = frame.get("msg", "") if isinstance(frame, dict) else repr(frame)
    return AlpacaStreamError(int(code) if isinstance(code, int) else 0, str(message))


def provider_error(error: AlpacaStreamError, url: str, symbol_count: int) -> SourceError | None:
    """The error a restart cannot fix, or None when reconnecting may help."""
    if error.code == AUTH_FAILED:
        return AuthenticationError(f"Alpaca refused the API keys at {url} (402 auth failed); check "
                                   "APCA_API_KEY_ID / APCA_API_SECRET_KEY")
    if error.code == INSUFFICIENT_SUBSCRIPTION:
        return InsufficientSubscriptionError(f"{url}: 409 insufficient subscription; the account's market "
                                             "data plan does not cover this feed (try --feed iex)")
    if error.code == SYMBOL_LIMIT:
        return SymbolLimitExceededError(f"{url}: 405 symbol limit exceeded subscribing {symbol_count} "
                                        "symbols; stream fewer symbols")
    return None
