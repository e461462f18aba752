"""Does a pod fit a node's NUMA topology? The NodeResourceTopologyMatch filter, pure.

It acts only on nodes whose Topology Manager policy is ``single-numa-node``; every
other policy, and a node with no NRT object, passes, as kubelet admits there without
NUMA alignment. Per NUMA zone it reads ``available`` only. For each requested
resource with a non-zero amount:

1. the node must have the resource at all (``cpu``, ``memory``, ``ephemeral-storage``
   and ``pods`` always count as present);
2. each zone reporting the resource is a candidate if it holds the request; cpu,
   memory and hugepages never rule a zone out for a non-Guaranteed pod, because
   kubelet does not pin those for it;
3. a host-level resource (storage, devices without NUMA affinity) that no zone
   reports is satisfied by the node as a whole.

The candidates of all resources are intersected; an empty intersection means kubelet
would answer TopologyAffinityError. Pod scope checks the pod's effective request
once. Container scope checks each init container alone against the untouched zones
(they run one after another and are not summed), then each app container, taking its
request out of the lowest-id fitting zone before the next, which mirrors kubelet
preferring the narrowest, lowest NUMA mask.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from scheduler.pod import ContainerRequest, PodRequest, QOSClass, Resources, is_host_level_resource
from scheduler.strategies import Cell, pinned_only_when_guaranteed, suitable
from topology.nrt import NodeResourceTopology, zone_name

__all__ = [
    "ALWAYS_PRESENT",
    "REASON_CONTAINER",
    "REASON_INIT_CONTAINER",
    "REASON_POD",
    "FitResult",
    "Victim",
    "fit",
    "working_cells",
]

REASON_POD = "cannot align pod"
REASON_CONTAINER = "cannot align container"
REASON_INIT_CONTAINER = "cannot align init container"
#: Resources every node has as fixed fields of its resource view, possibly zero.
ALWAYS_PRESENT = frozenset({"cpu", "memory", "ephemeral-storage", "pods"})


@dataclass(frozen=True, slots=True)
class FitResult:
    """The verdict. ``reason`` is short and stable (shown to users); ``detail`` has the numbers.

    ``maybe_overreserved`` is set when a real (not preemption-simulated) check fails: the
    node's NRT data may be stale, so a reservation cache should resync that node.
    """

    fits: bool
    reason: str | None = None
    detail: str = ""
    maybe_overreserved: bool = False

    @property
    def status(self) -> str:
        return "Success" if self.fits else "Unschedulable"


FITS = FitResult(True)


@dataclass(frozen=True, slots=True)
class Victim:
    """A pod removed from the node during a preemption check. ``container_numa`` maps its
    container names to the NUMA node each was pinned to, when known."""

    pod: PodRequest
    container_numa: Mapping[str, int] | None = None


def working_cells(nrt: NodeResourceTopology, victims: Iterable[Victim] = ()) -> list[Cell]:
    """Mutable copies of the node's NUMA zones, with the victims' requests given back."""
    cells = [Cell(c.numa_id, dict(c.available), c.costs) for c in nrt.numa_cells()]
    by_id = {c.numa_id: c for c in cells}
    for victim in victims:
        for container in victim.pod.all_containers():
            numa = (victim.container_numa or {}).get(container.name)
            cell = by_id.get(numa) if numa is not None else None
            if cell is None:
                continue
            for name, amount in container.requests.items():
                if name in cell.available:
                    cell.available[name] += amount
    return cells


def fit(
    pod: PodRequest,
    nrt: NodeResourceTopology | None,
    node_allocatable: Collection[str],
    *,
    victims: Sequence[Victim] | None = None,
) -> FitResult:
    """Filter one node. *node_allocatable* needs only the node's resource names.

    *victims* is given (possibly empty) only while simulating a preemption: their
    requests go back to the zones they were pinned to before the check.
    """
    if pod.qos is QOSClass.BEST_EFFORT and not pod.requests_non_native():
        return FITS
    if nrt is None:
        return FITS
    conf = nrt.topology_manager()
    if conf.policy != "single-numa-node":
        return FITS
    cells = working_cells(nrt, victims or ())
    present = ALWAYS_PRESENT | frozenset(node_allocatable)
    scoped = _pod_scope if conf.scope == "pod" else _container_scope
    result = scoped(pod, cells, present)
    if result.fits or victims is not None:
        return result
    return replace(result, maybe_overreserved=True)


def _pod_scope(pod: PodRequest, cells: list[Cell], present: frozenset[str]) -> FitResult:
    ok, _, why = _fitting_numa(pod.effective_request(), cells, present, pod.qos)
    return FITS if ok else FitResult(False, REASON_POD, f"pod: {why}")


def _container_scope(pod: PodRequest, cells: list[Cell], present: frozenset[str]) -> FitResult:
    for init in pod.init_containers:
        ok, _, why = _fitting_numa(init.requests, cells, present, pod.qos)
        if not ok:
            return FitResult(False, REASON_INIT_CONTAINER, f"init container {init.name!r}: {why}")
    for container in pod.containers:
        ok, numa, why = _fitting_numa(container.requests, cells, present, pod.qos)
        if not ok:
            return FitResult(False, REASON_CONTAINER, f"container {container.name!r}: {why}")
        for cell in cells:
            if cell.numa_id == numa:
                _take(container, cell, pod.qos)
    return FITS


def _fitting_numa(
    request: Resources, cells: Sequence[Cell], present: frozenset[str], qos: QOSClass
) -> tuple[bool, int | None, str]:
    """Whether one NUMA node can hold all of *request*, the lowest such NUMA id (None
    when no resource constrained the choice and there is no zone), and why not."""
    candidates: set[int] | None = None  # None: no resource has constrained the choice yet
    for name, amount in request.items():
        if amount == 0:
            continue
        if name not in present:
            return False, None, f"the node has no {name!r} at all"
        reporting = [c for c in cells if name in c.available]
        if not reporting and is_host_level_resource(name):
            continue
        fitting = {c.numa_id for c in reporting if suitable(qos, name, amount, c.available[name])}
        candidates = fitting if candidates is None else candidates & fitting
        if not candidates:
            have = ", ".join(f"{zone_name(c.numa_id)}: {c.available[name]}" for c in reporting)
            return False, None, f"no single NUMA node has {name} {amount} with the rest ({have or 'none'})"
    if candidates is None:
        return True, min((c.numa_id for c in cells), default=None), ""
    return True, min(candidates), ""


def _take(container: ContainerRequest, cell: Cell, qos: QOSClass) -> None:
    """Subtract what kubelet would pin for *container* from *cell*."""
    for name, amount in container.requests.items():
        if name not in cell.available:
            continue
        if qos is not QOSClass.GUARANTEED and pinned_only_when_guaranteed(name):
            continue
        cell.available[name] = max(cell.available[name] - amount, 0)
