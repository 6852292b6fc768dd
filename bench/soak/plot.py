"""The samples as one PNG: RSS per process, CPU per process, agents' lag, Redis memory."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench.soak.sampler import Sample


def draw(samples: Sequence[Sample], path: Path, title: str) -> None:
    import matplotlib  # the soak extra; imported here so the rest of the soak runs without it

    matplotlib.use("Agg")  # no display: write files only
    from matplotlib import pyplot as plt

    by_process: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_process[s.process].append(s)
    # One colour per process in every panel (the colour cycle would restart per panel).
    colours = {name: f"C{i % 10}" for i, name in enumerate(sorted(by_process))}
    fig, axes = plt.subplots(4, 1, figsize=(11, 13), sharex=True)
    panels = (("RSS, MB", "rss_mb"), ("CPU, % of a core", "cpu_pct"), ("agent lag, ms", "lag_ms"),
              ("Redis used memory, MB", "used_mb"))
    for ax, (label, field) in zip(axes, panels, strict=True):
        for name, series in sorted(by_process.items()):
            points = [(s.elapsed_s / 60, getattr(s, field)) for s in series if getattr(s, field) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=name, color=colours[name], linewidth=1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=5, fontsize=8, loc="upper left")
    axes[2].set_yscale("symlog", linthresh=1)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
