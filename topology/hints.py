"""Topology hints and the topology-manager merge: one pure implementation shared by the
node agent (admission, CPU pinning) and the scheduler extender (filtering nodes on which
kubelet would answer TopologyAffinityError).

Hint *providers* (CPUs, devices, memory) each answer "on which NUMA node sets could I
satisfy this request, and which of those are preferred" (:mod:`topology.hint_generators`).
A *policy* merges those answers into one hint and decides admission; a *scope* says
whether that happens per container or once per pod. Policies and scopes are selected
once by name from a registry (:func:`new_policy`, :func:`new_scope`); the per-pod path
is a pure function of its inputs.

>>> info = NUMAInfo((0, 1))
>>> policy = new_policy("single-numa-node", info)
>>> cpu = {"cpu": [TopologyHint.on([0], preferred=True), TopologyHint.on([0, 1], preferred=False)]}
>>> gpu = {"nvidia.com/gpu": [TopologyHint.on([0], preferred=True)]}
>>> hint, admit = policy.merge([cpu, gpu])
>>> str(hint), admit
('{0}:T', True)

The merge follows kubelet's ``HintMerger`` (pkg/kubelet/cm/topologymanager/policy.go):
every permutation of one hint per resource is ANDed; the best merged hint wins by
preferred-ness, then by the non-preferred count rule, then by the narrowest (or, with
``prefer-closest-numa-nodes``, the closest) NUMA set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from topology import numa_bitmask as nb
from topology.hint_errors import (
    NUMALimitError,
    PolicyOptionError,
    UnknownPolicyError,
)
from topology.hint_generators import (
    cpu_hints_for_assignment,
    cpu_topology_hints,
    hugepage_topology_hints,
    memory_topology_hints,
    pod_effective_request,
)
from topology.hint_scopes import (
    SCOPES,
    TOPOLOGY_AFFINITY_ERROR,
    TOPOLOGY_AFFINITY_MESSAGE,
    Admission,
    ContainerScope,
    HintSource,
    PodScope,
    Scope,
    new_scope,
)
from topology.hint_types import NUMAInfo, Policy, ProviderHints, TopologyHint

__all__ = [
    "DEFAULT_MAX_ALLOWABLE_NUMA_NODES",
    "POLICIES",
    "SCOPES",
    "TOPOLOGY_AFFINITY_ERROR",
    "TOPOLOGY_AFFINITY_MESSAGE",
    "Admission",
    "BestEffortPolicy",
    "ContainerScope",
    "HintMerger",
    "HintSource",
    "NUMAInfo",
    "NonePolicy",
    "PodScope",
    "Policy",
    "PolicyOptions",
    "ProviderHints",
    "RestrictedPolicy",
    "Scope",
    "SingleNUMANodePolicy",
    "TopologyHint",
    "cpu_hints_for_assignment",
    "cpu_topology_hints",
    "filter_providers_hints",
    "hugepage_topology_hints",
    "max_of_min_affinity_counts",
    "memory_topology_hints",
    "merge_hints",
    "new_policy",
    "new_scope",
    "parse_option_bool",
    "pod_effective_request",
]

#: kubelet's default for ``max-allowable-numa-nodes``: merging enumerates every
#: permutation of per-resource hints over all NUMA subsets, a "state explosion" beyond
#: 8 nodes (pkg/kubelet/cm/topologymanager/topology_manager.go, defaultMaxAllowableNUMANodes).
DEFAULT_MAX_ALLOWABLE_NUMA_NODES = 8

OPTION_PREFER_CLOSEST = "prefer-closest-numa-nodes"
OPTION_MAX_ALLOWABLE = "max-allowable-numa-nodes"

# Go strconv.ParseBool's accepted spellings.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_INT = re.compile(r"[+-]?[0-9]+")


def parse_option_bool(name: str, value: str) -> bool:
    """Parse a policy-option boolean as kubelet does (Go ``strconv.ParseBool``)."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise PolicyOptionError(
        f"bad value for option {name!r}: {value!r} (expected one of true/false, 1/0, t/f, TRUE/FALSE)"
    )


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """Topology manager policy options (``--topology-manager-policy-options``)."""

    prefer_closest_numa_nodes: bool = False
    """Prefer NUMA sets with the smallest average distance over the numerically lowest."""
    max_allowable_numa_nodes: int = DEFAULT_MAX_ALLOWABLE_NUMA_NODES
    """Refuse any policy but ``none`` on machines with more NUMA nodes than this."""

    def __post_init__(self) -> None:
        if self.max_allowable_numa_nodes < DEFAULT_MAX_ALLOWABLE_NUMA_NODES:
            raise PolicyOptionError(
                f'the minimum value of "{OPTION_MAX_ALLOWABLE}" should not be less than '
                f"{DEFAULT_MAX_ALLOWABLE_NUMA_NODES}, got {self.max_allowable_numa_nodes}"
            )

    @classmethod
    def parse(cls, raw: Mapping[str, str]) -> PolicyOptions:
        """Options from kubelet's string map, e.g. ``{"prefer-closest-numa-nodes": "true"}``."""
        closest, limit = False, DEFAULT_MAX_ALLOWABLE_NUMA_NODES
        for name, value in raw.items():
            if name == OPTION_PREFER_CLOSEST:
                closest = parse_option_bool(name, value)
            elif name == OPTION_MAX_ALLOWABLE:
                if not _GO_INT.fullmatch(value):
                    raise PolicyOptionError(
                        f"unable to convert policy option to integer {name!r}: {value!r} "
                        "(expected an integer)"
                    )
                limit = int(value)
            else:
                valid = f"{OPTION_PREFER_CLOSEST}, {OPTION_MAX_ALLOWABLE}"
                raise PolicyOptionError(
                    f"unknown Topology Manager Policy option: {name!r} (expected one of {valid})"
                )
        return cls(prefer_closest_numa_nodes=closest, max_allowable_numa_nodes=limit)


