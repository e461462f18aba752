"""Hint providers as pure functions: which NUMA node sets could satisfy a request.

* CPUs, as kubelet's static CPU manager generates them (``generateCPUTopologyHints``):
  every NUMA subset with enough available CPUs is a hint; those as small as the smallest
  subset whose *capacity* covers the request are preferred.
* Memory and hugepages, as kubelet's static memory manager does (``calculateHints``):
  free amounts decide which subsets are hints, allocatable amounts decide which are
  preferred, and nodes already allocated as a group only combine as that group.

Nothing here reads node state: callers pass the topology and the free amounts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from topology import numa_bitmask as nb
from topology.cpuset import CPUSet
from topology.hint_errors import HintRequestError
from topology.hint_types import TopologyHint
from topology.model import HugePages, Topology

__all__ = [
    "cpu_hints_for_assignment",
    "cpu_topology_hints",
    "hugepage_topology_hints",
    "memory_topology_hints",
    "pod_effective_request",
]


def _check_request(request: int, what: str) -> None:
    if isinstance(request, bool) or not isinstance(request, int) or request < 0:
        raise HintRequestError(f"{what} must be a non-negative integer, got {request!r}")


def _numa_of(topo: Topology, cpus: CPUSet, what: str) -> Counter[int]:
    unknown = CPUSet(c for c in cpus if c not in topo.cpus)
    if unknown:
        raise HintRequestError(f"{what} CPUs {str(unknown)!r} are not CPUs of this topology")
    return Counter(topo.cpus[c].numa for c in cpus)


def cpu_topology_hints(
    topo: Topology,
    available: CPUSet,
    reusable: CPUSet,
    request: int,
    *,
    align_by_socket: bool = False,
) -> list[TopologyHint]:
    """CPU hints for *request* exclusive CPUs drawn from *available* and *reusable*.

    Subsets of the NUMA nodes that hold CPUs are visited by size, then in lexicographic
    id order. A subset is a hint when it holds every reusable CPU (CPUs of the pod's
    finished init containers) and at least *request* offered CPUs. A hint is preferred
    when its size equals the smallest subset whose total capacity covers the request;
    with ``align_by_socket`` also when it spans the minimal number of sockets. An empty
    list means the request cannot be satisfied.
    """
    _check_request(request, "CPU request")
    capacity = _numa_of(topo, topo.online_cpus, "topology")
    offered = _numa_of(topo, available | reusable, "available/reusable")
    needed_mask = nb.mask_of(_numa_of(topo, reusable, "reusable"))
    min_size = len(capacity)
    masks: list[int] = []
    for mask in nb.iterate_masks(capacity):
        nodes = nb.ids_of(mask)
        if sum(capacity[n] for n in nodes) >= request and len(nodes) < min_size:
            min_size = len(nodes)
        if needed_mask & ~mask or sum(offered[n] for n in nodes) < request:
            continue
        masks.append(mask)
    return [
        TopologyHint(nb.ids_of(m), _cpu_hint_preferred(topo, m, min_size, align_by_socket)) for m in masks
    ]


def _cpu_hint_preferred(topo: Topology, mask: int, min_size: int, align_by_socket: bool) -> bool:
    if align_by_socket and _socket_aligned(topo, mask, min_size):
        return True
    return nb.count(mask) == min_size


def _socket_aligned(topo: Topology, mask: int, min_size: int) -> bool:
    """True when the mask's nodes span the fewest sockets that *min_size* nodes can."""
    if topo.num_sockets == 0:
        return False
    per_socket = topo.num_numa_nodes // topo.num_sockets
    if per_socket == 0:
        return False
    min_sockets = -(-min_size // per_socket)
    nodes = nb.ids_of(mask)
    sockets = {info.socket for info in topo.cpus.values() if info.numa in nodes}
    return len(sockets) == min_sockets


def cpu_hints_for_assignment(
    topo: Topology, assigned: CPUSet, request: int, *, align_by_socket: bool = False
) -> list[TopologyHint]:
    """Hints regenerated for CPUs already assigned (after a restart): an empty list when
    the assignment's size differs from the request, else hints over those CPUs only."""
    if len(assigned) != request:
        return []
    return cpu_topology_hints(topo, assigned, CPUSet(), request, align_by_socket=align_by_socket)


def pod_effective_request(*, init: Sequence[tuple[int, bool]] = (), app: Sequence[int] = ()) -> int:
    """A pod's request for pod-scope hints: the larger of the peak during init and the
    long-running total. *init* holds ``(request, restartable)`` per init container in
    order; restartable (sidecar) init containers keep running beside later ones."""
    peak_init, sidecars = 0, 0
    for request, restartable in init:
        if restartable:
            sidecars += request
        else:
            peak_init = max(peak_init, sidecars + request)
    return max(peak_init, sum(app) + sidecars)


def memory_topology_hints(
    requests: Mapping[str, int],
    free: Mapping[int, Mapping[str, int]],
    *,
    allocatable: Mapping[int, Mapping[str, int]] | None = None,
    groups: Mapping[int, frozenset[int]] | None = None,
) -> dict[str, list[TopologyHint]]:
    """Hints for memory-like resources (bytes of ``memory``, ``hugepages-*``) per NUMA node.

    *free* and *allocatable* map node → resource → amount (allocatable defaults to free;
    a missing resource counts 0). *groups* maps a node that already holds allocations to
    the NUMA set it was allocated with ({n} for a single-node allocation); such a node is
    only usable with exactly that set. A subset is a hint when its free amounts cover
    every request; hints as small as the smallest subset whose allocatable amounts cover
    the requests are preferred. Every requested resource gets the same list; an empty
    list means the request cannot be satisfied.
    """
    for name, amount in requests.items():
        _check_request(amount, f"request for {name!r}")
    alloc = free if allocatable is None else allocatable
    used = groups or {}
    nodes = sorted(set(free) | set(alloc))
    min_size = len(nodes)
    masks: list[int] = []
    for mask in nb.iterate_masks(nodes):
        members = nb.ids_of(mask)
        if not _covers(alloc, members, requests):
            continue
        min_size = min(min_size, len(members))
        if any(used[n] != members for n in members if n in used) or not _covers(free, members, requests):
            continue
        masks.append(mask)
    hints = [TopologyHint(nb.ids_of(m), nb.count(m) == min_size) for m in masks]
    return {name: list(hints) for name in requests}


def _covers(
    amounts: Mapping[int, Mapping[str, int]], nodes: frozenset[int], requests: Mapping[str, int]
) -> bool:
    return all(sum(amounts.get(n, {}).get(name, 0) for n in nodes) >= want for name, want in requests.items())


def hugepage_topology_hints(
    topo: Topology, *, size_kb: int, pages: int, groups: Mapping[int, frozenset[int]] | None = None
) -> list[TopologyHint]:
    """Hints for *pages* hugepages of *size_kb* from the topology's per-node pools (free
    decides, total decides preference). Nodes without that page size offer none."""
    free: dict[int, dict[str, int]] = {}
    total: dict[int, dict[str, int]] = {}
    for node_id, node in topo.numa_nodes.items():
        pool = node.hugepages.get(size_kb, HugePages(size_kb, 0, 0))
        if pool.free is None:
            raise HintRequestError(
                f"NUMA node {node_id} does not report free {pool.resource_name} pages; "
                "hugepage hints need free_hugepages for every node"
            )
        free[node_id] = {"pages": pool.free}
        total[node_id] = {"pages": pool.total}
    return memory_topology_hints({"pages": pages}, free, allocatable=total, groups=groups)["pages"]
