"""``topolet bench extender``: filter + prioritize latency and sustained pods/s of the extender.

The measuring code is :mod:`bench.extender`; this module parses the arguments and prints
the figures beside the design targets (p99 <= 5 ms at 5000 node names, >= 1000 pods/s).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scheduler.extender import DEFAULT_SERVER, SERVERS
from topolet.arg_types import positive_int
from topolet.cli import CommandError, common_options
from topolet.tables import add_format_option, add_quick_option, print_table, wants_json

__all__ = ["register_extender"]


def register_extender(subparsers: Any) -> None:
    """Add ``extender`` to the ``topolet bench`` subcommands."""
    p = subparsers.add_parser(
        "extender",
        parents=[common_options()],
        help="extender filter + prioritize p50/p99 and pods/s (target p99 <= 5 ms at 5000 names)",
        description="Schedule pods against an in-memory cluster of NRT objects through the "
        "extender (in process and over loopback HTTP): filter + prioritize latency per "
        "candidate-list size, and sustained pods/s from concurrent client processes.",
    )
    p.add_argument("--nodes", type=positive_int, default=5000, help="nodes in the cluster (default 5000)")
    p.add_argument(
        "--names",
        default="500,5000",
        help="candidate node names per request, comma-separated (default 500,5000)",
    )
    p.add_argument(
        "--calls", type=positive_int, default=300, help="pods timed per configuration (default 300)"
    )
    p.add_argument(
        "--http",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure over loopback HTTP and the sustained pods/s (default on)",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="duration of the sustained run (default 5)")
    p.add_argument("--clients", type=positive_int, default=2, help="client processes of the sustained run")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="extender worker processes for the sustained run (default 1)",
    )
    p.add_argument(
        "--attack",
        action="store_true",
        help="instead: the load test (2000 idle + 1000 slowloris connections + huge bodies while a "
        "steady client sends filter+prioritize; --seconds long)",
    )
    p.add_argument(
        "--server",
        choices=(*SERVERS, "both"),
        default=DEFAULT_SERVER,
        help="HTTP server to measure: uvicorn, builtin, or both back to back in one run "
        f"(default {DEFAULT_SERVER})",
    )
    add_quick_option(p, "as --nodes 1000 --names 100,1000 --calls 50 --seconds 2")
    add_format_option(p)
    p.set_defaults(func=_run)


def _names(text: str, nodes: int) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CommandError(
            f"--names: expected comma-separated integers such as 500,5000, got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise CommandError(f"--names: expected positive integers, got {text!r}")
    return tuple(min(c, nodes) for c in counts)


def _run(args: argparse.Namespace) -> int:
    from bench import extender

    if args.quick:
        args.nodes, args.names, args.calls, args.seconds = 1000, "100,1000", 50, 2.0
    if args.seconds <= 0:
        raise CommandError(f"--seconds: expected a positive number, got {args.seconds}")
    servers = SERVERS if args.server == "both" else (args.server,)
    if args.attack:
        from bench.extender_attack import run_attack

        attacks = [run_attack(seconds=args.seconds, server_kind=kind) for kind in servers]
        print(json.dumps(attacks[0] if len(attacks) == 1 else attacks, indent=2))
        return 0
    runs = [
        extender.run(
            args.nodes,
            args.calls,
            _names(args.names, args.nodes),
            http=args.http,
            sustained_s=args.seconds,
            clients=args.clients,
            workers=args.workers,
            server=kind,
        )
        for kind in servers
    ]
    if wants_json(args):
        print(json.dumps(runs[0] if len(runs) == 1 else runs, indent=2))
        return 0
    for out in runs:
        _print(out)
    return 0


def _print(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    targets = out["targets"]
    load = " ".join(f"{x:.2f}" for x in out["load_average_before"])
    table = Table(
        title=f"extender filter + prioritize, {out['nodes']} nodes, {out['server']} server "
        f"(target p99 <= 5 ms; load average {load})"
    )
    for col in ("path", "names", "calls", "p50 ms", "p99 ms", "max ms", "cold ms", "first request ms"):
        table.add_column(col, justify="right")
    for kind in ("in_process", "http"):
        for count, r in out.get(kind, {}).items():
            table.add_row(
                kind,
                str(count),
                str(r["samples"]),
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['max_ms']:.2f}",
                f"{r['cold_ms']:.2f}",
                f"{r['first_request_ms']:.2f}",
            )
    console = Console()
    print_table(table, console)
    sustained = out.get("sustained")
    if sustained:
        met = "met" if targets["pods_per_s_met"] else "not met"
        console.print(
            f"sustained: {sustained['pods_per_s']} pods/s ({sustained['pods']} pods, {sustained['clients']} "
            f"client processes, {sustained['workers']} extender worker(s), {sustained['node_names']} names; "
            f"target >= 1000 pods/s: {met})"
        )
    pairs = out.get("sustained_pairs")
    if pairs:
        met = "met" if targets["pairs_per_s_met"] else "not met"
        console.print(
            f"sustained without binds: {pairs['pairs_per_s']} filter + prioritize pairs/s "
            f"({pairs['pairs']} pairs, {pairs['clients']} client processes; target >= 1000 pairs/s: {met})"
        )
    at_500 = targets.get("http_p99_ms_at_500")
    if at_500 is not None:
        met = "met" if targets["http_p99_at_500_met"] else "not met"
        console.print(f"HTTP p99 at 500 names: {at_500:.2f} ms (target <= 1 ms: {met})")
    if targets.get("cold_ms") is not None:
        met = "met" if targets["cold_met"] else "not met"
        console.print(f"first pod of a new shape: {targets['cold_ms']:.2f} ms (target <= 10 ms: {met})")
    wake = out.get("wake")
    if wake:
        console.print(
            f"one warm filter + prioritize pair in process ({wake['names']} names), median: "
            f"{wake['back_to_back_ms']:.3f} ms back to back, {wake['after_sleep_ms']:.3f} ms after a "
            f"{wake['gap_ms']:.1f} ms sleep, {wake['after_busy_wait_ms']:.3f} ms after a busy wait as long "
            "(the sleep's extra is what a request that finds the CPU idle pays here)"
        )
    console.print(
        "p50/p99/max: after the first pod of each shape and an idle pause that lets the extender "
        "fill the shapes' tables; first request: a fresh extender's first request (its own warm-up)"
    )
