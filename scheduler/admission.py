"""Would kubelet admit this pod on this node? The Topology Manager, run on NRT data. Pure.

The node agent and the extender share one hint merge (:mod:`topology.hints`): here the
hint *providers* are rebuilt from a node's NRT zones, the same way kubelet's providers
build them from the machine. For each constraining resource of a request (see
:mod:`scheduler.views` for which resources constrain), every set of zones reporting it
whose summed ``available`` covers the amount is a hint; a hint is preferred when no
smaller set's ``allocatable`` could cover the amount. A resource no zone reports gives
no preference. The node's policy (``none``, ``best-effort``, ``restricted``,
``single-numa-node``) and scope (``container``, ``pod``) then merge and admit exactly as
kubelet does. App containers consume their hinted zones (lowest id first) before the
next container's hints are built; init containers do not, their resources being
reused by the app containers.

:func:`admit` also returns where the pod would land, per NUMA zone: the extender
reserves that on bind.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from scheduler.claim_index import ClaimHints
from scheduler.views import Check, CompiledPod, Item, NodeView
from topology.hint_errors import HintError
from topology.hint_types import ProviderHints
from topology.hints import NUMAInfo, PolicyOptions, TopologyHint, new_policy, new_scope
from topology.nrt import zone_name
from topology.quantity import CPU, format_amount

__all__ = ["Decision", "admit", "placement_of"]

IntArray = npt.NDArray[np.int64]

#: numa id -> resource -> amount.
Placement = Mapping[int, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one node, a message when rejected, and the zones the pod would use."""

    fits: bool
    message: str = ""
    unresolvable: bool = False
    placement: Placement = field(default_factory=lambda: MappingProxyType({}))


#: Zone counts up to which hints are computed over a table of every zone subset at once.
_TABLE_ZONES = 10
#: Largest amount summed in int64 over the table (sums of up to 10 stay below 2**63).
_TABLE_MAX = 2**59


@functools.lru_cache(maxsize=256)
def _subset_table(ids: tuple[int, ...]) -> tuple[IntArray, IntArray, tuple[frozenset[int], ...]]:
    """Every non-empty subset of *ids* in kubelet's order (by size, then
    ``itertools.combinations`` order): a membership matrix, the sizes and the id sets."""
    combos = [c for size in range(1, len(ids) + 1) for c in itertools.combinations(range(len(ids)), size)]
    member = np.zeros((len(combos), len(ids)), dtype=np.int64)
    for row, combo in enumerate(combos):
        member[row, list(combo)] = 1
    sizes = member.sum(axis=1)
    member.setflags(write=False)
    sizes.setflags(write=False)
    return member, sizes, tuple(frozenset(ids[i] for i in c) for c in combos)


@functools.lru_cache(maxsize=4096)
def _hint(zones: frozenset[int], preferred: bool) -> TopologyHint:
    return TopologyHint(zones, preferred)


def _hints_for(
    item: Item, zones: Mapping[int, dict[str, int]], allocatable: Mapping[int, Mapping[str, int]]
) -> list[TopologyHint] | None:
    ids = tuple(sorted(n for n, avail in zones.items() if item.name in avail))
    if not ids:
        return None
    if len(ids) > _TABLE_ZONES:
        return _hints_one_by_one(item, ids, zones, allocatable)
    alloc_row = [allocatable.get(n, {}).get(item.name, 0) for n in ids]
    avail_row = [zones[n][item.name] for n in ids]
    if max(*alloc_row, *avail_row, item.amount, item.need) > _TABLE_MAX or min(*alloc_row, *avail_row) < 0:
        return _hints_one_by_one(item, ids, zones, allocatable)  # sums could overflow int64
    member, sizes, sets = _subset_table(ids)
    covering = sizes[member @ np.array(alloc_row, dtype=np.int64) >= item.amount]
    min_size = int(covering.min()) if covering.size else len(ids) + 1
    avail = np.array(avail_row, dtype=np.int64)
    return [_hint(sets[i], bool(sizes[i] == min_size)) for i in np.flatnonzero(member @ avail >= item.need)]


def _hints_one_by_one(
    item: Item,
    ids: tuple[int, ...],
    zones: Mapping[int, dict[str, int]],
    allocatable: Mapping[int, Mapping[str, int]],
) -> list[TopologyHint]:
    """:func:`_hints_for` subset by subset (nodes with more zones than the table holds)."""
    min_size = len(ids) + 1
    hints: list[tuple[tuple[int, ...], int]] = []
    for size in range(1, len(ids) + 1):
        for combo in itertools.combinations(ids, size):
            alloc = sum(allocatable.get(n, {}).get(item.name, 0) for n in combo)
            if min_size > size and alloc >= item.amount:
                min_size = size
            if sum(zones[n][item.name] for n in combo) >= item.need:
                hints.append((combo, size))
    return [TopologyHint(frozenset(c), preferred=size == min_size) for c, size in hints]


