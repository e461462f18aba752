"""``topolet cpumanager status``: the CPU manager's pools and exclusive assignments,
read from its checkpoint (no lock taken, nothing written)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from cpumanager.checkpoint_format import CPUManagerCheckpoint
from topolet.cli import CommandError, common_options
from topolet.help_text import plain
from topolet.node_config import NodeSettings, add_node_options


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "cpumanager",
        parents=[common_options()],
        help="inspect the CPU manager's state",
        description=plain(__doc__),
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    s = sub.add_parser("status", parents=[common_options()], help="print pools and assignments")
    s.add_argument("--format", choices=["table", "json"], default="table")
    add_node_options(s)
    s.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    settings = NodeSettings.from_args(args)
    topo = settings.topology()
    store = settings.store()
    cp = store.load()
    if cp is None:
        raise CommandError(f"no CPU manager checkpoint at {store.path} (nothing pinned yet)")
    if not isinstance(cp, CPUManagerCheckpoint):
        raise CommandError(f"{store.path} uses the legacy container-ID layout")
    policy = settings.policy(topo)
    doc = {
        "checkpoint": str(store.path),
        "policy": cp.policy_name,
        "online": str(topo.online_cpus),
        "reserved": str(policy.reserved_cpus),
        "shared": str(cp.default_cpu_set),
        "isolated": str(topo.isolated_cpus),
        "assignments": [
            {
                "podUID": pod,
                "container": name,
                "cpus": str(cpus),
                "numaNodes": sorted(topo.numa_nodes_of(cpus)),
            }
            for pod, containers in sorted(cp.entries.items())
            for name, cpus in sorted(containers.items())
        ],
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return 0
    console = Console()
    pools = Table(title=f"CPU pools ({doc['checkpoint']})")
    for col in ("pool", "cpus"):
        pools.add_column(col)
    for key in ("online", "reserved", "shared", "isolated"):
        pools.add_row(key, str(doc[key]) or "-")
    console.print(pools)
    table = Table(title="exclusive assignments")
    for col in ("pod UID", "container", "cpus", "NUMA nodes"):
        table.add_column(col)
    for a in doc["assignments"]:  # type: ignore[attr-defined]
        table.add_row(a["podUID"], a["container"], a["cpus"], ",".join(map(str, a["numaNodes"])))
    console.print(table)
    return 0
