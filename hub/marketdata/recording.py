"""``--record FILE``: every quote the hub publishes, with both timestamps, in a compact msgpack file.

File format (a plain concatenation of msgpack objects, readable with
``msgpack.Unpacker``):

1. a header map: ``{"format": "tf-record", "version": 1, "source": "alpaca", "started_ns": ...}``;
2. then one array per symbol and publisher flush, in publish order:
   ``["q", symbol, [[ts_event_ns, ts_recv_ns, bid, bid_size, ask, ask_size], ...]]``
   (the same rows as the wire format, see core.codec).

The recorder hangs off ``Publisher.listeners``, so it sees exactly what went
onto the bus, for any source. Writes go through a buffered file and are
flushed every ``FLUSH_INTERVAL_S`` and on close; a file cut short by a crash
still replays up to its last complete record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from core.codec import QuoteRow
from core.errors import ConfigError, DecodeError

log = logging.getLogger(__name__)

FORMAT = "tf-record"
VERSION = 1
QUOTE_RECORD = "q"
FLUSH_INTERVAL_S = 1.0


class Recorder:
    """A ``Publisher`` listener writing each flushed batch to ``path``."""

    def __init__(self, path: str, source: str) -> None:
        try:
            self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise ConfigError(f"setting 'record': cannot write {path}: {e.strerror}") from None
        self.path = path
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._file.write(self._pack({"format": FORMAT, "version": VERSION, "source": source,
                                     "started_ns": time.time_ns()}))
        self._flushed_s = time.monotonic()
        self.quotes = 0

    def __call__(self, batch: dict[str, list[QuoteRow]]) -> None:
        write, pack = self._file.write, self._pack
        for symbol, rows in batch.items():
            write(pack((QUOTE_RECORD, symbol, rows)))
            self.quotes += len(rows)
        if time.monotonic() - self._flushed_s >= FLUSH_INTERVAL_S:
            self._file.flush()
            self._flushed_s = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()
            log.info("recorded %d quotes to %s", self.quotes, self.path)


def _check_header(path: Path, unpacker: msgpack.Unpacker) -> None:
    header = next(unpacker, None)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DecodeError(f"{path} is not a tf-record file", b"")
    if header.get("version") != VERSION:
        raise DecodeError(f"{path}: unsupported tf-record version {header.get('version')!r}", b"")


def count_recorded_quotes(path: Path) -> int:
    """The rows of a recording's quote records, counted without building them (msgpack's skip), for a
    progress total. It stops at a damaged record or one of another shape, which :func:`read_recording`
    skips and reads past: on such a file the total falls short (and progress ends above 100 %)."""
    total = 0
    with open(path, "rb") as file:
        unpacker = msgpack.Unpacker(file, raw=False, use_list=True)
        _check_header(path, unpacker)
        try:
            while unpacker.read_array_header() == 3:
                kind = unpacker.unpack()
                unpacker.skip()  # the symbol
                if kind != QUOTE_RECORD:
                    unpacker.skip()
                    continue
                rows = unpacker.read_array_header()
                for _ in range(rows):
                    unpacker.skip()
                total += rows
        except (ValueError, msgpack.UnpackException):  # the end, a damaged tail or an unusual record
            pass
    return total


def read_recording(path: Path) -> Iterator[tuple[str, list[Any]]]:
    """(symbol, rows) per record; stops quietly at a truncated tail, raises DecodeError on a foreign file."""
    with open(path, "rb") as file:
        unpacker = msgpack.Unpacker(file, raw=False, use_list=True)
        _check_header(path, unpacker)
        try:
            for record in unpacker:
                if isinstance(record, list) and len(record) == 3 and record[0] == QUOTE_RECORD:
                    yield record[1], record[2]
                else:
                    log.warning("%s: skipped an unknown record", path)
        except (ValueError, msgpack.UnpackException) as e:
            log.warning("%s: stopped at a damaged or truncated record (%s)", path, e)


def is_recording(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(64)
    return FORMAT.encode() in head
