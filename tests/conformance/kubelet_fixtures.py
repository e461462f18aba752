"""kubelet's CPU/topology manager test cases and its topology fixtures as topolet values.

``load_kubelet_cases()`` reads the kubelet set's ``cases.json`` (see :mod:`tests.conformance_sets`);
``build_topology(entry)`` turns one of its ``topologies[]`` entries into a
:class:`~topology.model.Topology` with the fixture's own ids: core ids as ``Core.id``,
socket ids as ``Package.id``, NUMA ids as ``NumaNode.id`` and uncore cache ids as L3
``CacheGroup`` ids. Some fixtures declare counts (``numCPUs``, ``numCores``, ...) that
differ from their CPU lists; ``declared_counts(entry)`` gives those as written.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tests.conformance_sets import load_cases
from topology.cpuset import CPUSet
from topology.model import CacheGroup, Core, NumaNode, Package, Topology


def load_kubelet_cases() -> dict[str, Any]:
    """The whole merged cases.json document (read once; treat it as read-only)."""
    return load_cases("kubelet")


def topology_entry(name: str) -> dict[str, Any]:
    """The ``topologies[]`` entry called *name*."""
    for entry in load_kubelet_cases()["topologies"]:
        if entry["name"] == name:
            return dict(entry)
    raise KeyError(f"no kubelet topology fixture named {name!r}")


def _grouped(cpus: list[dict[str, Any]], key: str) -> dict[int, CPUSet]:
    members: dict[int, list[int]] = defaultdict(list)
    for c in cpus:
        if key in c:
            members[c[key]].append(c["cpu"])
    return {unit: CPUSet(ids) for unit, ids in sorted(members.items())}


def build_topology(entry: dict[str, Any]) -> Topology:
    """A :class:`Topology` with exactly the fixture's CPUs and ids.

    A core whose CPUs span sockets (some fixtures reuse core ids per socket) gets
    ``package=None``.
    """
    cpus: list[dict[str, Any]] = entry["cpus"]
    socket_of = {c["cpu"]: c["socket"] for c in cpus}
    cores = []
    for core_id, members in _grouped(cpus, "core").items():
        sockets = {socket_of[c] for c in members}
        package = sockets.pop() if len(sockets) == 1 else None
        cores.append(Core(id=core_id, core_id=core_id, package=package, cpus=members))
    return Topology.build(
        packages=[Package(id=s, cpus=m, os_index=s) for s, m in _grouped(cpus, "socket").items()],
        numa_nodes=[NumaNode(id=n, cpus=m) for n, m in _grouped(cpus, "numa").items()],
        cores=cores,
        l3_groups=[CacheGroup(id=u, level=3, cpus=m) for u, m in _grouped(cpus, "uncore_cache").items()],
    )


def declared_counts(entry: dict[str, Any]) -> dict[str, int]:
    """The fixture's declared counts, keyed like :class:`cpumanager.cpu_topology.CPUTopology`."""
    return {
        "declared_cpus": entry["numCPUs"],
        "declared_cores": entry["numCores"],
        "declared_sockets": entry["numSockets"],
        "declared_numa_nodes": entry["numNUMANodes"],
        "declared_l3_caches": entry["numUncoreCache"],
    }
