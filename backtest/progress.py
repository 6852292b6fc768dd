"""A one-line progress bar on stderr (quotes done / total, quotes/s, ETA), only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Runs shorter than this never show a bar.
QUIET_FOR_S = 2.0


class ProgressBar:
    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = self.stream.isatty()
        self._started = time.monotonic()
        self._shown = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        if elapsed < QUIET_FOR_S:
            return
        rate = done / elapsed if elapsed else 0.0
        if self.total:
            fraction = min(done / self.total, 1.0)
            eta = (self.total - done) / rate if rate else 0.0
            bar = "#" * int(fraction * 30)
            line = f"\r[{bar:<30}] {done:,}/{self.total:,} quotes  {rate:,.0f}/s  ETA {eta:,.0f}s "
        else:
            line = f"\r{done:,} quotes  {rate:,.0f}/s "
        self.stream.write(line)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
