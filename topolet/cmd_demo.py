"""``topolet demo``: the main job. What topolet sees here, what it hands out, what it buys.

1. The machine's topology and, for every exclusive request of 1..N CPUs (N = the online
   CPUs minus one reserved for the system, as kubelet's ``reservedSystemCPUs`` would),
   the CPUs the static policy's allocator picks: whole NUMA nodes/sockets, then whole
   cores, then threads.
2. A short isolation run: victim kernels beside a CPU aggressor, static policy off and on
   (real cgroups as root, ``sched_setaffinity`` otherwise).
3. A small cluster simulation: topolet's extender vs a topology-blind scheduler.

Writes ``report.md``, ``summary.json``, ``topology.json``/``.png`` and the isolation and
simulation folders into the output directory. Needs no root and no cluster; under 5
minutes on 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from topolet.cli import CommandError, common_options
from topolet.tables import TextTable, print_table
from topology.cpuset import CPUSet
from topology.export import topology_to_dict
from topology.model import Topology
from topology.sysfs import discover

__all__ = ["Allocation", "allocation_table", "register", "report_markdown", "request_sizes", "run"]

log = logging.getLogger(__name__)

#: CPUs kept back for the system and kubelet before anything is exclusive.
RESERVED_CPUS = 1
#: Up to this many CPUs every request size is shown; above, a spread of sizes.
_ALL_SIZES_UP_TO = 32


@dataclass(frozen=True, slots=True)
class Allocation:
    """What an exclusive request of ``requested`` CPUs gets, and how it sits."""

    requested: int
    cpus: CPUSet
    whole_cores: int
    cores: int
    numa_nodes: CPUSet
    packages: CPUSet


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to *subparsers*."""
    p = subparsers.add_parser(
        "demo",
        parents=[common_options()],
        help="show this machine's topology and CPU allocations, and write a report",
        description=(
            "Show this machine's topology and what exclusive requests of 1..N CPUs would get "
            "(N = online CPUs minus one reserved), then write topology.json, topology.png and "
            "report.md into the output directory."
        ),
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path("topolet-report"),
        metavar="DIR",
        help="where to write the report (default: ./topolet-report)",
    )
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--no-isolation", action="store_true", help="skip the isolation run")
    p.add_argument("--no-simulation", action="store_true", help="skip the cluster simulation")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="small isolation (3 rounds) and simulation (6 nodes, 200 pods) runs: under a minute",
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="print the tree and tables (default), or summary.json on standard output",
    )
    p.set_defaults(func=run)


