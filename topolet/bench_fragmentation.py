"""``topolet bench fragmentation``: argument parsing and printing for
:mod:`bench.fragmentation` (whole-socket availability under churn, kubelet's choice vs
the fragmentation-aware choice)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from topolet.arg_types import fraction, positive_int
from topolet.cli import CommandError, common_options
from topolet.tables import add_format_option, add_quick_option, print_table, wants_json

__all__ = ["register_fragmentation"]


def register_fragmentation(subparsers: Any) -> None:
    """Add the ``fragmentation`` benchmark parser to *subparsers*."""
    p = subparsers.add_parser(
        "fragmentation",
        parents=[common_options()],
        help="whole-socket requests still satisfiable under churn: kubelet vs fragmentation-aware",
        description="Replay seeded random churn traces (allocate/release of 1-8 CPUs) on the 48-CPU "
        "dual-socket node with kubelet's choice and with the fragmentation-aware choice, and report "
        "how often a whole-socket (24 CPU) request could still be satisfied.",
    )
    p.add_argument("--seeds", type=positive_int, default=5, help="traces to replay (default 5)")
    p.add_argument("--steps", type=positive_int, default=2000, help="events per trace (default 2000)")
    p.add_argument(
        "--load",
        type=fraction,
        default=0.5,
        help="demand the trace wanders around, as a share of the CPUs (default 0.5)",
    )
    p.add_argument(
        "--reserved",
        type=int,
        default=0,
        metavar="N",
        help="CPUs reserved for the system, chosen as kubelet chooses them (default 0)",
    )
    add_quick_option(p, "as --seeds 2 --steps 500")
    add_format_option(p)
    p.set_defaults(func=_run_fragmentation)


def _run_fragmentation(args: argparse.Namespace) -> int:
    from bench import fragmentation

    if not 0 <= args.reserved < 24:
        raise CommandError(f"--reserved: expected 0 to 23 CPUs, got {args.reserved}")
    if args.quick:
        args.seeds, args.steps = 2, 500
    report = fragmentation.run(
        seeds=args.seeds, steps=args.steps, load=args.load, num_reserved_cpus=args.reserved
    )
    if wants_json(args):
        print(json.dumps(fragmentation.as_dicts(report), indent=2))
        return 0
    print_table(fragmentation.render_table(report))
    return 0
