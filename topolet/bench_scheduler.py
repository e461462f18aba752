"""``topolet bench scheduler``: the real kube-scheduler's pods/s, default profile vs topolet's.

The measuring code is :mod:`bench.scheduler_throughput`; this module supplies the nodes
(Node objects plus NRT objects from topolet's publisher, all of one real hwloc topology),
parses the arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from topolet.arg_types import positive_int
from topolet.cli import CommandError, common_options
from topolet.tables import add_format_option, add_quick_option, print_table, wants_json

__all__ = ["register_scheduler"]

DEFAULT_SNAPSHOT = "32intel64-2p8co2t+8ve"


def register_scheduler(subparsers: Any) -> None:
    """Add ``scheduler`` to the ``topolet bench`` subcommands."""
    p = subparsers.add_parser(
        "scheduler",
        parents=[common_options()],
        help="real kube-scheduler pods/s on 1000 and 5000 fake nodes, default vs topolet profile",
        description="Run etcd, kube-apiserver and kube-scheduler (built by tests/e2e/build.py) on "
        "127.0.0.1, add fake nodes with NRT objects, and schedule the same Guaranteed pods with "
        "the default profile and with topolet's shipped configuration: pods/s of each, their "
        "ratio, and the extender's share of the scheduling algorithm time from the scheduler's "
        "own metrics.",
    )
    p.add_argument("--nodes", default="1000,5000", help="node counts, comma-separated (default 1000,5000)")
    p.add_argument("--pods", type=positive_int, default=1000, help="pods per run (default 1000)")
    p.add_argument("--cpus", type=positive_int, default=2, help="CPUs per pod (default 2)")
    add_quick_option(p, "100 nodes, 100 pods (about 20 s)")
    p.add_argument("--qps", type=positive_int, default=1000, help="scheduler client QPS and burst")
    p.add_argument(
        "--snapshot", default=DEFAULT_SNAPSHOT, help=f"hwloc topology of every node ({DEFAULT_SNAPSHOT})"
    )
    p.add_argument("--bin-dir", type=Path, metavar="DIR", help="etcd/kube-apiserver/kube-scheduler")
    p.add_argument("--deploy", type=Path, metavar="DIR", help="topolet's deploy/ directory")
    p.add_argument("--work-dir", type=Path, metavar="DIR", help="state and logs (default: a temp dir)")
    p.add_argument(
        "--floor",
        action="store_true",
        help="also run the shipped configuration against a do-nothing extender served by the same "
        "Python HTTP stack (no bindVerb): what the two HTTP exchanges per pod cost on this machine",
    )
    add_format_option(p)
    p.set_defaults(func=_run)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CommandError(f"--nodes: expected comma-separated node counts, got {text!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 20000:
        raise CommandError(f"--nodes: expected counts between 1 and 20000, got {text!r}")
    return counts


def _topology(name: str) -> Any:
    """The topology of hwloc snapshot *name* (discovered from its extracted sysfs)."""
    from bench.discover import SnapshotsNotFoundError, default_snapshots_dir, extracted, find_snapshots
    from topology.sysfs import discover

    try:
        snaps = find_snapshots(default_snapshots_dir(), [name])
    except SnapshotsNotFoundError as err:
        raise CommandError(f"--snapshot {name}: {err.strerror} ({err.filename})") from None
    with extracted(snaps) as roots:
        return discover(roots[name])


def _add(api: Any, names: list[str], topo: Any) -> None:
    from topolet.testbed import add_nodes

    add_nodes(api, [(n, topo) for n in names])


def _run(args: argparse.Namespace) -> int:
    from bench.controlplane import ControlPlaneError, find_bin_dir
    from bench.kube_stack import DEFAULT_DEPLOY, StackError
    from bench.scheduler_throughput import as_dicts, run

    counts, pods = ((100,), 100) if args.quick else (_counts(args.nodes), args.pods)
    deploy = args.deploy or DEFAULT_DEPLOY
    try:
        bin_dir = find_bin_dir(args.bin_dir)
        topo = _topology(args.snapshot)
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="topolet-bench-scheduler-"))
        results = run(
            bin_dir,
            work,
            deploy,
            node_counts=counts,
            pods=pods,
            cpus=args.cpus,
            qps=args.qps,
            floor=args.floor,
            add_nodes=lambda api, names: _add(api, names, topo),
        )
    except (ControlPlaneError, StackError) as err:
        raise CommandError(str(err)) from err
    if wants_json(args):
        print(json.dumps(as_dicts(results), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"kube-scheduler {pods} Guaranteed pods ({args.cpus} CPUs), nodes: {args.snapshot}")
    for col in ("nodes", "profile", "pods/s", "ratio", "algo s", "in-tree s", "ext share", "ext server s"):
        table.add_column(col, justify="right")
    base = {r.nodes: r.pods_per_s for r in results if r.profile == "default-scheduler"}
    for r in results:
        ratio = r.pods_per_s / base[r.nodes] if base.get(r.nodes) else 0.0
        table.add_row(
            str(r.nodes),
            r.profile.removesuffix("-scheduler"),
            f"{r.pods_per_s:.1f}",
            f"{ratio:.2f}",
            f"{r.algorithm_s:.2f}",
            f"{r.in_tree_s:.2f}",
            f"{r.extender_share:.0%}" if r.profile != "default-scheduler" else "-",
            f"{r.extender_server_s:.2f}" if r.profile == "topolet-scheduler" else "-",
        )
    console = Console()
    print_table(table, console)
    labels = ("kube-scheduler", "kube-apiserver", "etcd", "extender")
    cpu = Table(title="CPU per scheduled pod, ms (from /proc/<pid>/stat over the same window as pods/s)")
    for col in ("nodes", "profile", *labels, "all"):
        cpu.add_column(col, justify="right")
    for r in results:
        figures = [r.cpu_ms_per_pod.get(label) for label in labels]
        cells = [f"{v:.2f}" if v is not None else "-" for v in figures]
        total = sum(v for v in figures if v is not None)
        cpu.add_row(str(r.nodes), r.profile.removesuffix("-scheduler"), *cells, f"{total:.2f}")
    print_table(cpu, console)
    console.print(
        "extender: topolet's (also during the default profile, when it only watches) or the "
        "do-nothing one; with 2 cores, pods/s is about the busy cores over the CPU per pod"
    )
    return 0
