"""The isolation and simulation parts of ``topolet demo``: run them, render them.

Each part runs the real benchmark code (``bench.isolation``, ``bench.simulate``) with
settings small enough for the demo's budget (under 5 minutes on 2 CPUs) and returns a
:class:`Section`: the markdown for ``report.md``, a rich renderable for the terminal and
a JSON-ready summary for ``summary.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

__all__ = ["DemoSettings", "Section", "isolation_section", "simulation_section"]


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How much the demo runs. ``tiny`` is for tests: seconds, not minutes."""

    isolation_runs: int = 3
    isolation_scale: float = 0.5
    sim_nodes: int = 8
    sim_pods: int = 300

    @staticmethod
    def tiny() -> DemoSettings:
        """Under a minute on 2 busy vCPUs, and each section still shows its point: 3 rounds
        of isolation (a median and a box), and enough pods on few nodes that the
        topology-blind scheduler meets TopologyAffinityErrors (5 of 200 with the default seed)."""
        return DemoSettings(isolation_runs=3, isolation_scale=0.05, sim_nodes=6, sim_pods=200)


@dataclass(frozen=True, slots=True)
class Section:
    markdown: str
    table: Table
    summary: dict[str, Any]


_PLACEMENT = {
    "cgroup": "real cgroup cpusets written by the CPU manager",
    "affinity": "sched_setaffinity with the CPU sets the CPU manager chose (not root)",
}


def _series(stats: list[Any], kernel: str, series: str) -> Any | None:
    return next((s for s in stats if s.kernel == kernel and s.series == series), None)


def isolation_section(out: Path, settings: DemoSettings) -> Section:
    """Victims beside a CPU aggressor with the static policy off and on, and solo."""
    from bench import isolation

    wanted = {"solo/static-off", "aggressor/static-off", "aggressor/static-on"}
    scenarios = [s for s in isolation.SCENARIOS if s.name in wanted]
    report = isolation.run(
        runs=settings.isolation_runs,
        scale=settings.isolation_scale,
        out=out / "isolation",
        scenarios=scenarios,
    )
    table = Table(
        title=f"Isolation: victim beside a CPU aggressor ({report.placement} placement, "
        f"{report.aggressor} aggressor, {report.runs} runs)"
    )
    for col in ("kernel", "solo s", "off: s (IQR)", "on: s (IQR)", "on/solo", "IQR on/off"):
        table.add_column(col, justify="left" if col == "kernel" else "right")
    rows, summary_rows = [], []
    for kernel in report.kernels:
        solo = _series(report.stats, kernel, "solo/static-off")
        off = _series(report.stats, kernel, "aggressor/static-off")
        on = _series(report.stats, kernel, "aggressor/static-on")
        if solo is None or off is None or on is None:
            continue
        ratio = f"{on.iqr_s / off.iqr_s:.2f}" if off.iqr_s > 0 else "-"
        cells = (
            kernel,
            f"{solo.median_s:.3f}",
            f"{off.median_s:.3f} ({off.iqr_s:.3f})",
            f"{on.median_s:.3f} ({on.iqr_s:.3f})",
            f"{on.median_s / solo.median_s:.2f}x",
            ratio,
        )
        table.add_row(*cells)
        rows.append("| " + " | ".join(cells) + " |")
        summary_rows.append(
            {
                "kernel": kernel,
                "solo_median_s": solo.median_s,
                "off_median_s": off.median_s,
                "off_iqr_s": off.iqr_s,
                "on_median_s": on.median_s,
                "on_iqr_s": on.iqr_s,
                "off_runqueue_wait_s": off.runqueue_wait_median_s,
                "on_runqueue_wait_s": on.runqueue_wait_median_s,
                "off_others_s": off.others_median_s,
                "on_others_s": on.others_median_s,
            }
        )
    markdown = "\n".join(
        [
            "## Isolation",
            "",
            f"Each victim kernel ran {report.runs} time{'s' if report.runs != 1 else ''} alone, then beside "
            "a CPU aggressor on every CPU, "
            f"with the static policy off (everyone shares every CPU) and on (the victim is a Guaranteed "
            f"container with an exclusive CPU, the aggressor stays in the shared pool). Placement: "
            f"**{report.placement}** ({_PLACEMENT.get(report.placement, report.placement)}); "
            f"aggressor: **{report.aggressor}**. A short run on a busy or 2-vCPU machine is noisy: "
            "`topolet bench isolation` runs 10 rounds of every scenario.",
            "",
            "| kernel | solo median s | static off: median s (IQR) | static on: median s (IQR) "
            "| on vs solo | IQR on/off |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "What the kernel's scheduler saw (medians; others = CPU time other tasks ran on the "
            "victim's CPU, of which the benchmark's own containers in brackets where measured):",
            "",
            *(
                f"- {m.kernel}: run-queue wait {1000 * m.wait.off:.1f} ms policy off, "
                f"{1000 * m.wait.on:.1f} ms on; "
                f"others {1000 * m.others.off:.1f} ms off, {1000 * m.others.on:.1f} ms on"
                + (
                    f" ({1000 * m.bench_others.off:.1f} / {1000 * m.bench_others.on:.1f} ms)"
                    if m.bench_others
                    else ""
                )
                for m in report.mechanism
            ),
            "",
            *report.notes,
            "",
            "![isolation](isolation/isolation.png)",
            "",
            "Raw timings: [`isolation/isolation.json`](isolation/isolation.json).",
            "",
        ]
    )
    summary = {
        "placement": report.placement,
        "aggressor": report.aggressor,
        "runs": report.runs,
        "kernels": summary_rows,
        "notes": report.notes,
    }
    return Section(markdown, table, summary)


