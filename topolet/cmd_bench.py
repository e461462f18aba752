"""``topolet bench``: the benchmark suite, one ``bench <name>`` subcommand per benchmark.

Each benchmark registers through a function in :data:`BENCHMARKS`; the measuring code
lives in the ``bench`` package, this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from topolet.cli import CommandError, common_options

__all__ = ["BENCHMARKS", "register"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ------------------------------------------------------------------ bench discover


def _register_discover(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "discover",
        parents=[common_options()],
        help="time topology discovery on the hwloc snapshots (target: < 200 ms on the largest)",
        description=(
            "Time topology.sysfs.discover() on every hwloc snapshot of the conformance set "
            "(each extracted once), or on one snapshot, or on one root directory. Reports "
            "p50/p99/max per snapshot and for the largest one."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--root", type=Path, metavar="DIR", help="time this root instead of the snapshots")
    where.add_argument(
        "--snapshot", action="append", default=[], metavar="NAME", help="only this snapshot (repeatable)"
    )
    p.add_argument(
        "--snapshots",
        type=Path,
        metavar="DIR",
        help="the hwloc conformance directory (default: <repo>/../shared/conformance/hwloc)",
    )
    p.add_argument(
        "--repeat", type=_positive, default=20, metavar="N", help="timed runs per root (default 20)"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_run_discover)


def _run_discover(args: argparse.Namespace) -> int:
    from bench import discover as bd

    if args.root is not None:
        results = [bd.bench_root(str(args.root), args.root, args.repeat)]
    else:
        snapshots = bd.find_snapshots(args.snapshots or bd.default_snapshots_dir(), args.snapshot)
        if not snapshots:
            raise CommandError("the snapshot directory holds no expected/*.json cases")
        results = bd.run(snapshots, args.repeat)
    if args.json:
        json.dump(bd.to_json(results), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from rich.console import Console

        Console().print(bd.render_table(results))
    return 0


#: ``(name, register)`` of every ``topolet bench`` subcommand.
BENCHMARKS: tuple[tuple[str, Callable[[Any], None]], ...] = (("discover", _register_discover),)


def register(subparsers: Any) -> None:
    """Add ``bench`` and its benchmark subcommands to *subparsers*."""
    names = ", ".join(name for name, _ in BENCHMARKS)
    p = subparsers.add_parser(
        "bench",
        parents=[common_options()],
        help=f"run a benchmark ({names})",
        description="Benchmarks of topolet's components.",
    )
    benches = p.add_subparsers(title="benchmarks", metavar="BENCHMARK")
    for _, add in BENCHMARKS:
        add(benches)

    def _usage(_: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_usage)
