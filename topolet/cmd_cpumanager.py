"""``topolet cpumanager status``: the CPU manager's pools, exclusive assignments and the
owner of every CPU, read from its checkpoint and owner records (no lock taken, nothing
written). The data comes from the same function as ``topolet describe`` and the node
agent's own status (:func:`cpumanager.ownership.describe_state`)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from cpumanager.errors import CPUManagerError
from cpumanager.ownership import describe_state, read_view
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
    s = sub.add_parser("status", parents=[common_options()], help="print pools, assignments and owners")
    s.add_argument("--format", choices=["table", "json"], default="table")
    add_node_options(s)
    s.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    settings = NodeSettings.from_args(args)
    topo = settings.topology()
    policy = settings.policy(topo)
    store = settings.store()
    try:
        state, owners, present = read_view(store, topo, policy)
        if present:
            # The checks `run` and the agent make on start, with the same text (exit 1).
            policy.validate_state(state)
    except CPUManagerError as e:
        raise CommandError(str(e)) from e
    if not present:
        raise CommandError(f"no CPU manager checkpoint at {store.path} (nothing pinned yet)")
    doc = {"checkpoint": str(store.path), **describe_state(topo, policy, state, owners)}
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return 0
    console = Console()
    pools = Table(title=f"CPU pools ({doc['checkpoint']})")
    for col in ("pool", "cpus"):
        pools.add_column(col)
    for key in ("online", "reserved", "shared", "assignable", "isolated"):
        pools.add_row(key, str(doc[key]) or "-")
    console.print(pools)
    table = Table(title="exclusive assignments")
    for col in ("pod UID", "container", "cpus", "NUMA nodes", "owner", "identity", "since", "why"):
        table.add_column(col)
    for a in doc["assignments"]:  # type: ignore[attr-defined]
        o = a["owner"]
        table.add_row(
            a["podUID"],
            a["container"],
            a["cpus"],
            ",".join(map(str, a["numaNodes"])),
            o["kind"],
            o["identity"],
            o["since"] or "-",
            o["why"],
        )
    console.print(table)
    return 0
