"""Historical quotes for a backtest: files streamed row by row and merged in time order.

Every format the hub replays is read by the hub's own readers
(:func:`hub.marketdata.sources.replay.read_events`): the normalized CSV
(``ts_ns,symbol,bid,bid_size,ask,ask_size``, e.g. tests/data/), ``--record``
recordings, and what ``python -m hub.history`` writes (either of those). Several
files are merged with a heap on ``ts_ns``; equal timestamps keep file order, then
row order, so every run sees the same sequence. Nothing is loaded whole: memory
stays flat in the number of quotes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path

from core.codec import is_clean_row, quote_from_row
from core.errors import DecodeError
from hub.marketdata.recording import count_recorded_quotes, is_recording, read_recording
from hub.marketdata.sources.replay import Event, read_csv

__all__ = ["Event", "HistoricalSource"]


class HistoricalSource:
    """Quote files (or any iterables of ``(symbol, ts_ns, bid, bid_size, ask, ask_size)``) in time order."""

    def __init__(self, *files: str | Path, streams: Sequence[Iterable[Event]] = ()) -> None:
        self.files = tuple(Path(f) for f in files)
        self._streams = tuple(streams)
        self.skipped: list[int] = []

    def __repr__(self) -> str:
        return f"HistoricalSource({', '.join(str(f) for f in self.files)})"

    def __iter__(self) -> Iterator[Event]:
        streams: list[Iterable[Event]] = [read_file(f, self.skipped) for f in self.files]
        streams += self._streams
        if len(streams) == 1:
            return iter(streams[0])
        return heapq.merge(*streams, key=itemgetter(1))

    def count(self) -> int | None:
        """Quotes in the files, counted cheaply (for the progress bar); None when a stream is not a file."""
        if self._streams:
            return None
        total = 0
        for path in self.files:
            if is_recording(path):
                total += count_recorded_quotes(path)  # not decoded: the run reads it again
            else:
                with open(path, "rb") as file:
                    total += sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b"")) - 1
        return total


def read_file(path: Path, skipped: list[int]) -> Iterator[Event]:
    """The hub's replay formats; recordings through a lean row check (the replay reader builds a Quote per row)."""
    if not is_recording(path):
        yield from read_csv(path, skipped)
        return
    for symbol, rows in read_recording(path):
        for row in rows:
            # the codec's own fast check (types and bounds, as the hub writes rows), then its full decode
            if type(row) is list and len(row) == 6 and is_clean_row(row):
                ts_ns, _, bid, bid_size, ask, ask_size = row
                yield symbol, ts_ns, bid, bid_size, ask, ask_size
                continue
            try:
                quote = quote_from_row(symbol, row)
            except (ValueError, TypeError, DecodeError):
                skipped.append(0)
                continue
            yield symbol, quote.ts_event_ns, quote.bid, quote.bid_size, quote.ask, quote.ask_size