# ---------------------------------------------------------------------------- merge core

_NO_PREFERENCE = TopologyHint(None, True)
_UNSATISFIABLE = TopologyHint(None, False)

#: Internal hint: (mask or None, preferred).
_Hint = tuple[int | None, bool]


def filter_providers_hints(providers_hints: Sequence[ProviderHints]) -> list[list[TopologyHint]]:
    """One hint list per resource of every provider (kubelet's ``filterProvidersHints``):
    a provider with no map, or an empty one, and a resource with a None list become
    ``[{nil, preferred}]``; a resource with an empty list becomes ``[{nil, not preferred}]``."""
    lists: list[list[TopologyHint]] = []
    for hints in providers_hints:
        if not hints:
            lists.append([_NO_PREFERENCE])
            continue
        for resource_hints in hints.values():
            if resource_hints is None:
                lists.append([_NO_PREFERENCE])
            elif not resource_hints:
                lists.append([_UNSATISFIABLE])
            else:
                lists.append(list(resource_hints))
    return lists


def max_of_min_affinity_counts(hint_lists: Sequence[Sequence[TopologyHint]]) -> int:
    """The largest, over the lists, of each list's smallest NUMA count (kubelet's
    ``maxOfMinAffinityCounts``). Nil affinities are ignored; an empty affinity counts 0,
    so a list holding one contributes 0."""
    best = 0
    for hints in hint_lists:
        counts = [len(h.numa_affinity) for h in hints if h.numa_affinity is not None]
        if counts:
            best = max(best, min(counts))
    return best


#: Above this many NUMA-mask bits the pairwise AND of the disagreeing states is taken with
#: Python sets; at or below it with a table of every mask (2**12 flags).
_TABLE_BITS = 12
#: Below this many state x hint pairs the set comprehension is faster than numpy.
_TABLE_MIN_PAIRS = 512


def _and_pairs(states: set[int], masks: set[int], width: int) -> set[int]:
    """Every non-empty ``state & mask``; a flag table when the masks are narrow."""
    if width > _TABLE_BITS or len(states) * len(masks) < _TABLE_MIN_PAIRS:
        return {m for s in states for mask in masks if (m := s & mask)}
    seen = np.zeros(1 << width, dtype=np.bool_)
    left = np.fromiter(states, dtype=np.int64, count=len(states))
    right = np.fromiter(masks, dtype=np.int64, count=len(masks))
    seen[np.bitwise_and.outer(left, right)] = True
    seen[0] = False
    return set(np.flatnonzero(seen).tolist())


