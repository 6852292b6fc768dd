"""Fixed-bucket histograms that a heartbeat carries as readable fields.

A process observes durations into a :class:`Histogram`; its heartbeat writes
``<name>_hist`` (cumulative counts per upper bound, ``"0.1:3,0.5:9,...,+Inf:12"``)
and ``<name>_sum``. The dashboard turns them into Prometheus histograms, so no
process needs an HTTP endpoint of its own. Counts only grow while the process
lives; a restart starts them again from zero, which Prometheus treats as a reset.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Milliseconds; run() durations and lags of agents, intent->ack of the gateway.
LATENCY_BUCKETS_MS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 5000)


class Histogram:
    """Counts of observations per bucket (``observe`` is a bisect and an increment)."""

    __slots__ = ("_counts", "bounds", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_MS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last bucket is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def fields(self, name: str) -> dict[str, str | float]:
        """``{name}_hist`` and ``{name}_sum`` for a heartbeat."""
        running, parts = 0, []
        for bound, count in zip((*map(_fmt, self.bounds), "+Inf"), self._counts, strict=True):
            running += count
            parts.append(f"{bound}:{running}")
        return {f"{name}_hist": ",".join(parts), f"{name}_sum": round(self.sum, 6)}


@dataclass(frozen=True, slots=True)
class HistogramReading:
    """A histogram read back from heartbeat fields: cumulative (upper bound, count) pairs."""

    buckets: tuple[tuple[str, int], ...]
    sum: float


def read_histogram(fields: Mapping[str, str], name: str) -> HistogramReading | None:
    """The histogram ``name`` from a heartbeat hash, or None if absent or malformed."""
    text, total = fields.get(f"{name}_hist"), fields.get(f"{name}_sum")
    if not text or total is None:
        return None
    try:
        buckets = tuple((bound, int(count)) for bound, count in (part.split(":") for part in text.split(",")))
        reading = HistogramReading(buckets, float(total))
    except ValueError:
        return None
    counts = [count for _, count in buckets]
    if not buckets or buckets[-1][0] != "+Inf" or counts != sorted(counts):
        return None
    return reading


def _fmt(bound: float) -> str:
    return f"{bound:g}"
