"""``topolet simulate``: topology-aware vs topology-blind placement on an in-memory cluster.

Parses the options into a :class:`bench.simulate.SimConfig`, runs it and prints the
table (or the JSON); the simulation itself lives in :mod:`bench.simulate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from topolet.arg_types import positive_int
from topolet.cli import CommandError, common_options
from topolet.tables import add_format_option, print_table, wants_json

__all__ = ["DEFAULT_OUT", "register", "run"]

DEFAULT_OUT = Path("topolet-report") / "simulate"


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand."""
    from bench.simulate.nodes import NODE_TYPES

    p = subparsers.add_parser(
        "simulate",
        parents=[common_options()],
        help="simulate a cluster: topolet's extender vs a topology-blind scheduler",
        description=(
            "Schedule a pod trace on an in-memory cluster of real machine topologies twice: with the "
            "topolet extender and with a topology-blind kube-scheduler. Each node's kubelet runs the "
            "static CPU manager and the single-numa-node topology manager. Reports pods admitted, "
            "TopologyAffinityErrors, NUMA/socket alignment, fragmentation and packing against an LP "
            "upper bound; writes simulate.json and plots."
        ),
    )
    p.add_argument(
        "--nodes",
        type=positive_int,
        default=None,
        help="nodes of the built-in types (default 16; 8 with --quick)",
    )
    p.add_argument(
        "--node-type",
        action="append",
        default=None,
        metavar="TYPE[:WEIGHT]",
        help=f"node type in the mix, repeatable (types: {', '.join(NODE_TYPES)}; "
        "default xeon-e5-2680v3:2, gpu8-2s64c:1, epyc-7763-nps4:1)",
    )
    p.add_argument(
        "--pods", type=positive_int, default=None, help="generated pods (default 1000; 300 with --quick)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--trace", type=Path, metavar="FILE", help="a YAML pod trace instead of the generator")
    p.add_argument(
        "--hwloc",
        type=Path,
        metavar="DIR",
        help="also one node per usable snapshot of this hwloc conformance set",
    )
    p.add_argument(
        "--retries", type=int, default=0, help="re-submit a rejected pod up to N times (default 0)"
    )
    p.add_argument(
        "--strategy", default=None, help="the extender's scoring strategy (default least-numa-nodes)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"report directory (default ./{DEFAULT_OUT})",
    )
    p.add_argument("--no-plots", action="store_true", help="write only simulate.json")
    add_format_option(p)
    p.add_argument("--quick", action="store_true", help="a small run: 8 nodes, 300 pods")
    p.set_defaults(func=_main)


def _config(args: argparse.Namespace) -> Any:
    from bench.simulate import QUICK, SimConfig
    from bench.simulate.nodes import MixError, parse_mix

    base = QUICK if args.quick else SimConfig()
    changes: dict[str, Any] = {
        "seed": args.seed,
        "trace": args.trace,
        "hwloc": args.hwloc,
        "out_dir": args.out,
        "plots": not args.no_plots,
    }
    if args.nodes is not None:
        changes["nodes"] = args.nodes
    if args.pods is not None:
        changes["pods"] = args.pods
    if args.strategy is not None:
        changes["strategy"] = args.strategy
    changes["retries"] = args.retries
    try:
        if args.node_type:
            changes["mix"] = parse_mix(args.node_type)
        return replace(base, **changes)
    except (MixError, ValueError) as err:
        raise CommandError(str(err)) from err


def run(config: Any) -> dict[str, Any]:
    """Run one simulation (a :class:`bench.simulate.SimConfig`); user errors become CommandError."""
    from bench.simulate import run as simulate
    from bench.simulate.nodes import MixError
    from bench.simulate.trace import TraceError
    from scheduler.errors import SchedulerError

    try:
        return simulate(config)
    except (MixError, TraceError, SchedulerError) as err:
        raise CommandError(str(err)) from err


def _main(args: argparse.Namespace) -> int:
    report = run(_config(args))
    if wants_json(args):
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console

    from bench.simulate.report import render_table

    console = Console()
    print_table(render_table(report), console)
    console.print(f"report: {args.out} ({report['wall_s']:.1f} s)")
    return 0