def _merged_hints(default_mask: int, lists: Sequence[Sequence[_Hint]]) -> list[_Hint]:
    """The distinct merged hints over every permutation of one hint per list.

    A permutation merges to the AND of the default with its non-nil masks, preferred
    only if every hint is preferred and all non-nil masks are identical. Rather than
    walking the Cartesian product (millions of permutations on 8 NUMA nodes), the lists
    are folded one at a time keeping only distinct states. A state that is still
    preferred is fully described by the one mask all its non-nil hints agree on (None:
    only nil masks so far), since its AND is then ``default & mask``; every other state
    only by its AND so far. A state whose AND is empty is dropped: such a merge can never
    be chosen. The best hint is the same as kubelet's sequential scan because the
    comparison ranks distinct merged hints in a total order.
    """
    width = default_mask.bit_length()
    agreed: set[int | None] = {None}  # preferred so far: the common non-nil mask
    mixed: set[int] = set()  # not preferred so far: the AND so far
    for hints in lists:
        masks = {default_mask if mask is None else mask & default_mask for mask, _ in hints}
        next_agreed: set[int | None] = set()
        next_mixed = _and_pairs(mixed, masks, width)
        for common in agreed:
            merged = default_mask if common is None else default_mask & common
            if not merged:
                continue
            for mask, preferred in hints:
                if mask is None:
                    if preferred:
                        next_agreed.add(common)
                    else:
                        next_mixed.add(merged)
                elif merged & mask:
                    if preferred and (common is None or common == mask):
                        next_agreed.add(mask)
                    else:
                        next_mixed.add(merged & mask)
        agreed, mixed = next_agreed, next_mixed
    out = {(default_mask if c is None else default_mask & c, True) for c in agreed}
    out.update((m, False) for m in mixed)
    return sorted(out)


@dataclass(frozen=True, slots=True)
class HintMerger:
    """Chooses the best merged hint (kubelet's ``HintMerger``).

    ``best_non_preferred_affinity_count`` is :func:`max_of_min_affinity_counts` of the
    lists being merged; ``closest`` selects the distance-aware mask comparison.
    """

    numa_info: NUMAInfo
    best_non_preferred_affinity_count: int
    closest: bool = False

    def compare(self, current: TopologyHint | None, candidate: TopologyHint) -> TopologyHint | None:
        """The better of the current best hint and a candidate (None: no best yet)."""
        cur = None if current is None else (current.mask, current.preferred)
        won = self._compare(cur, (candidate.mask, candidate.preferred))
        return current if won is cur else candidate

    def merge(self, hint_lists: Sequence[Sequence[TopologyHint]]) -> TopologyHint:
        """The best AND over every permutation; ``{default, not preferred}`` if none."""
        default = self.numa_info.default_mask
        lists = [[(h.mask, h.preferred) for h in hints] for hints in hint_lists]
        best: _Hint | None = None
        for merged in _merged_hints(default, lists):
            best = self._compare(best, merged)
        mask, preferred = best if best is not None else (default, False)
        return TopologyHint(None if mask is None else nb.ids_of(mask), preferred)

    def _masks(self, current: _Hint, candidate: _Hint) -> _Hint:
        a, b = current[0] or 0, candidate[0] or 0
        if a == b:
            return current
        winner = self.numa_info.closest(a, b) if self.closest else nb.narrowest(a, b)
        return current if winner == a else candidate

    def _compare(self, current: _Hint | None, candidate: _Hint) -> _Hint | None:
        cand_n = nb.count(candidate[0] or 0)
        if cand_n == 0:
            return current
        if current is None:
            return candidate
        if current[1] != candidate[1]:
            return current if current[1] else candidate
        if current[1]:
            return self._masks(current, candidate)
        return self._compare_non_preferred(current, candidate, cand_n)

    def _compare_non_preferred(self, current: _Hint, candidate: _Hint, cand_n: int) -> _Hint:
        """Both non-preferred: steer towards the widest of the per-resource minimal counts."""
        best_n, cur_n = self.best_non_preferred_affinity_count, nb.count(current[0] or 0)
        if cur_n > best_n:
            return self._masks(current, candidate)
        if cur_n == best_n:
            return current if cand_n != best_n else self._masks(current, candidate)
        if cand_n > best_n:
            return current
        if cand_n == best_n:
            return candidate
        if cand_n != cur_n:
            return candidate if cand_n > cur_n else current
        return self._masks(current, candidate)


