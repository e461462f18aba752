"""``topolet bench``: the benchmark suite, one ``bench <name>`` subcommand per benchmark.

Each benchmark registers through a function in :data:`BENCHMARKS`; the measuring code
lives in the ``bench`` package, this module only parses arguments and prints. Every
benchmark takes ``--quick`` (a first look in seconds) and ``--format table|json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from topolet.arg_types import positive_int
from topolet.bench_all import register_all
from topolet.bench_extender import register_extender
from topolet.bench_fragmentation import register_fragmentation
from topolet.bench_isolation import register_isolation
from topolet.bench_scheduler import register_scheduler
from topolet.cli import CommandError, common_options
from topolet.tables import TextTable, add_format_option, add_quick_option, print_table, wants_json

__all__ = ["BENCHMARKS", "register"]


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
        help="the hwloc conformance directory (default: <repo>/tests/conformance_data/hwloc)",
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        metavar="N",
        help="timed runs per root (default 20, 3 with --quick)",
    )
    add_quick_option(p, "3 runs on the 3 first snapshots")
    add_format_option(p)
    p.set_defaults(func=_run_discover)


def _run_discover(args: argparse.Namespace) -> int:
    from bench import discover as bd

    repeat = args.repeat or (3 if args.quick else 20)
    if args.root is not None:
        results = [bd.bench_root(str(args.root), args.root, repeat)]
    else:
        snapshots = bd.find_snapshots(args.snapshots or bd.default_snapshots_dir(), args.snapshot)
        if not snapshots:
            raise CommandError("the snapshot directory holds no expected/*.json cases")
        if args.quick and not args.snapshot:
            snapshots = sorted(snapshots, key=lambda s: s.name)[:3]
        results = bd.run(snapshots, repeat)
    if wants_json(args):
        json.dump(bd.to_json(results), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(bd.render_table(results))
    return 0


# ------------------------------------------------------------------ bench alloc


def _register_alloc(subparsers: Any) -> None:
    from bench.alloc import OPTIONS, SIZES

    p = subparsers.add_parser(
        "alloc",
        parents=[common_options()],
        help="allocate() p50/p99 on a 256-CPU, 2-socket, 8-NUMA, SMT-2 machine (target p99 <= 100 us)",
        description="Time the static policy's allocate() for several request sizes on an in-memory "
        "256-CPU, 2-socket, 8-NUMA, SMT-2 topology.",
    )
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="request sizes, comma-separated")
    p.add_argument(
        "--option",
        action="append",
        choices=sorted(OPTIONS),
        default=None,
        help="static policy option set to time (repeatable; default: default)",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="minimum timings per size (default 500, 50 with --quick)",
    )
    add_quick_option(p, "50 timings per size")
    add_format_option(p)
    p.set_defaults(func=_run_alloc)


def _run_alloc(args: argparse.Namespace) -> int:
    from bench import alloc

    try:
        sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    except ValueError:
        raise CommandError(f"--sizes: expected comma-separated integers, got {args.sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise CommandError("--sizes: expected positive integers")
    samples = args.samples or (50 if args.quick else 500)
    results = alloc.run(sizes=sizes, options=tuple(args.option or ["default"]), min_samples=samples)
    if wants_json(args):
        print(json.dumps(alloc.as_dicts(results), indent=2))
        return 0
    table = TextTable(
        "allocate() on 256 CPUs, 2 sockets, 8 NUMA nodes, SMT-2 (target p99 <= 100 us)",
        ["option", "request", "samples", "p50 us", "p99 us", "max us"],
        right={1, 2, 3, 4, 5},
    )
    for r in results:
        table.add(
            r.option, str(r.request), str(r.samples), f"{r.p50_us:.1f}", f"{r.p99_us:.1f}", f"{r.max_us:.1f}"
        )
    print_table(table)
    return 0


# ------------------------------------------------------------ bench deviceplugin


def _register_deviceplugin(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "deviceplugin",
        parents=[common_options()],
        help="Allocate / GetPreferredAllocation round trips over a unix socket (target p99 <= 2 ms)",
        description="Time device plugin RPCs of the exclusive-CPU resource through the real gRPC "
        "server on a unix socket, with a kubelet-like client in the same process.",
    )
    p.add_argument(
        "--repeat", type=positive_int, default=None, help="timed calls per RPC (default 500, 50 with --quick)"
    )
    p.add_argument("--cpus", type=positive_int, default=64, help="CPUs of the in-memory machine (default 64)")
    p.add_argument("--size", type=positive_int, default=4, help="CPUs per request (default 4)")
    add_quick_option(p, "50 calls per RPC")
    add_format_option(p)
    p.set_defaults(func=_run_deviceplugin)


def _run_deviceplugin(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from bench.deviceplugin import bench_deviceplugin

    results = bench_deviceplugin(args.repeat or (50 if args.quick else 500), cpus=args.cpus, size=args.size)
    if wants_json(args):
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    table = TextTable(
        f"device plugin round trips, {args.cpus} CPUs, size {args.size} (target p99 <= 2 ms)",
        ["rpc", "calls", "p50 us", "p99 us", "max us"],
        right={1, 2, 3, 4},
    )
    for r in results:
        table.add(r.rpc, str(r.calls), f"{r.p50_us:.0f}", f"{r.p99_us:.0f}", f"{r.max_us:.0f}")
    print_table(table)
    return 0


#: ``(name, register)`` of every ``topolet bench`` subcommand.
BENCHMARKS: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("all", register_all),
    ("discover", _register_discover),
    ("alloc", _register_alloc),
    ("deviceplugin", _register_deviceplugin),
    ("extender", register_extender),
    ("fragmentation", register_fragmentation),
    ("isolation", register_isolation),
    ("scheduler", register_scheduler),
)


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
