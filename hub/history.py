"""``python -m hub.history``: download historical Alpaca quotes into a replayable file.

    APCA_API_KEY_ID=... APCA_API_SECRET_KEY=... python -m hub.history --symbols AAPL,MSFT \\
        --start 2024-07-01T13:30:00Z --end 2024-07-01T20:00:00Z --out aapl.tfrec
    python -m hub --source replay --file aapl.tfrec --speed 10x

Uses alpaca-py's ``StockHistoricalDataClient`` (raw data, so Alpaca's
nanosecond timestamps survive), which follows ``next_page_token`` through
every page. The range is fetched in windows of ``--chunk`` so memory stays
bounded by one window, and written in time order as a ``--record`` file
(default) or the normalized CSV. ``--rest-url`` (env ``APCA_API_DATA_URL``)
points it at any Alpaca-compatible REST endpoint.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from core.errors import AuthenticationError, ConfigError, SourceError
from core.exitcodes import ExitCode
from core.process import config_failure, configure_logging, report_failure
from core.settings import build, format_duration_ns, gather, option
from hub.marketdata.recording import FORMAT, QUOTE_RECORD, VERSION

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # alpaca-py imports websockets.legacy
    from alpaca.common.exceptions import APIError
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.data.requests import StockQuotesRequest

log = logging.getLogger(__name__)

PROG = "python -m hub.history"
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?$")
Row = tuple[int, str, float, float, float, float]  # ts_ns, symbol, bid, bid_size, ask, ask_size


def parse_time_ns(text: str) -> int:
    """RFC 3339 (``2024-07-01T13:30:00.123456789Z``) -> ns since the epoch, all nine digits kept."""
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time like 2024-07-01T13:30:00Z")
    head, fraction, zone = match.groups()
    base = dt.datetime.fromisoformat(head + (zone if zone and zone != "Z" else "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


@dataclass(frozen=True, kw_only=True)
class HistorySettings:
    symbols: tuple[str, ...] = option(help="stock symbols, e.g. AAPL,MSFT")
    start: str = option(help="first time, RFC 3339, e.g. 2024-07-01T13:30:00Z")
    end: str = option(help="end time (exclusive), RFC 3339")
    out: str = option(help="file to write")
    format: Literal["record", "csv"] = option("record", help="record (replay format) or csv")
    feed: Literal["iex", "sip"] = option("iex", help="iex or sip (needs a subscription)")
    chunk_ns: int = option("1h", key="chunk", duration=True, help="fetch this much time per request series")
    api_key: str = option("", help="Alpaca API key id (prefer the env var)", env=("APCA_API_KEY_ID",), secret=True)
    api_secret: str = option("", help="Alpaca API secret (prefer the env var)", env=("APCA_API_SECRET_KEY",),
                             secret=True)
    rest_url: str = option("", env=("APCA_API_DATA_URL",), help="REST base URL override, e.g. http://127.0.0.1:8080")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = option("INFO", help="DEBUG, INFO, WARNING or ERROR")

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("setting 'symbols' is empty; pass --symbols AAPL,MSFT")
        if not self.api_key or not self.api_secret:
            raise ConfigError("settings 'api_key'/'api_secret' are missing; export APCA_API_KEY_ID and "
                              "APCA_API_SECRET_KEY")
        for key in ("start", "end"):
            try:
                parse_time_ns(getattr(self, key))
            except ValueError as e:
                raise ConfigError(f"setting '{key}': {e}") from None
        if parse_time_ns(self.end) <= parse_time_ns(self.start):
            raise ConfigError("setting 'end' must be after 'start'")
        if self.chunk_ns <= 0:
            raise ConfigError("setting 'chunk' must be > 0, e.g. 1h")


def _to_datetime(ts_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, dt.UTC).replace(microsecond=ts_ns % 10**9 // 1000)


def fetch(settings: HistorySettings, client: StockHistoricalDataClient) -> Iterator[Row]:
    """Every quote in [start, end), window by window, in time order."""
    start_ns, end_ns = parse_time_ns(settings.start), parse_time_ns(settings.end)
    feed = DataFeed.SIP if settings.feed == "sip" else DataFeed.IEX
    for window_ns in range(start_ns, end_ns, settings.chunk_ns):
        request = StockQuotesRequest(symbol_or_symbols=list(settings.symbols), start=_to_datetime(window_ns),
                                     end=_to_datetime(min(window_ns + settings.chunk_ns, end_ns)), feed=feed)
        try:
            raw: dict[str, list[dict[str, Any]]] = client.get_stock_quotes(request)  # type: ignore[assignment]
        except APIError as e:
            if e.status_code in (401, 403):
                raise AuthenticationError(f"Alpaca refused the API keys ({e.status_code}); check "
                                          "APCA_API_KEY_ID / APCA_API_SECRET_KEY") from None
            raise SourceError(f"Alpaca REST error {e.status_code}: {e}") from None
        rows = [_row(symbol, q) for symbol, quotes in raw.items() for q in quotes]
        rows.sort()
        log.info("%s: %d quotes", _to_datetime(window_ns).isoformat(), len(rows))
        yield from rows


def _row(symbol: str, quote: dict[str, Any]) -> Row:
    return (parse_time_ns(quote["t"]), symbol, float(quote["bp"]), float(quote["bs"]), float(quote["ap"]),
            float(quote["as"]))


def write_record(rows: Iterator[Row], path: str) -> int:
    """The --record format: consecutive quotes of one symbol share a record."""
    pack, count = msgpack.Packer(use_bin_type=True).pack, 0
    with open(path, "wb") as file:
        file.write(pack({"format": FORMAT, "version": VERSION, "source": "alpaca-history",
                         "started_ns": time.time_ns()}))
        symbol, batch = "", list[tuple[int, int, float, float, float, float]]()
        for ts_ns, row_symbol, bid, bid_size, ask, ask_size in rows:
            if row_symbol != symbol and batch:
                file.write(pack((QUOTE_RECORD, symbol, batch)))
                batch = []
            symbol = row_symbol
            batch.append((ts_ns, 0, bid, bid_size, ask, ask_size))
            count += 1
        if batch:
            file.write(pack((QUOTE_RECORD, symbol, batch)))
    return count


def write_csv(rows: Iterator[Row], path: str) -> int:
    count = 0
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["ts_ns", "symbol", "bid", "bid_size", "ask", "ask_size"])
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = build(HistorySettings, gather(argv, [HistorySettings], prog=PROG,
                                                 description="Download historical Alpaca quotes for replay."))
    except ConfigError as e:
        return config_failure(PROG, e)
    configure_logging(settings.log_level)
    client = StockHistoricalDataClient(settings.api_key, settings.api_secret, raw_data=True,
                                       url_override=settings.rest_url or None)
    writer = write_csv if settings.format == "csv" else write_record
    partial = settings.out + ".part"  # renamed only when complete, so a failed download leaves no half file
    try:
        count = writer(fetch(settings, client), partial)
        os.replace(partial, settings.out)
    except (SourceError, OSError) as e:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        return report_failure(PROG, e)
    log.info("wrote %d quotes for %s to %s (fetched in %s windows)", count, ",".join(settings.symbols),
             settings.out, format_duration_ns(settings.chunk_ns))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
