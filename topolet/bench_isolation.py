"""``topolet bench isolation``: argument parsing and printing for ``bench.isolation``.

The measuring lives in ``bench``; this module turns options into a call of
``bench.isolation.run`` and prints the table (or JSON) it returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from topolet.arg_types import positive_float, positive_int
from topolet.cli import CommandError, common_options
from topolet.tables import TextTable, add_format_option, print_table, wants_json

__all__ = ["register_isolation"]


def register_isolation(subparsers: Any) -> None:
    """Add ``isolation`` to the ``topolet bench`` subcommands."""
    from bench.aggressor import KINDS
    from bench.isolation import DEFAULT_OUT
    from bench.kernels import KERNELS
    from bench.placement import MODES

    p = subparsers.add_parser(
        "isolation",
        parents=[common_options()],
        help="PARSEC-style victims beside a CPU or memory aggressor, static CPU manager policy on vs off",
        description=(
            "Run blackscholes-, canneal- and streamcluster-like kernels alone, beside a CPU "
            "stressor, two at once (Guaranteed + Burstable) beside it, and beside a "
            "memory-bandwidth stressor, with the static CPU manager policy on and off. "
            "Placement goes through the real CPU manager: cgroup cpusets as root, "
            "sched_setaffinity otherwise. Besides the wall time, each run records the victim's "
            "run-queue wait, involuntary context switches and migrations, and the CPU time "
            "other tasks ran on its CPUs, from the kernel. Writes isolation.json and "
            "isolation.png."
        ),
    )
    p.add_argument(
        "--runs",
        type=positive_int,
        default=None,
        metavar="N",
        help="runs per scenario and kernel (default 10, 3 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="fewer runs (3), for a first look")
    p.add_argument(
        "--kernels",
        default=",".join(KERNELS),
        metavar="LIST",
        help=f"comma-separated kernels (default: {','.join(KERNELS)})",
    )
    p.add_argument(
        "--scale",
        type=positive_float,
        default=1.0,
        help="work per kernel run; 1.0 is about half a second on one vCPU (default 1.0)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"where isolation.json and isolation.png go (default {DEFAULT_OUT})",
    )
    p.add_argument(
        "--aggressor",
        choices=KINDS,
        default="auto",
        help="stress-ng when on PATH (auto), or a built-in Python stressor",
    )
    p.add_argument(
        "--placement",
        choices=MODES,
        default="auto",
        help="cgroup cpusets (root) or sched_setaffinity; auto picks cgroup as root",
    )
    add_format_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bench import isolation
    from bench.aggressor import AggressorError
    from bench.placement import PlacementError

    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    if not kernels:
        raise CommandError("--kernels: expected a comma-separated list of kernel names")
    try:
        report = isolation.run(
            runs=args.runs,
            quick=args.quick,
            kernels=kernels,
            out=args.out,
            aggressor=args.aggressor,
            placement=args.placement,
            scale=args.scale,
            progress=not wants_json(args),
        )
    except (isolation.IsolationError, AggressorError, PlacementError) as e:
        raise CommandError(str(e)) from e
    if wants_json(args):
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    _print(report)
    return 0


def _num(x: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if x is None else f"{x * scale:.{digits}f}"


def _print(report: Any) -> None:
    from rich.console import Console

    runs = f"{report.runs} run{'s' if report.runs != 1 else ''}"
    wall = TextTable(
        f"isolation, wall time: {report.placement} placement, {report.aggressor} aggressor, "
        f"cpus {report.cpus}, {runs}, scale {report.scale}",
        ["kernel", "series", "median s", "IQR s", "vs solo", "IQR/solo"],
        right={2, 3, 4, 5},
    )
    mech = TextTable(
        "isolation, what the kernel's scheduler saw (median, IQR in brackets)",
        [
            "kernel",
            "series",
            "run-queue wait ms",
            "others' CPU ms",
            "of which bench ms",
            "invol. switches",
            "migrations",
        ],
        right={2, 3, 4, 5, 6},
    )
    for s in report.stats:
        series = s.series.replace("/static-", " policy ")
        wall.add(
            s.kernel,
            series,
            f"{s.median_s:.3f}",
            f"{s.iqr_s:.3f}",
            "-" if s.slowdown is None else f"{s.slowdown:.3f}x",
            f"{s.iqr_norm:.3f}",
        )
        mech.add(
            s.kernel,
            series,
            f"{_num(s.runqueue_wait_median_s, 1000, 1)} ({_num(s.runqueue_wait_iqr_s, 1000, 1)})",
            f"{_num(s.others_median_s, 1000, 1)} ({_num(s.others_iqr_s, 1000, 1)})",
            f"{_num(s.bench_others_median_s, 1000, 1)} ({_num(s.bench_others_iqr_s, 1000, 1)})",
            f"{_num(s.involuntary_switches_median)} ({_num(s.involuntary_switches_iqr)})",
            f"{_num(s.migrations_median)} ({_num(s.migrations_iqr)})",
        )
    console = Console()
    print_table(wall, console)
    console.print()
    print_table(mech, console)
    console.print()
    for c in report.checks:
        ratio = "n/a" if c.iqr_ratio is None else f"{c.iqr_ratio:.2f}"
        console.print(
            f"{c.kernel}: pinned beside the CPU aggressor {c.slowdown_pinned:.3f}x solo "
            f"({'ok' if c.median_ok else 'MISSED'}, target <= 1.05); IQR pinned/unpinned "
            f"{ratio} ({'ok' if c.iqr_ok else 'MISSED'}, target <= 0.33)"
        )
    for m in report.mechanism:
        parts = [f"run-queue wait {_ratio(m.wait)}", f"others' CPU time {_ratio(m.others)}"]
        if m.excess_wait is not None:
            parts.append(f"wait beyond solo {_ratio(m.excess_wait)}")
        if m.bench_others is not None:
            parts.append(f"benchmark's own containers' CPU time {_ratio(m.bench_others)}")
        console.print(f"{m.kernel} {m.series}, policy on/off (target <= 5 %): " + "; ".join(parts))
    console.print()
    for note in report.notes:
        console.print(note)
    console.print(f"wrote {report.files['json']} and {report.files['png']}")


def _ratio(r: Any) -> str:
    verdict = "ok" if r.ok else "MISSED"
    return (
        f"n/a, 0 with the policy off ({verdict})" if r.ratio is None else f"{100 * r.ratio:.1f} % ({verdict})"
    )