def simulation_section(out: Path, settings: DemoSettings) -> Section:
    """A small cluster: topolet's extender core vs a topology-blind scheduler."""
    from bench.simulate import QUICK
    from bench.simulate import run as simulate

    config = dataclasses.replace(
        QUICK, nodes=settings.sim_nodes, pods=settings.sim_pods, out_dir=out / "simulate"
    )
    report = simulate(config)
    names = list(report["schedulers"])
    table = Table(
        title=f"Simulation: {report['cluster']['nodes']} nodes, {report['trace']['pods']} pods "
        f"(LP bound {report['lp_bound']['pods'] if report.get('lp_bound') else '-'} pods)"
    )
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    metrics = [
        ("pods admitted", "admitted", "{}"),
        ("TopologyAffinityErrors", "topology_affinity_errors", "{}"),
        ("unschedulable", "unschedulable", "{}"),
        ("pinned pods on one NUMA node", "single_numa_fraction", "{:.1%}"),
        ("pinned pods on one socket", "single_socket_fraction", "{:.1%}"),
        ("packing vs LP bound", "packing_vs_lp_bound", "{:.1%}"),
    ]
    rows = []
    for label, key, fmt in metrics:
        cells = [
            fmt.format(report["schedulers"][n][key]) if report["schedulers"][n].get(key) is not None else "-"
            for n in names
        ]
        table.add_row(label, *cells)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    types = ", ".join(f"{n} x {t}" for t, n in report["cluster"]["types"].items())
    markdown = "\n".join(
        [
            "## Simulation",
            "",
            f"An in-memory cluster ({types}) receives {report['trace']['pods']} generated pods "
            "(Guaranteed CPU/GPU/hugepage pods and Burstable pods, arriving and leaving). Each node "
            "admits pods as kubelet does under `topologyManagerPolicy: single-numa-node`, with the real "
            "static CPU manager; topolet's extender places them, then a topology-blind scheduler does.",
            "",
            "| | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
            *rows,
            "",
            "![timeline](simulate/simulate-timeline.png)",
            "",
            "![outcomes](simulate/simulate-outcomes.png)",
            "",
            "Full figures: [`simulate/simulate.json`](simulate/simulate.json).",
            "",
        ]
    )
    summary: dict[str, Any] = {n: {k: report["schedulers"][n].get(k) for _, k, _ in metrics} for n in names}
    summary["lp_bound_pods"] = report["lp_bound"]["pods"] if report.get("lp_bound") else None
    return Section(markdown, table, summary)
