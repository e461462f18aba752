"""Box plots of the isolation benchmark: one column per kernel, one box per series.

Row 1: run time over the kernel's solo (policy off) median, so 1.0 = solo; the grey band
is the solo runs' interquartile range (noise is visible as noise) and a dotted line marks
the target, 1.05 x solo. Rows 2 and 3: what the kernel's scheduler saw in the same runs,
the victim's run-queue wait and the CPU time other tasks ran on its CPUs, in ms. Policy-on
boxes are filled, off boxes hollow. Uses matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from bench.isolation import Report, Sample

__all__ = ["plot"]

_ON, _OFF = "#1f77b4", "#d62728"


def _boxes(ax: Axes, series: list[str], data: list[list[float]]) -> None:
    boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=True)
    for patch, name in zip(boxes["boxes"], series, strict=True):
        on = name.endswith("static-on")
        patch.set_facecolor(_ON if on else "white")
        patch.set_edgecolor(_ON if on else _OFF)
    for median in boxes["medians"]:
        median.set_color("black")
    ax.grid(axis="y", alpha=0.3)


def _values(
    report: Report, kernel: str, series: list[str], get: Callable[[Sample], float]
) -> list[list[float]]:
    return [[get(x) for x in report.samples if x.kernel == kernel and x.series == name] for name in series]


def _wall(ax: Axes, report: Report, kernel: str, series: list[str]) -> None:
    solo = [x.seconds for x in report.samples if x.kernel == kernel and x.series == "solo/static-off"]
    unit = float(np.median(solo)) if solo else min(x.seconds for x in report.samples if x.kernel == kernel)
    if solo:
        q1, q3 = np.percentile(np.asarray(solo) / unit, [25, 75])
        ax.axhspan(float(q1), float(q3), color="#999999", alpha=0.25, linewidth=0, label="solo IQR")
        ax.axhline(1.0, color="#666666", linewidth=0.8)
        ax.axhline(1.05, linestyle=":", color="#666666", linewidth=1)
    _boxes(ax, series, _values(report, kernel, series, lambda x: x.seconds / unit))
    ax.set_title(kernel, fontsize=10)


def _ticks(ax: Axes, series: list[str]) -> None:
    ax.set_xticks(
        range(1, len(series) + 1),
        [n.replace("/static-", "\npolicy ") for n in series],
        rotation=60,
        fontsize=7,
        ha="right",
        rotation_mode="anchor",
    )


def plot(report: Report, path: Path) -> Path:
    """Write the box plots of *report* to *path* (PNG)."""
    kernels = list(dict.fromkeys(s.kernel for s in report.stats))
    fig, axes = plt.subplots(
        3, len(kernels), figsize=(max(7.5, 4.4 * len(kernels)), 10.5), squeeze=False, sharex="col"
    )
    for col, kernel in enumerate(kernels):
        series = [s.series for s in report.stats if s.kernel == kernel]
        _wall(axes[0][col], report, kernel, series)
        _boxes(axes[1][col], series, _values(report, kernel, series, lambda x: 1000 * x.runqueue_wait_s))
        _boxes(axes[2][col], series, _values(report, kernel, series, lambda x: 1000 * x.others_s))
        _ticks(axes[2][col], series)
    axes[0][0].set_ylabel("run time / solo median\n(1.0 = solo; band = solo IQR)")
    axes[1][0].set_ylabel("victim's run-queue wait, ms")
    axes[2][0].set_ylabel("others' CPU time on\nthe victim's CPUs, ms")
    fig.suptitle(
        f"victims beside a {report.aggressor} aggressor (CPU; memory bandwidth for membw)\n"
        "static CPU manager policy on (filled) vs off (hollow)\n"
        f"cpus {report.cpus}, {report.placement} placement, {report.runs} runs; dotted: 1.05 x solo",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