class _ZoneHints:
    """A :class:`~topology.hints.HintSource` over working copies of the node's zones."""

    def __init__(
        self, view: NodeView, checks: Mapping[str, Check], pod_check: Check, claims: ClaimHints | None = None
    ) -> None:
        self.claims = claims
        self.zones: dict[int, dict[str, int]] = {n: dict(a) for n, a in view.zones}
        self.allocatable = view.allocatable
        self.checks = checks
        self.pod_check = pod_check
        self.used: dict[int, dict[str, int]] = {}

    def _provider(self, check: Check, claim: ProviderHints | None) -> list[ProviderHints]:
        zones: ProviderHints = {item.name: self._hints(item) for item in check.items}
        # the claim devices steer exclusive CPUs only: checks without them take no claim hint
        if claim is None or not any(item.name == CPU for item in check.items):
            return [zones]
        return [zones, claim]

    def _hints(self, item: Item) -> list[TopologyHint] | None:
        return _hints_for(item, self.zones, self.allocatable)

    def container_hints(self, container: str) -> Sequence[ProviderHints]:
        claim = None if self.claims is None else self.claims.for_container(container)
        return self._provider(self.checks[container], claim)

    def pod_hints(self) -> Sequence[ProviderHints]:
        return self._provider(self.pod_check, None if self.claims is None else self.claims.pod)

    def consume(self, check: Check, hint: TopologyHint) -> None:
        """Take *check*'s items from the hinted zones, lowest id first, never below zero."""
        ids = sorted(self.zones if hint.numa_affinity is None else hint.numa_affinity)
        for item in check.items:
            left = item.amount if item.take else 0
            for n in ids:
                have = self.zones.get(n, {}).get(item.name)
                if left == 0:
                    break
                if have is None:
                    continue
                used = min(have, left)
                self.zones[n][item.name] = have - used
                row = self.used.setdefault(n, {})
                row[item.name] = row.get(item.name, 0) + used
                left -= used


def _names(compiled: CompiledPod) -> tuple[list[str], dict[str, Check]]:
    pod = compiled.pod
    names = [c.name for c in pod.all_containers()]
    return names, dict(zip(names, compiled.container_checks, strict=True))


def _numa_info(view: NodeView) -> NUMAInfo:
    costs: dict[int, dict[int, int]] = {}
    for cell in view.nrt.numa_cells():
        costs[cell.numa_id] = dict(cell.costs)
    return NUMAInfo(tuple(n for n, _ in view.zones), costs)


def _frozen(used: Mapping[int, Mapping[str, int]]) -> Placement:
    return MappingProxyType({n: MappingProxyType(dict(row)) for n, row in used.items() if any(row.values())})


def admit(compiled: CompiledPod, view: NodeView, claims: ClaimHints | None = None) -> Decision:
    """Run the node's Topology Manager policy and scope over *compiled* (kubelet rules).

    *claims*: the hint of the devices the pod holds through DRA claims on this node
    (:mod:`scheduler.claim_index`), merged into every check that holds exclusive CPUs: they
    must then fit on the devices' NUMA nodes."""
    conf = view.config
    names, checks = _names(compiled)
    source = _ZoneHints(view, checks, compiled.pod_checks[0], claims)
    if not view.zones:
        return Decision(True)
    try:
        options = PolicyOptions(max_allowable_numa_nodes=max(conf.max_numa_nodes, 8))
        policy = new_policy(conf.policy, _numa_info(view), options)
    except HintError as err:
        why = f"kubelet cannot run topology manager policy {conf.policy!r} here: {err}"
        return Decision(False, why, True)
    app = {c.name for c in compiled.pod.containers}

    def allocate(container: str, hint: TopologyHint) -> None:
        if conf.scope == "container" and container in app:
            source.consume(checks[container], hint)

    result = new_scope(conf.scope).admit(policy, names, source, allocate)
    if not result.admit:
        why = _rejection(compiled, conf.policy, result.rejected_container, checks, view)
        if claims is not None:
            why += f"; its exclusive CPUs must share a NUMA node with the {claims.where}"
        return Decision(False, why)
    if conf.scope == "pod" and result.hints:
        source.consume(compiled.pod_checks[0], next(iter(result.hints.values())))
    return Decision(True, placement=_frozen(source.used))


def _rejection(
    compiled: CompiledPod, policy: str, container: str | None, checks: Mapping[str, Check], view: NodeView
) -> str:
    check = compiled.pod_checks[0] if container is None else checks[container]
    wants = ", ".join(f"{i.name} {format_amount(i.name, i.amount)}" for i in check.items)
    have = "; ".join(f"{zone_name(n)}: " + _amounts(check, a) for n, a in view.zones)
    return (
        f"{check.reason}: {check.label}: TopologyAffinityError under {policy} "
        f"(wants {wants or 'nothing aligned'}; {have or 'no zones'})"
    )


def _amounts(check: Check, available: Mapping[str, int]) -> str:
    return ", ".join(f"{i.name} {format_amount(i.name, available.get(i.name, 0))}" for i in check.items)


def placement_of(compiled: CompiledPod, view: NodeView) -> Placement:
    """Where *compiled* would land on *view* under the node's own policy; empty if nowhere."""
    return admit(compiled, view).placement
