"""The dashboard's settings, and its control token (never a flag: a file or the environment)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.settings import option

#: The environment variable that may hold the control token.
TOKEN_ENV = "TF_DASHBOARD_TOKEN"
#: A token shorter than this is refused: it would be guessable.
MIN_TOKEN_CHARS = 16
#: The reader's fastest pace; it bounds every chart at 10 updates/s.
MIN_POLL_NS = 100_000_000


@dataclass(frozen=True, kw_only=True)
class DashboardSettings:
    host: str = option("127.0.0.1", help="address to serve on; anything but loopback exposes the page")
    port: int = option(8050, help="TCP port to serve on")
    control_token_file: str = option("", help=f"file holding the control token (or env {TOKEN_ENV}); "
                                              "without a token the page is read-only")
    poll_ns: int = option("100ms", key="poll", duration=True,
                          help="how often quotes, cache, orders and the kill switch are read (>= 100ms)")
    processes_poll_ns: int = option("1s", key="processes_poll", duration=True,
                                    help="how often heartbeats and positions are read")
    history_ns: int = option("5m", key="history", duration=True, help="chart history kept in memory")
    max_symbols: int = option(50, help="most symbols followed at once (streamed ones first)")
    stale_after_ns: int = option("3s", key="stale_after", duration=True,
                                 help="a heartbeat older than this is shown as stale")

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"setting 'port': {self.port} is not a TCP port (1-65535)")
        if self.poll_ns < MIN_POLL_NS:
            raise ConfigError("setting 'poll' must be at least 100ms: charts update at most 10 times a second")
        if self.processes_poll_ns < self.poll_ns:
            raise ConfigError("setting 'processes_poll' must not be shorter than 'poll'")
        if not 1 <= self.max_symbols <= 1000:
            raise ConfigError("setting 'max_symbols' must be in [1, 1000]")
        if self.history_ns < 10 * self.poll_ns:
            raise ConfigError("setting 'history' must hold at least 10 polls")

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def history_samples(self) -> int:
        return self.history_ns // self.poll_ns


class ControlToken:
    """The operator's secret; compared in constant time, never shown in a repr, log or page."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def matches(self, offered: str) -> bool:
        import hmac

        return hmac.compare_digest(self._value.encode(), offered.encode())

    def __repr__(self) -> str:
        return "ControlToken(<redacted>)"


def load_token(settings: DashboardSettings, environ: Mapping[str, str] | None = None) -> ControlToken | None:
    """The token from ``--control-token-file``, else ``$TF_DASHBOARD_TOKEN``, else None (read-only)."""
    environ = os.environ if environ is None else environ
    if settings.control_token_file:
        try:
            value = Path(settings.control_token_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"setting 'control_token_file': cannot read {settings.control_token_file}: "
                              f"{e.strerror}") from None
        source = "control_token_file"
    else:
        value, source = environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
        if not value:
            return None
    if len(value) < MIN_TOKEN_CHARS or any(c.isspace() for c in value):
        raise ConfigError(f"setting '{source}': the control token must be at least {MIN_TOKEN_CHARS} characters "
                          "without spaces; make one with: python -c 'import secrets; print(secrets.token_urlsafe())'")
    return ControlToken(value)
