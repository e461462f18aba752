"""Box plots of the isolation benchmark: one panel per kernel, one box per series.

Run times are normalised to the kernel's best run (1.0 = the fastest run seen in any
series), as in the CPU manager's PARSEC study. Static-policy-on boxes are filled, off boxes
hollow; a dotted line marks the target, 1.05 x the solo (policy off) median. Uses
matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from bench.isolation import Report

__all__ = ["plot"]

_ON, _OFF = "#1f77b4", "#d62728"


def _panel(ax: Axes, report: Report, kernel: str) -> None:
    stats = [s for s in report.stats if s.kernel == kernel]
    series = [s.series for s in stats]
    best = stats[0].best_s
    data = [
        [x.seconds / best for x in report.samples if x.kernel == kernel and x.series == name]
        for name in series
    ]
    boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=True)
    for patch, name in zip(boxes["boxes"], series, strict=True):
        on = name.endswith("static-on")
        patch.set_facecolor(_ON if on else "white")
        patch.set_edgecolor(_ON if on else _OFF)
    for median in boxes["medians"]:
        median.set_color("black")
    solo = next((s for s in stats if s.series == "solo/static-off"), None)
    if solo is not None:
        ax.axhline(1.05 * solo.median_norm, linestyle=":", color="grey", linewidth=1)
    ax.set_xticks(
        range(1, len(series) + 1),
        [n.replace("/", "\n") for n in series],
        rotation=60,
        fontsize=7,
        ha="right",
        rotation_mode="anchor",
    )
    ax.set_title(kernel, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def plot(report: Report, path: Path) -> Path:
    """Write the box plots of *report* to *path* (PNG)."""
    kernels = list(dict.fromkeys(s.kernel for s in report.stats))
    fig, axes = plt.subplots(1, len(kernels), figsize=(4.2 * len(kernels), 4.8), squeeze=False)
    for ax, kernel in zip(axes[0], kernels, strict=True):
        _panel(ax, report, kernel)
    axes[0][0].set_ylabel("run time, normalised to the best run")
    fig.suptitle(
        f"victims beside a {report.aggressor} aggressor, static CPU manager policy on (filled) "
        f"vs off; cpus {report.cpus}, {report.placement} placement, {report.runs} runs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
