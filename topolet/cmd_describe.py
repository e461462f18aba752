"""``topolet describe``: what this node holds, from its checkpoint plus discovery.

Reads the ``cpu_manager_state`` checkpoint in ``--state-dir`` (no lock taken, nothing
written) and the topology under ``--root``, and prints the CPU pools, every exclusive
assignment, hugepages per NUMA node and the fragmentation of the assignable CPUs
(:func:`cpumanager.fragmentation.measure`). With no checkpoint yet it says so and shows
the pools a fresh static policy would start with. GPUs are not listed per assignment:
the checkpoint (kubelet's format) does not record devices.

``--format json`` prints one object with these keys (stable; CPU sets in Linux cpu-list
form, ``""`` when empty)::

    checkpoint     {"path": str, "present": bool, "valid": bool, "problem": str | null}
    topology       {"cpus", "sockets", "numaNodes", "threadsPerCore": int, "online": str}
    pools          {"online", "reserved", "shared", "isolated", "isolatedFree",
                    "exclusive", "assignable": str}
    assignments    [{"podUID", "container", "cpus": str, "numaNodes": [int], "sockets": [int],
                     "owner": {"kind", "identity", "source", "since", "why": str | null}}]
    cpus           [{"cpu", "numaNode", "socket", "core": int, "pool": str,
                     "owner": {"kind", "identity", "source", "since", "why",
                               "podUID", "container"} | null}]
    hugepages      [{"numaNode": int, "sizeKiB": int, "resource": str, "total": int,
                     "free": int | null}]
    fragmentation  {"freeCPUs", "freeWholeCores", "partlyFreeCores": int,
                    "freeNUMANodes", "freeSockets": [int],
                    "largestNUMAFree": int, "largestNUMAFraction": float,
                    "largestSocketFree": int, "largestSocketFraction": float,
                    "coreScore", "numaScore", "socketScore", "score": float}

``pools.shared`` is the checkpoint's default cpuset; ``assignable`` is shared minus
reserved (what exclusive requests draw from, and what fragmentation is measured on);
``isolatedFree`` is the part of the isolated pool no container holds; ``valid`` is false,
with ``problem`` saying why, when the checkpoint does not match this machine and policy.

``--cpu N`` answers "who owns CPU N and why": one row of ``cpus`` (owner kind ``pod``,
``device-plugin``, ``run``, ``isolated-pool`` or ``reserved``, its identity, since when,
the NUMA node and why this CPU), as a table or, with ``--format json``, that object. The
rows come from :func:`cpumanager.ownership.cpu_rows`, as ``topolet cpumanager status``'s.
The machine is always seen whole, whatever cpuset the command runs in.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from cpumanager.errors import CPUManagerError
from cpumanager.fragmentation import Fragmentation, measure
from cpumanager.isolated import POOL_POD_UID, free_isolated
from cpumanager.owners import Owner
from cpumanager.ownership import describe_state, read_view
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from topolet.cli import CommandError, common_options
from topolet.help_text import plain
from topolet.node_config import NodeSettings, add_node_options
from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = ["describe", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "describe",
        parents=[common_options()],
        help="what this node holds: pools, assignments, hugepages, fragmentation",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="rich tables (default) or one JSON object",
    )
    p.add_argument("--cpu", type=int, default=None, metavar="N", help="who owns CPU N and why")
    add_node_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = NodeSettings.from_args(args)
        doc = describe(settings)
    except ValueError as e:
        raise CommandError(str(e)) from e
    if args.cpu is not None:
        return _print_cpu(doc, args.cpu, args.format)
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        _print_tables(Console(), doc)
    return 0


# ------------------------------------------------------------------ model


def _load_state(
    settings: NodeSettings, policy: StaticPolicy, topo: Topology
) -> tuple[MemoryState, dict[tuple[str, str], Owner], bool]:
    """The checkpoint's state and owners, or a fresh policy's (third item: a checkpoint was read)."""
    try:
        return read_view(settings.store(), topo, policy)
    except CPUManagerError as e:
        raise CommandError(str(e)) from e


def _problem(policy: StaticPolicy, state: MemoryState) -> str | None:
    try:
        policy.validate_state(MemoryState(state.get_default_cpuset(), state.assignments()))
    except CPUManagerError as e:
        return str(e)
    return None


def describe(settings: NodeSettings) -> dict[str, Any]:
    """The JSON document described in the module docstring."""
    topo = settings.topology()
    policy = settings.policy(topo)
    state, owners, present = _load_state(settings, policy, topo)
    problem = _problem(policy, state) if present else None
    view = describe_state(topo, policy, state, owners)
    assignments = _assignments(topo, state, view)
    exclusive = CPUSet().union(*(CPUSet.parse(a["cpus"]) for a in assignments))
    assignable = policy.available_cpus(state)
    return {
        "checkpoint": {
            "path": str(settings.store().path),
            "present": present,
            "valid": problem is None,
            "problem": problem,
        },
        "topology": {
            "cpus": topo.num_cpus,
            "sockets": topo.num_sockets,
            "numaNodes": topo.num_numa_nodes,
            "threadsPerCore": topo.threads_per_core(),
            "online": str(topo.online_cpus),
        },
        "pools": {
            "online": str(topo.online_cpus),
            "reserved": str(policy.reserved_cpus),
            "shared": str(state.get_default_cpuset()),
            "isolated": str(topo.isolated_cpus),
            "isolatedFree": str(free_isolated(state)),
            "exclusive": str(exclusive),
            "assignable": str(assignable),
        },
        "assignments": assignments,
        "cpus": view["cpus"],
        "hugepages": _hugepages(topo),
        "fragmentation": _fragmentation(measure(policy.view, assignable)),
    }


def _assignments(topo: Topology, state: MemoryState, view: dict[str, Any]) -> list[dict[str, Any]]:
    owner = {(a["podUID"], a["container"]): a["owner"] for a in view["assignments"]}
    return [
        {
            "podUID": pod,
            "container": name,
            "cpus": str(cpus),
            "numaNodes": sorted(topo.numa_nodes_of(cpus)),
            "sockets": sorted(topo.sockets_of(cpus)),
            "owner": owner[(pod, name)],
        }
        for pod, containers in sorted(state.assignments().items())
        if pod != POOL_POD_UID
        for name, cpus in sorted(containers.items())
    ]


def _print_cpu(doc: dict[str, Any], cpu: int, fmt: str) -> int:
    rows = {r["cpu"]: r for r in doc["cpus"]}
    if cpu not in rows:
        raise CommandError(
            f"--cpu: {cpu} is not an online CPU of this node (online: {doc['topology']['online']})"
        )
    row = rows[cpu]
    if fmt == "json":
        print(json.dumps(row, indent=2))
        return 0
    table = Table(title=f"CPU {cpu}")
    table.add_column("field")
    table.add_column("value")
    table.add_row("NUMA node", str(row["numaNode"]))
    table.add_row("socket / core", f"{row['socket']} / {row['core']}")
    table.add_row("pool", row["pool"])
    owner = row["owner"]
    if owner is None:
        table.add_row("owner", "none: the shared pool (every container without exclusive CPUs runs here)")
    else:
        for key in ("kind", "identity", "source", "since", "why", "podUID", "container"):
            table.add_row(key, str(owner[key]) if owner[key] is not None else "-")
    Console().print(table)
    return 0


def _hugepages(topo: Topology) -> list[dict[str, Any]]:
    return [
        {
            "numaNode": node.id,
            "sizeKiB": pages.size_kb,
            "resource": pages.resource_name,
            "total": pages.total,
            "free": pages.free,
        }
        for node in sorted(topo.numa_nodes.values(), key=lambda n: n.id)
        for pages in sorted(node.hugepages.values(), key=lambda p: p.size_kb)
    ]


def _fragmentation(frag: Fragmentation) -> dict[str, Any]:
    return {
        "freeCPUs": frag.free_cpus,
        "freeWholeCores": frag.free_whole_cores,
        "partlyFreeCores": frag.partly_free_cores,
        "freeNUMANodes": list(frag.free_numa_nodes),
        "freeSockets": list(frag.free_sockets),
        "largestNUMAFree": frag.largest_numa_free,
        "largestNUMAFraction": round(frag.largest_numa_fraction, 4),
        "largestSocketFree": frag.largest_socket_free,
        "largestSocketFraction": round(frag.largest_socket_fraction, 4),
        "coreScore": round(frag.core_score, 4),
        "numaScore": round(frag.numa_score, 4),
        "socketScore": round(frag.socket_score, 4),
        "score": round(frag.score, 4),
    }


# ----------------------------------------------------------------- tables


def _ids(values: list[int]) -> str:
    return ",".join(map(str, values)) or "-"


def _print_tables(console: Console, doc: dict[str, Any]) -> None:
    cp = doc["checkpoint"]
    if not cp["present"]:
        console.print(f"no checkpoint yet at {cp['path']}: pools as a fresh static policy starts them")
    elif not cp["valid"]:
        console.print(f"[bold red]checkpoint {cp['path']} does not match this node:[/] {cp['problem']}")
    pools = Table(
        title=f"CPU pools ({doc['topology']['cpus']} CPUs, {doc['topology']['sockets']} sockets, "
        f"{doc['topology']['numaNodes']} NUMA nodes)"
    )
    pools.add_column("pool")
    pools.add_column("cpus")
    for key, cpus in doc["pools"].items():
        pools.add_row(key, cpus or "-")
    console.print(pools)
    table = Table(title="exclusive assignments")
    for col in ("pod UID", "container", "cpus", "NUMA nodes", "sockets", "owner", "since"):
        table.add_column(col)
    for a in doc["assignments"]:
        o = a["owner"]
        table.add_row(
            a["podUID"],
            a["container"],
            a["cpus"],
            _ids(a["numaNodes"]),
            _ids(a["sockets"]),
            f"{o['kind']}: {o['identity']}",
            o["since"] or "-",
        )
    console.print(table)
    console.print(_hugepage_table(doc["hugepages"]))
    console.print(_fragmentation_table(doc["fragmentation"]))


def _hugepage_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="hugepages per NUMA node")
    for col in ("NUMA node", "resource", "total", "free"):
        table.add_column(col, justify="right")
    for h in rows:
        free = "?" if h["free"] is None else str(h["free"])
        table.add_row(str(h["numaNode"]), h["resource"], str(h["total"]), free)
    return table


def _fragmentation_table(frag: dict[str, Any]) -> Table:
    table = Table(title="fragmentation of the assignable CPUs (score 0 packed .. 1 scattered)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in frag.items():
        text = _ids(value) if isinstance(value, list) else str(value)
        table.add_row(key, text)
    return table