def request_sizes(n: int) -> list[int]:
    """Request sizes to show for *n* allocatable CPUs: all of 1..n when n is small, else
    1..16, about 16 evenly spaced sizes after that, and n itself."""
    if n <= _ALL_SIZES_UP_TO:
        return list(range(1, n + 1))
    step = max(1, n // 16)
    return sorted(set(range(1, 17)) | set(range(16, n + 1, step)) | {n})


def _describe(topo: Topology, requested: int, cpus: CPUSet) -> Allocation:
    cores = {topo.cpus[c].core for c in cpus}
    whole = sum(1 for c in cores if c in topo.cores and topo.cores[c].cpus <= cpus)
    return Allocation(requested, cpus, whole, len(cores), topo.numa_nodes_of(cpus), topo.sockets_of(cpus))


def allocation_table(topo: Topology, reserved: int = RESERVED_CPUS) -> tuple[CPUSet, list[Allocation]]:
    """The reserved CPUs and, for each request size, what the allocator picks from the rest."""
    try:
        from cpumanager.allocation import take_by_topology
        from cpumanager.cpu_topology import CPUTopology
        from cpumanager.errors import CPUManagerError
    except ImportError as err:
        raise CommandError(f"the CPU allocator (cpumanager.allocation) cannot be loaded: {err}") from err
    try:
        view = CPUTopology.from_topology(topo)
        kept = take_by_topology(view, topo.online_cpus, min(reserved, topo.num_cpus))
        available = topo.online_cpus - kept
        rows = [
            _describe(topo, n, take_by_topology(view, available, n)) for n in request_sizes(len(available))
        ]
    except CPUManagerError as err:
        raise CommandError(f"allocation failed: {err}") from err
    return kept, rows


def _rich_table(reserved: CPUSet, rows: Sequence[Allocation]) -> TextTable:
    table = TextTable(
        f"Exclusive CPU requests (reserved for the system: {reserved or 'none'})",
        ["request", "CPUs", "whole cores", "cores", "NUMA nodes", "packages"],
        right={0, 2, 3, 4, 5},
    )
    for a in rows:
        table.add(
            str(a.requested),
            str(a.cpus),
            str(a.whole_cores),
            str(a.cores),
            str(a.numa_nodes) or "-",
            str(a.packages) or "-",
        )
    return table


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def report_markdown(topo: Topology, tree: str, reserved: CPUSet, rows: Sequence[Allocation]) -> str:
    """``report.md``: the machine, its tree, the allocation table and the written files."""
    lines = [
        "# topolet demo report",
        "",
        f"Machine: {topo.arch or 'unknown architecture'}; {topo.num_cpus} online CPUs in "
        f"{topo.num_cores} cores, {topo.num_sockets} packages, {topo.num_numa_nodes} NUMA nodes, "
        f"{len(topo.l3_groups)} L3 groups; {topo.threads_per_core()} threads per core.",
        "",
        "Files: [`topology.json`](topology.json) (schema `topolet.topology/v1`), "
        "[`topology.png`](topology.png).",
        "",
        "## Topology",
        "",
        "```",
        tree.rstrip(),
        "```",
        "",
        "![topology](topology.png)",
        "",
        "## Exclusive CPU requests",
        "",
        f"Reserved for the system: `{reserved or 'none'}`. Each row is what a Guaranteed container "
        "asking for that many exclusive CPUs would get from the rest: whole NUMA nodes and "
        "packages first, then whole cores, then single threads.",
        "",
        "| request | CPUs | whole cores | cores | NUMA nodes | packages |",
        "|---:|---|---:|---:|---|---|",
    ]
    lines += [
        f"| {a.requested} | `{a.cpus}` | {a.whole_cores} | {a.cores} | {a.numa_nodes or '-'} | "
        f"{a.packages or '-'} |"
        for a in rows
    ]
    if not rows:
        lines.append("| - | no CPU is left once the reserved ones are kept back | | | | |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Discover, show, allocate, write the report. Returns the exit code."""
    from topolet.render_png import render_png
    from topolet.render_tree import print_tree, tree_text

    topo = discover(args.root)
    as_json = getattr(args, "format", "table") == "json"
    console = Console(stderr=as_json, quiet=as_json)
    if not as_json:
        print_tree(topo, console)
    reserved, rows = allocation_table(topo)
    if not as_json:
        print_table(_rich_table(reserved, rows), console)
        console.print()
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "topology.json").write_text(json.dumps(topology_to_dict(topo), indent=2) + "\n", encoding="utf-8")
    render_png(topo, out / "topology.png")
    report = report_markdown(topo, tree_text(topo), reserved, rows)
    summary: dict[str, Any] = {
        "machine": {
            "cpus": topo.num_cpus,
            "cores": topo.num_cores,
            "packages": topo.num_sockets,
            "numa_nodes": topo.num_numa_nodes,
            "threads_per_core": topo.threads_per_core(),
        },
        "reserved_cpus": str(reserved),
    }
    sections = _sections(args, out)
    folders = {"isolation": "isolation/", "simulation": "simulate/"}
    for key, section in sections.items():
        if not as_json:
            print_table(section.table, console)
            console.print()
        report += "\n" + section.markdown
        summary[key] = section.summary
    (out / "report.md").write_text(report, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    console.print(
        f"wrote {out / 'report.md'} (with summary.json, topology.json, topology.png"
        + "".join(f", {folders[k]}" for k in sections)
        + ")"
    )
    return 0


def _sections(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The isolation and simulation parts that were asked for, run in that order."""
    from topolet.demo_sections import DemoSettings, isolation_section, simulation_section

    settings = DemoSettings.tiny() if args.tiny else DemoSettings()
    done: dict[str, Any] = {}
    if args.no_isolation:
        log.info("isolation run skipped (--no-isolation)")
    elif args.root != Path("/"):
        log.warning("isolation run skipped: it measures this machine, not the topology under --root")
    else:
        done["isolation"] = isolation_section(out, settings)
    if not args.no_simulation:
        done["simulation"] = simulation_section(out, settings)
    return done
