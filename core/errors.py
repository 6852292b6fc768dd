"""The framework's exception tree.

::

    TradingFrameworkError
    ├── ConfigError                    bad setting: fix and restart (exit 78, not restarted)
    ├── DuplicateInstanceError         a live process already has this name (exit 76)
    ├── RedisUnavailableError          Redis unreachable or lost (exit 69, restarted)
    ├── DecodeError                    malformed message; keeps the raw bytes
    ├── SourceError                    a market-data source failed
    │   ├── AuthenticationError        bad keys (Alpaca 402)          (exit 77)
    │   ├── ConnectionLimitExceededError  Alpaca 406 after the grace window (exit 75)
    │   ├── InsufficientSubscriptionError Alpaca 409               (exit 77)
    │   └── SymbolLimitExceededError   Alpaca 405                     (exit 77)
    └── OrderError                     an order intent could not be handled
        └── OrderRejected              rejected by risk or broker, with a reason
"""

from __future__ import annotations


class TradingFrameworkError(Exception):
    """Base of every error the framework raises on purpose."""


class ConfigError(TradingFrameworkError):
    """A setting is missing, unknown or invalid. The message names it and the fix."""


class DuplicateInstanceError(TradingFrameworkError):
    """Another live process already runs under this name."""


class RedisUnavailableError(TradingFrameworkError):
    """Redis could not be reached, or the connection was lost."""


class DecodeError(TradingFrameworkError):
    """A message could not be decoded. ``raw`` keeps the bytes for inspection."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(f"{reason} ({len(raw)} bytes: {raw[:40]!r})")
        self.reason = reason
        self.raw = raw


class SourceError(TradingFrameworkError):
    """A market-data source failed."""


class AuthenticationError(SourceError):
    """The data provider refused the credentials."""


class ConnectionLimitExceededError(SourceError):
    """The provider's connection limit stayed exceeded past the grace window."""


class InsufficientSubscriptionError(SourceError):
    """The account's market-data subscription does not cover the request."""


class SymbolLimitExceededError(SourceError):
    """More symbols were requested than the account may subscribe to."""


class OrderError(TradingFrameworkError):
    """An order intent could not be handled."""


class OrderRejected(OrderError):
    """An order was rejected by pre-trade risk or by the broker."""

    def __init__(self, client_order_id: str, reason: str) -> None:
        super().__init__(f"order {client_order_id} rejected: {reason}")
        self.client_order_id = client_order_id
        self.reason = reason
