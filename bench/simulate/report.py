"""The simulation report: a rich table, ``simulate.json`` and two PNG plots.

* ``simulate-timeline.png``: admitted pods and TopologyAffinityErrors (cumulative) over
  simulated time, both schedulers;
* ``simulate-outcomes.png``: per scheduler, pods admitted / rejected with
  TopologyAffinityError / unschedulable, with the LP bound as a line.

Plots are drawn on bare matplotlib ``Figure`` objects (Agg), so no display is needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from rich.table import Table

from bench.simulate.engine import RunResult

__all__ = ["render_table", "write_report"]

_COLOURS = {"topolet": "#2a7ab0", "topology-blind": "#d0633a"}


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if "fraction" in key or "packing" in key:
        return _pct(value)
    return f"{value:,.0f}"


def render_table(report: Mapping[str, Any]) -> Table:
    """Both schedulers side by side, with the LP bound in the caption."""
    schedulers = report["schedulers"]
    names = list(schedulers)
    cluster = report["cluster"]
    kinds = ", ".join(f"{n} x {k}" for k, n in cluster["types"].items())
    table = Table(
        title=f"topolet simulate: {report['trace']['pods']} pods on {cluster['nodes']} nodes ({kinds})"
    )
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    rows: list[tuple[str, str]] = [
        ("pods admitted", "admitted"),
        ("TopologyAffinityErrors", "topology_affinity_errors"),
        ("unschedulable", "unschedulable"),
        ("pinned pods on one NUMA node", "single_numa_fraction"),
        ("pinned pods on one socket", "single_socket_fraction"),
        ("packing vs LP bound", "packing_vs_lp_bound"),
        ("admitted CPU-seconds", "admitted_cpu_seconds"),
    ]
    for label, key in rows:
        cells = [_cell(key, schedulers[name].get(key)) for name in names]
        table.add_row(label, *cells)
    for label, key in (
        ("free whole NUMA nodes at end", "free_whole_numa_nodes"),
        ("free CPUs stranded in used NUMA nodes", "free_cpus_in_partly_used_numa"),
    ):
        table.add_row(label, *(str(schedulers[n]["end"][key]) for n in names))
    bound = report.get("lp_bound")
    if bound:
        table.caption = (
            f"LP bound: at most {bound['pods']} pods admitted by any scheduler "
            f"({bound['variables']} variables, {bound['instants']} instants, {bound['wall_s']:.2f} s)"
        )
    return table


def _timeline(runs: Sequence[RunResult], path: Path) -> None:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in runs:
        t = [p[0] / 60 for p in r.timeline]
        colour = _COLOURS.get(r.scheduler)
        ax.plot(t, [p[1] for p in r.timeline], color=colour, label=f"{r.scheduler}: admitted")
        ax.plot(
            t,
            [p[2] for p in r.timeline],
            color=colour,
            linestyle="--",
            label=f"{r.scheduler}: TopologyAffinityErrors",
        )
    ax.set_xlabel("simulated time (min)")
    ax.set_ylabel("pods (cumulative)")
    ax.set_title("Admitted pods and TopologyAffinityErrors over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _outcomes(report: Mapping[str, Any], path: Path) -> None:
    schedulers = report["schedulers"]
    names = list(schedulers)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    kinds = (
        ("admitted", "admitted", "#4c9a2a"),
        ("topology_affinity_errors", "TopologyAffinityError", "#c0392b"),
        ("unschedulable", "unschedulable", "#999999"),
    )
    width = 0.8 / len(kinds)
    for k, (key, label, colour) in enumerate(kinds):
        xs = [i + (k - 1) * width for i in range(len(names))]
        values = [schedulers[n][key] for n in names]
        bars = ax.bar(xs, values, width, label=label, color=colour)
        ax.bar_label(bars, fontsize="small")
    bound = report.get("lp_bound")
    if bound:
        ax.axhline(bound["pods"], color="black", linestyle=":", label=f"LP bound ({bound['pods']})")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("pods")
    ax.set_title(f"Outcomes of {report['trace']['pods']} pods")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(
    report: Mapping[str, Any], runs: Sequence[RunResult], out_dir: Path, *, plots: bool = True
) -> list[str]:
    """Write ``simulate.json`` (and the plots) into *out_dir*; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if plots:
        _timeline(runs, out_dir / "simulate-timeline.png")
        _outcomes(report, out_dir / "simulate-outcomes.png")
        written += [str(out_dir / "simulate-timeline.png"), str(out_dir / "simulate-outcomes.png")]
    path = out_dir / "simulate.json"
    written.append(str(path))
    path.write_text(json.dumps({**report, "files": written}, indent=2) + "\n", encoding="utf-8")
    return written
