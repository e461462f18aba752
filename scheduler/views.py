"""Per-node views and compiled pod requests: the shapes the extender's hot path reads.

A :class:`NodeView` is one node's NRT data as the extender sees it right now: the
published ``available`` minus the reservations of pods bound but not yet reflected, its
Topology Manager configuration, and a ``generation`` that changes whenever any of that
changes (so results can be cached by ``(pod signature, node, generation)``). Views are
immutable; the cache builds a new one on every change.

A :class:`CompiledPod` is a pod request reduced, once per request, to what a NUMA fit
needs: per check (the whole pod, or each container), the resources that constrain the
choice of NUMA node. :func:`fast_single_numa_fit` then decides a ``single-numa-node``
node with a few comparisons per zone. Two rule sets compile differently:

* ``kubelet`` (topolet's default): what kubelet's Topology Manager would do. CPUs are
  aligned only for Guaranteed containers with integer CPUs (the static CPU manager),
  memory and hugepages only for Guaranteed pods, devices always; a resource no zone
  reports gives no hint.
* ``nrt-match``: scheduler-plugins NodeResourceTopologyMatch, as :func:`scheduler.filter.fit`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from scheduler.filter import ALWAYS_PRESENT, REASON_CONTAINER, REASON_INIT_CONTAINER, REASON_POD
from scheduler.pod import ContainerRequest, PodRequest, QOSClass, Resources, is_host_level_resource
from scheduler.strategies import pinned_only_when_guaranteed
from topology.nrt import NodeResourceTopology, TopologyManagerConfig, zone_name
from topology.quantity import CPU, format_amount

__all__ = [
    "FIT_MODES",
    "Check",
    "CompiledPod",
    "FastVerdict",
    "Item",
    "NodeView",
    "compile_pod",
    "fast_restricted_fit",
    "fast_single_numa_fit",
    "needs_alignment",
    "pod_signature",
]

FIT_MODES = ("kubelet", "nrt-match")
#: numa id -> resource -> amount.
Placement = Mapping[int, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node's effective NRT state. ``zones`` are ``(numa id, available)`` sorted by id."""

    name: str
    nrt: NodeResourceTopology
    generation: int
    config: TopologyManagerConfig
    zones: tuple[tuple[int, Mapping[str, int]], ...]
    allocatable: Mapping[int, Mapping[str, int]]
    reported: frozenset[str]

    @staticmethod
    def build(nrt: NodeResourceTopology, generation: int) -> NodeView:
        cells = sorted(nrt.numa_cells(), key=lambda c: c.numa_id)
        allocatable: dict[int, Mapping[str, int]] = {}
        for zone in nrt.zones:
            numa = zone.numa_id
            if numa is not None:
                allocatable[numa] = MappingProxyType({r.name: r.allocatable for r in zone.resources})
        zones = tuple((c.numa_id, c.available) for c in cells)
        reported = frozenset(name for _, avail in zones for name in avail)
        return NodeView(
            nrt.name, nrt, generation, nrt.topology_manager(), zones, MappingProxyType(allocatable), reported
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One constraining resource of a check: zones must report it with ``need`` available
    (0: any amount); ``take`` says whether placing the check consumes it."""

    name: str
    amount: int
    need: int
    host_level: bool
    take: bool


@dataclass(frozen=True, slots=True)
class Check:
    """One NUMA-alignment decision: the pod (pod scope) or one container."""

    label: str
    reason: str
    items: tuple[Item, ...]
    consumes: bool


@dataclass(frozen=True, slots=True)
class CompiledPod:
    """A pod compiled for one rule set: its checks per scope, and whether any work is needed."""

    pod: PodRequest
    mode: str
    signature: tuple[object, ...]
    needs_work: bool
    pod_checks: tuple[Check, ...]
    container_checks: tuple[Check, ...]


def pod_signature(pod: PodRequest) -> tuple[object, ...]:
    """What a fit depends on: QoS and every container's name, kind, requests and limits."""

    def one(c: ContainerRequest) -> tuple[object, ...]:
        return (c.name, c.kind.value, tuple(sorted(c.requests.items())), tuple(sorted(c.limits.items())))

    return (pod.qos.value, tuple(map(one, pod.init_containers)), tuple(map(one, pod.containers)))


def needs_alignment(pod: PodRequest) -> bool:
    """False for pods no policy aligns: BestEffort without devices, or a non-Guaranteed pod
    asking only for resources kubelet pins for Guaranteed pods alone."""
    if pod.guaranteed:
        return True
    return any(
        amount > 0 and not pinned_only_when_guaranteed(name)
        for c in pod.all_containers()
        for name, amount in c.requests.items()
    )


def _items(request: Resources, qos: QOSClass, mode: str, integer_cpus: bool) -> tuple[Item, ...]:
    out: list[Item] = []
    for name, amount in sorted(request.items()):
        if amount == 0:
            continue
        unpinned = qos is not QOSClass.GUARANTEED and pinned_only_when_guaranteed(name)
        if mode == "kubelet":
            if unpinned or (name == CPU and not integer_cpus):
                continue
            out.append(Item(name, amount, amount, False, True))
        else:
            need = 0 if unpinned else amount
            out.append(Item(name, amount, need, is_host_level_resource(name), not unpinned))
    return tuple(out)


def compile_pod(pod: PodRequest, mode: str = "kubelet") -> CompiledPod:
    """Compile *pod* for the ``kubelet`` or ``nrt-match`` rules."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode {mode!r}: expected one of {', '.join(FIT_MODES)}")
    qos = pod.qos
    # exclusive CPUs as kubelet counts them (kube.pod.exclusive_cpus); for a pod that is not
    # Guaranteed its cpu is unpinned whatever these say
    all_integer = all(pod.exclusive_cpus(c) for c in pod.all_containers() if c.requests.get(CPU, 0))
    pod_checks = (Check("pod", REASON_POD, _items(pod.effective_request(), qos, mode, all_integer), False),)
    checks = [
        Check(
            f"init container {c.name!r}",
            REASON_INIT_CONTAINER,
            _items(c.requests, qos, mode, pod.exclusive_cpus(c) > 0),
            False,
        )
        for c in pod.init_containers
    ]
    checks += [
        Check(
            f"container {c.name!r}",
            REASON_CONTAINER,
            _items(c.requests, qos, mode, pod.exclusive_cpus(c) > 0),
            True,
        )
        for c in pod.containers
    ]
    work = (
        needs_alignment(pod)
        if mode == "kubelet"
        else not (qos is QOSClass.BEST_EFFORT and not pod.requests_non_native())
    )
    return CompiledPod(pod, mode, pod_signature(pod), work, pod_checks, tuple(checks))


@dataclass(frozen=True, slots=True)
class FastVerdict:
    """A single-numa-node decision. ``unresolvable``: the node lacks a resource entirely."""

    fits: bool
    message: str = ""
    unresolvable: bool = False


_FITS = FastVerdict(True)


def _amounts_text(item: Item, zones: Sequence[tuple[int, Mapping[str, int]]]) -> str:
    have = ", ".join(
        f"{zone_name(numa)}: {format_amount(item.name, avail[item.name])}"
        for numa, avail in zones
        if item.name in avail
    )
    return f"no single NUMA node has {item.name} {format_amount(item.name, item.amount)} ({have or 'none'})"


def fast_single_numa_fit(compiled: CompiledPod, view: NodeView) -> FastVerdict:
    """Decide a ``single-numa-node`` node: every check needs one zone holding all its items;
    consuming checks take their items from the lowest-id such zone before the next check."""
    checks = compiled.pod_checks if view.config.scope == "pod" else compiled.container_checks
    strict = compiled.mode == "nrt-match"
    zones = view.zones
    working: list[dict[str, int]] | None = None
    for check in checks:
        current = zones if working is None else tuple((z[0], w) for z, w in zip(zones, working, strict=True))
        candidates: list[int] | None = None  # positions in zones
        for item in check.items:
            name = item.name
            if name not in view.reported:
                if not strict or item.host_level:
                    continue  # no zone knows it: no NUMA constraint (kubelet: no hint)
                if name not in ALWAYS_PRESENT:
                    msg = f"{check.reason}: {check.label}: the node has no {name!r} in any NUMA zone"
                    return FastVerdict(False, msg, True)
            pool = range(len(current)) if candidates is None else candidates
            candidates = [i for i in pool if current[i][1].get(name, -1) >= item.need]
            if not candidates:
                return FastVerdict(False, f"{check.reason}: {check.label}: {_amounts_text(item, current)}")
        if not check.consumes:
            continue
        if working is None:
            working = [dict(a) for _, a in zones]
        _take(check, working, candidates)
    return _FITS


def _take(check: Check, working: list[dict[str, int]], candidates: list[int] | None) -> None:
    """Consume a placed check from its lowest-id fitting zone. With no constraining item
    (*candidates* None) every item is one no zone reports, so nothing is taken."""
    if candidates is None:
        return
    zone = working[candidates[0]]
    for item in check.items:
        if item.take and item.name in zone:
            zone[item.name] = max(zone[item.name] - item.amount, 0)


def _restricted_mask(
    check: Check, zones: Sequence[tuple[int, Mapping[str, int]]], allocatable: Mapping[int, Mapping[str, int]]
) -> tuple[int, ...] | None:
    """The zone positions kubelet's ``restricted`` policy would choose for *check*: ``()``
    when nothing constrains it, None when it is rejected."""
    size: int | None = None
    reporting: set[int] | None = None
    constrained = [i for i in check.items if any(i.name in a for _, a in zones)]
    for item in constrained:
        where = [p for p, (_, a) in enumerate(zones) if item.name in a]
        caps = sorted((allocatable.get(zones[p][0], {}).get(item.name, 0) for p in where), reverse=True)
        total, smallest = 0, None
        for k, cap in enumerate(caps, start=1):
            total += cap
            if total >= item.amount:
                smallest = k
                break
        if smallest is None or (size is not None and smallest != size):
            return None  # no preferred hint, or preferred hints of different widths never agree
        size = smallest
        reporting = set(where) if reporting is None else reporting & set(where)
    if size is None or reporting is None:
        return ()
    fitting = [
        combo
        for combo in itertools.combinations(sorted(reporting), size)
        if all(sum(zones[p][1][i.name] for p in combo) >= i.need for i in constrained)
    ]
    # kubelet keeps the narrowest mask: with equal widths, the smallest bitmask value.
    return min(fitting, key=lambda c: sum(1 << zones[p][0] for p in c), default=None)


def fast_restricted_fit(compiled: CompiledPod, view: NodeView) -> FastVerdict:
    """Decide a ``restricted`` node under the kubelet rules: kubelet admits when one zone
    set is a preferred hint of every aligned resource (preferred: no narrower set's
    ``allocatable`` covers it), so all their narrowest widths must agree."""
    checks = compiled.pod_checks if view.config.scope == "pod" else compiled.container_checks
    zones: tuple[tuple[int, Mapping[str, int]], ...] = view.zones
    for check in checks:
        combo = _restricted_mask(check, zones, view.allocatable)
        if combo is None:
            wants = ", ".join(f"{i.name} {format_amount(i.name, i.amount)}" for i in check.items)
            return FastVerdict(
                False,
                f"{check.reason}: {check.label}: TopologyAffinityError under restricted "
                f"(no NUMA set is the narrowest fit for all of {wants})",
            )
        if check.consumes and combo:
            zones = _consume(check, zones, combo)
    return _FITS


def _consume(
    check: Check, zones: tuple[tuple[int, Mapping[str, int]], ...], combo: tuple[int, ...]
) -> tuple[tuple[int, Mapping[str, int]], ...]:
    working = [(n, dict(a)) for n, a in zones]
    for item in check.items:
        left = item.amount if item.take else 0
        for p in combo:
            have = working[p][1].get(item.name)
            if left == 0:
                break
            if have is None:
                continue
            used = min(have, left)
            working[p][1][item.name] = have - used
            left -= used
    return tuple(working)
