"""``--source replay --file FILE --speed 1x|10x|max``: put recorded quotes back onto the bus.

Reads a ``--record`` file (see hub.marketdata.recording) or the normalized CSV
``ts_ns,symbol,bid,bid_size,ask,ask_size`` (e.g. tests/data/). Each quote keeps
its original timestamp as ``ts_event_ns``; ``ts_recv_ns`` is the replaying
hub's clock. Pacing follows the gaps between event timestamps divided by the
speed (``max``: no pauses); quotes go out in file order, so every replay of a
file publishes the same sequence. Under ``max`` the source waits for the
publisher to keep up, so nothing is dropped. Every symbol in the file is
published, whatever ``--symbols`` says.

At the end of the file the hub either keeps running (``--replay-end stay``,
so heartbeats and hashes stay up) or stops cleanly with exit code 0
(``--replay-end exit``).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.codec import quote_from_row
from core.errors import ConfigError, DecodeError
from core.settings import option
from hub.marketdata.publisher import Publisher
from hub.marketdata.recording import is_recording, read_recording

log = logging.getLogger(__name__)

CSV_HEADER = ["ts_ns", "symbol", "bid", "bid_size", "ask", "ask_size"]
#: Quotes handed to the publisher but not yet flushed, at most (below its per-symbol drop limit).
MAX_UNFLUSHED = 1_000
YIELD_EVERY = 256

Event = tuple[str, int, float, float, float, float]  # symbol, ts_event_ns, bid, bid_size, ask, ask_size


def parse_speed(text: str) -> float:
    """``'10x'`` -> 10.0; ``'max'`` -> 0.0 (no pacing)."""
    if text.strip().lower() == "max":
        return 0.0
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*x?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"setting 'speed': {text!r} is not a speed; use 1x, 10x, 0.5x or max")
    return float(match.group(1))


@dataclass(frozen=True, kw_only=True)
class ReplaySettings:
    file: str = option("", help="recording (--record) or CSV (ts_ns,symbol,bid,bid_size,ask,ask_size) to replay")
    speed: str = option("1x", help="1x = original pacing, 10x = ten times faster, max = no pauses")
    replay_end: Literal["stay", "exit"] = option("stay", help="at the end of the file: keep running, or exit 0")

    def __post_init__(self) -> None:
        parse_speed(self.speed)
        if not self.file:
            raise ConfigError("setting 'file' is missing; pass --file FILE (a recording or a CSV of quotes)")
        if not Path(self.file).is_file():
            raise ConfigError(f"setting 'file': {self.file} does not exist or is not a file")


def read_csv(path: Path, skipped: list[int]) -> Iterator[Event]:
    """Rows of the normalized CSV; bad rows are skipped and their line numbers appended to ``skipped``."""
    with open(path, newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header != CSV_HEADER:
            raise DecodeError(f"{path}: expected the header {','.join(CSV_HEADER)}, got {header}", b"")
        for line, row in enumerate(reader, start=2):
            try:
                quote = quote_from_row(row[1], [int(row[0]), 0, *(float(v) for v in row[2:6])])
            except (IndexError, ValueError, DecodeError) as e:
                skipped.append(line)
                log.warning("%s:%d: skipped a bad row (%s)", path, line, e)
                continue
            yield quote.symbol, quote.ts_event_ns, quote.bid, quote.bid_size, quote.ask, quote.ask_size


def read_events(path: Path, skipped: list[int]) -> Iterator[Event]:
    if is_recording(path):
        for symbol, rows in read_recording(path):
            for row in rows:
                try:
                    quote = quote_from_row(symbol, row)
                except (ValueError, TypeError, DecodeError):
                    skipped.append(0)
                    continue
                yield symbol, quote.ts_event_ns, quote.bid, quote.bid_size, quote.ask, quote.ask_size
    else:
        yield from read_csv(path, skipped)


class ReplaySource:
    def __init__(self, symbols: tuple[str, ...], settings: ReplaySettings) -> None:
        self._settings = settings
        self._speed = parse_speed(settings.speed)
        self.replayed = 0
        self.skipped: list[int] = []
        self._state = "idle"
        self._last_ts_ns = 0

    async def add_symbols(self, symbols: tuple[str, ...]) -> None:
        """A replay publishes what the file holds; demand does not change it."""

    async def remove_symbols(self, symbols: tuple[str, ...]) -> None:
        """As add_symbols: the file decides."""

    def status(self) -> Mapping[str, str | int | float]:
        return {"connection": self._state, "replayed": self.replayed, "skipped": len(self.skipped),
                "replay_ts_ns": self._last_ts_ns, "file": self._settings.file}

    async def run(self, publisher: Publisher, stop: asyncio.Event) -> None:
        self._state = "replaying"
        await self._replay(publisher, stop)
        if stop.is_set():
            return
        self._state = "finished"
        log.info("replayed %d quotes from %s (%d skipped)", self.replayed, self._settings.file, len(self.skipped))
        if self._settings.replay_end == "exit":
            await self._drain(publisher, 0)
            stop.set()
        else:
            await stop.wait()

    async def _replay(self, publisher: Publisher, stop: asyncio.Event) -> None:
        first_ts_ns, started_ns = -1, time.monotonic_ns()
        add = publisher.add_quote
        for symbol, ts_ns, bid, bid_size, ask, ask_size in read_events(Path(self._settings.file), self.skipped):
            if first_ts_ns < 0:
                first_ts_ns = ts_ns
            if self._speed:
                due_ns = started_ns + int((ts_ns - first_ts_ns) / self._speed)
                wait_ns = due_ns - time.monotonic_ns()
                if wait_ns > 0:
                    await asyncio.sleep(wait_ns / 1e9)
            add(symbol, ts_ns, bid, bid_size, ask, ask_size, time.time_ns())
            self.replayed += 1
            self._last_ts_ns = ts_ns
            if self.replayed % YIELD_EVERY == 0:
                await self._drain(publisher, MAX_UNFLUSHED)
            if stop.is_set():
                return

    async def _drain(self, publisher: Publisher, allowed: int) -> None:
        """Let the publisher flush until at most ``allowed`` of our quotes are unflushed."""
        await asyncio.sleep(0)
        while self.replayed - publisher.stats.quotes - publisher.stats.dropped > allowed:
            await asyncio.sleep(0.001)
