"""The soak's pass/fail rule, a pure function of the samples (tested on made-up series).

Memory growth is the least-squares slope of a process's RSS over the samples taken after the
warm-up, in MB per hour: a slope, not last-minus-first, so one garbage-collection step or a
page-cache wobble at either end does not decide the verdict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench.soak.sampler import Sample

MAX_GROWTH_MB_PER_H = 5.0
#: Redis holds the data (order hashes are kept, streams fill up to their trim length): reported, not judged.
NOT_JUDGED = frozenset({"redis"})


def slope_per_h(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour; 0 with fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return 0.0
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t


@dataclass(frozen=True)
class Verdict:
    growth_mb_per_h: Mapping[str, float]
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def judge(samples: Iterable[Sample], warmup_s: float, lost: Iterable[str] = (), exits: Mapping[str, int] | None = None,
          max_growth_mb_per_h: float = MAX_GROWTH_MB_PER_H) -> Verdict:
    """Fail on RSS growth above the limit after warm-up, any order problem, or a process that ended early."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in samples:
        if s.elapsed_s >= warmup_s:
            series[s.process].append((s.elapsed_s, s.rss_mb))
    growth = {name: round(slope_per_h(points), 2) for name, points in sorted(series.items())}
    problems = [f"{name}: RSS grows {rate:+.2f} MB/h after warm-up (limit {max_growth_mb_per_h:g})"
                for name, rate in growth.items() if name not in NOT_JUDGED and rate > max_growth_mb_per_h]
    problems += [f"{name} exited early with code {code}" for name, code in sorted((exits or {}).items())]
    problems += list(lost)
    return Verdict(growth, tuple(problems))
