"""``topolet bench isolation``: argument parsing and printing for :mod:`bench.isolation`.

The measuring lives in ``bench``; this module turns options into a call of
:func:`bench.isolation.run` and prints the table (or JSON) it returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from topolet.arg_types import positive_float, positive_int
from topolet.cli import CommandError, common_options

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
        help="PARSEC-style victims beside a CPU aggressor, static CPU manager policy on vs off",
        description=(
            "Run blackscholes-, canneal- and streamcluster-like kernels alone, beside a CPU "
            "stressor, and two at once (Guaranteed + Burstable), with the static CPU manager "
            "policy on and off. Placement goes through the real CPU manager: cgroup cpusets as "
            "root, sched_setaffinity otherwise. Writes isolation.json and isolation.png."
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
    p.add_argument("--json", action="store_true", help="print the report as JSON")
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
            progress=not args.json,
        )
    except (isolation.IsolationError, AggressorError, PlacementError) as e:
        raise CommandError(str(e)) from e
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    _print(report)
    return 0


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"isolation: {report.placement} placement, {report.aggressor} aggressor, "
        f"cpus {report.cpus}, {report.runs} runs, scale {report.scale}"
    )
    for col in ("kernel", "series", "median s", "IQR s", "median/best", "IQR/best", "vs solo", "others s"):
        table.add_column(col, justify="left" if col in ("kernel", "series") else "right")
    for s in report.stats:
        table.add_row(
            s.kernel,
            s.series,
            f"{s.median_s:.3f}",
            f"{s.iqr_s:.3f}",
            f"{s.median_norm:.3f}",
            f"{s.iqr_norm:.3f}",
            "-" if s.slowdown is None else f"{s.slowdown:.3f}x",
            f"{s.others_median_s:.3f}",
        )
    console = Console()
    console.print(table)
    for c in report.checks:
        ratio = "n/a" if c.iqr_ratio is None else f"{c.iqr_ratio:.2f}"
        console.print(
            f"{c.kernel}: pinned beside aggressor {c.slowdown_pinned:.3f}x solo "
            f"({'ok' if c.median_ok else 'MISSED'}, target <= 1.05); IQR pinned/unpinned "
            f"{ratio} ({'ok' if c.iqr_ok else 'MISSED'}, target <= 0.33)"
        )
    console.print("others s: median CPU time other processes used on the victim's CPUs during a run")
    console.print(f"wrote {report.files['json']} and {report.files['png']}")