# ---------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class NonePolicy:
    """``none``: no alignment; every pod is admitted with no hint."""

    numa_info: NUMAInfo
    options: PolicyOptions = PolicyOptions()
    name: ClassVar[str] = "none"

    def merge(self, providers_hints: Sequence[ProviderHints]) -> tuple[TopologyHint, bool]:
        return TopologyHint(None, False), True


@dataclass(frozen=True, slots=True)
class BestEffortPolicy:
    """``best-effort``: merge and store the best hint; always admit."""

    numa_info: NUMAInfo
    options: PolicyOptions = PolicyOptions()
    name: ClassVar[str] = "best-effort"

    def merge(self, providers_hints: Sequence[ProviderHints]) -> tuple[TopologyHint, bool]:
        lists = filter_providers_hints(providers_hints)
        hint = self._merger(lists).merge(lists)
        return hint, self.can_admit(hint)

    def can_admit(self, hint: TopologyHint) -> bool:
        return True

    def _merger(self, lists: Sequence[Sequence[TopologyHint]]) -> HintMerger:
        closest = self.options.prefer_closest_numa_nodes and self.name != SingleNUMANodePolicy.name
        return HintMerger(self.numa_info, max_of_min_affinity_counts(lists), closest)


@dataclass(frozen=True, slots=True)
class RestrictedPolicy(BestEffortPolicy):
    """``restricted``: as best-effort, but admit only when the merged hint is preferred."""

    name: ClassVar[str] = "restricted"

    def can_admit(self, hint: TopologyHint) -> bool:
        return hint.preferred


@dataclass(frozen=True, slots=True)
class SingleNUMANodePolicy(BestEffortPolicy):
    """``single-numa-node``: only preferred single-node (or don't-care) hints take part;
    admit only a preferred result. A result spanning every node becomes "no affinity"."""

    name: ClassVar[str] = "single-numa-node"

    def merge(self, providers_hints: Sequence[ProviderHints]) -> tuple[TopologyHint, bool]:
        lists = [
            [h for h in hints if h.preferred and (h.numa_affinity is None or len(h.numa_affinity) == 1)]
            for hints in filter_providers_hints(providers_hints)
        ]
        hint = self._merger(lists).merge(lists)
        if hint.numa_affinity == self.numa_info.default_affinity:
            hint = TopologyHint(None, hint.preferred)
        return hint, self.can_admit(hint)

    def can_admit(self, hint: TopologyHint) -> bool:
        return hint.preferred


PolicyFactory = Callable[[NUMAInfo, PolicyOptions], Policy]

#: Policy name → constructor; the single place a name becomes behaviour.
POLICIES: Mapping[str, PolicyFactory] = MappingProxyType(
    {
        NonePolicy.name: NonePolicy,
        BestEffortPolicy.name: BestEffortPolicy,
        RestrictedPolicy.name: RestrictedPolicy,
        SingleNUMANodePolicy.name: SingleNUMANodePolicy,
    }
)


def new_policy(name: str, numa_info: NUMAInfo, options: PolicyOptions | None = None) -> Policy:
    """The policy called *name*, checked against the machine as kubelet's ``NewManager``
    does: too many NUMA nodes, or ``prefer-closest-numa-nodes`` without distances, fail."""
    opts = options or PolicyOptions()
    factory = POLICIES.get(name)
    if factory is None:
        raise UnknownPolicyError(name, POLICIES)
    if name != NonePolicy.name:
        if len(numa_info.nodes) > opts.max_allowable_numa_nodes:
            raise NUMALimitError(len(numa_info.nodes), opts.max_allowable_numa_nodes)
        if opts.prefer_closest_numa_nodes and not numa_info.has_distances():
            raise PolicyOptionError(
                f'option "{OPTION_PREFER_CLOSEST}" needs the distance between every pair of '
                f"NUMA nodes {list(numa_info.nodes)}, but some are unknown"
            )
    return factory(numa_info, opts)


def merge_hints(
    providers_hints: Sequence[ProviderHints],
    numa_info: NUMAInfo,
    policy: str | Policy,
    options: PolicyOptions | None = None,
) -> tuple[TopologyHint, bool]:
    """Merge once: ``(best hint, admit)``. Build the policy with :func:`new_policy` and
    call its ``merge`` directly on hot paths."""
    chosen = new_policy(policy, numa_info, options) if isinstance(policy, str) else policy
    return chosen.merge(providers_hints)
