"""Node scores of NodeResourceTopologyMatch, with the strategy picked once.

:class:`Scorer` resolves a strategy name from :data:`SCORING_STRATEGIES` when it is
built (an unknown name is a :class:`~scheduler.errors.SchedulerConfigError` listing the valid
ones) and then scores pods against NRT objects with no further lookups.

Rules shared by every strategy: a non-Guaranteed pod scores :data:`MAX_NODE_SCORE`
everywhere (kubelet pins nothing for it); a node without NRT data scores 0.
MostAllocated, BalancedAllocation and LeastAllocated score only ``single-numa-node``
nodes (0 elsewhere): in pod scope the node is rated by its worst fitting zone (the
minimum non-zero zone score), in container scope by the mean over all containers,
init containers included. LeastNUMANodes works under every policy.

Scores are on the plugin scale 0..100; :func:`to_extender_score` maps them onto the
kube-scheduler extender scale 0..10.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from scheduler.errors import SchedulerConfigError
from scheduler.filter import working_cells
from scheduler.pod import PodRequest, Resources
from scheduler.strategies import (
    MAX_NODE_SCORE,
    MIN_NODE_SCORE,
    Cell,
    Weights,
    balanced_allocation,
    least_allocated,
    most_allocated,
    normalize_score,
    numa_nodes_required,
    only_non_numa_resources,
    subtract_greedy,
)
from topology.nrt import NodeResourceTopology, TopologyManagerConfig

__all__ = [
    "DEFAULT_STRATEGY",
    "MAX_EXTENDER_SCORE",
    "SCORING_STRATEGIES",
    "NodeScoreFn",
    "Scorer",
    "resolve_strategy",
    "to_extender_score",
]

#: kube-scheduler extender ``MaxExtenderPriority``.
MAX_EXTENDER_SCORE = 10
#: (pod, working NUMA cells, topology manager config, weights) -> 0..MAX_NODE_SCORE.
NodeScoreFn = Callable[[PodRequest, list[Cell], TopologyManagerConfig, Weights], int]
ZoneScoreFn = Callable[[Resources, Resources, Weights], int]


def _min_nonzero_zone(request: Resources, cells: Sequence[Cell], zone_fn: ZoneScoreFn, w: Weights) -> int:
    """The worst fitting zone: the smallest non-zero zone score (0 when none fits)."""
    scores = [zone_fn(request, c.available, w) for c in cells]
    return min((s for s in scores if s != 0), default=MIN_NODE_SCORE)


def _allocation(zone_fn: ZoneScoreFn) -> NodeScoreFn:
    """A node scorer from a per-zone formula (single-numa-node nodes only)."""

    def score(pod: PodRequest, cells: list[Cell], conf: TopologyManagerConfig, w: Weights) -> int:
        if conf.policy != "single-numa-node":
            return MIN_NODE_SCORE
        if conf.scope == "pod":
            return _min_nonzero_zone(pod.effective_request(), cells, zone_fn, w)
        containers = pod.all_containers()
        per_container = [_min_nonzero_zone(c.requests, cells, zone_fn, w) for c in containers]
        return sum(per_container) // len(per_container) if per_container else MAX_NODE_SCORE

    return score


def _least_numa(pod: PodRequest, cells: list[Cell], conf: TopologyManagerConfig, w: Weights) -> int:
    """Fewer NUMA nodes needed (and closer ones) score higher; every policy."""
    if conf.scope == "pod":
        request = pod.effective_request()
        if only_non_numa_resources(cells, request):
            return MAX_NODE_SCORE
        ids, is_min = numa_nodes_required(cells, request, pod.qos)
        return MIN_NODE_SCORE if ids is None else normalize_score(len(ids), is_min)
    widest, all_min = 0, True
    for container in pod.all_containers():
        if only_non_numa_resources(cells, container.requests):
            continue
        ids, is_min = numa_nodes_required(cells, container.requests, pod.qos)
        if ids is None:
            return MIN_NODE_SCORE
        widest, all_min = max(widest, len(ids)), all_min and is_min
        subtract_greedy(cells, ids, container.requests)
    return MAX_NODE_SCORE if widest == 0 else normalize_score(widest, all_min)


#: Strategy name -> node scorer. Canonical names first, then the plugin's own spellings.
SCORING_STRATEGIES: Mapping[str, NodeScoreFn] = MappingProxyType(
    {
        "least-numa-nodes": _least_numa,
        "most-allocated": _allocation(most_allocated),
        "balanced-allocation": _allocation(balanced_allocation),
        "least-allocated": _allocation(least_allocated),
    }
)
_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "LeastNUMANodes": "least-numa-nodes",
        "MostAllocated": "most-allocated",
        "BalancedAllocation": "balanced-allocation",
        "LeastAllocated": "least-allocated",
    }
)
DEFAULT_STRATEGY = "least-numa-nodes"


def resolve_strategy(name: str) -> tuple[str, NodeScoreFn]:
    """The canonical name and scorer for *name* (either spelling)."""
    canonical = _ALIASES.get(name, name)
    if canonical not in SCORING_STRATEGIES:
        valid = ", ".join([*SCORING_STRATEGIES, *_ALIASES])
        raise SchedulerConfigError(f"scoring strategy {name!r} is unknown; valid names: {valid}")
    return canonical, SCORING_STRATEGIES[canonical]


def _check_weights(weights: Mapping[str, int]) -> Weights:
    for name, w in weights.items():
        if not isinstance(name, str) or not name or isinstance(w, bool) or not isinstance(w, int):
            raise SchedulerConfigError(f"resource weight {name!r}: {w!r} (expected resource name -> integer)")
    return MappingProxyType(dict(weights))


@dataclass(frozen=True, slots=True, init=False)
class Scorer:
    """Scores pods against nodes with one strategy, chosen at construction.

    >>> scorer = Scorer("most-allocated")        # or "MostAllocated"
    >>> scorer.score(pod, nrt)                   # doctest: +SKIP
    27
    """

    strategy: str
    weights: Weights
    _fn: NodeScoreFn

    def __init__(self, strategy: str = DEFAULT_STRATEGY, weights: Mapping[str, int] | None = None) -> None:
        canonical, fn = resolve_strategy(strategy)
        object.__setattr__(self, "strategy", canonical)
        object.__setattr__(self, "weights", _check_weights(weights or {}))
        object.__setattr__(self, "_fn", fn)

    def score(self, pod: PodRequest, nrt: NodeResourceTopology | None) -> int:
        """The plugin-scale score (0..100) of *pod* on the node described by *nrt*."""
        if not pod.guaranteed:
            return MAX_NODE_SCORE
        if nrt is None:
            return MIN_NODE_SCORE
        score = self._fn(pod, working_cells(nrt), nrt.topology_manager(), self.weights)
        return min(max(score, MIN_NODE_SCORE), MAX_NODE_SCORE)

    def score_all(
        self, pod: PodRequest, nrts: Iterable[tuple[str, NodeResourceTopology | None]]
    ) -> dict[str, int]:
        return {name: self.score(pod, nrt) for name, nrt in nrts}


def to_extender_score(score: int) -> int:
    """Plugin scale 0..100 -> extender scale 0..10, rounding half up, clamped."""
    clamped = min(max(score, MIN_NODE_SCORE), MAX_NODE_SCORE)
    return (clamped * MAX_EXTENDER_SCORE + MAX_NODE_SCORE // 2) // MAX_NODE_SCORE
