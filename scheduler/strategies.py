"""Scoring strategies of NodeResourceTopologyMatch, as pure functions.

Two kinds live here:

* per-zone scores (``most_allocated``, ``least_allocated``, ``balanced_allocation``):
  ``(request, zone available, weights) -> 0..MAX_NODE_SCORE``, combined into a node
  score by :mod:`scheduler.score`;
* the LeastNUMANodes building blocks: the smallest set of NUMA zones whose summed
  ``available`` holds a request (:func:`numa_nodes_required`), the average distance
  of a set (:func:`nodes_avg_distance`) and the score of a set size
  (:func:`normalize_score`).

Amounts arrive canonical (cpu in millicores). Comparisons are exact; the score
arithmetic uses integer values with fractions rounded up, as Kubernetes'
``Quantity.Value()`` does, so ``500m`` of cpu counts as 1 there.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from scheduler.pod import QOSClass, Resources, is_hugepages
from topology.quantity import CPU

__all__ = [
    "HIGHEST_NUMA_ID",
    "MAX_DISTANCE",
    "MAX_NODE_SCORE",
    "MIN_NODE_SCORE",
    "Cell",
    "Weights",
    "balanced_allocation",
    "least_allocated",
    "min_avg_distance",
    "most_allocated",
    "nodes_avg_distance",
    "normalize_score",
    "numa_nodes_required",
    "only_non_numa_resources",
    "pinned_only_when_guaranteed",
    "subtract_greedy",
    "suitable",
    "weight_of",
]

#: kube-scheduler ``framework.MinNodeScore`` / ``MaxNodeScore``.
MIN_NODE_SCORE = 0
MAX_NODE_SCORE = 100
#: Topology Manager's historical limit of 8 NUMA nodes; LeastNUMANodes normalises by it
#: (scheduler-plugins ``highestNUMAID``).
HIGHEST_NUMA_ID = 8
#: Distance assumed between zones whose cost is not reported (SLIT maximum).
MAX_DISTANCE = 255

#: resource name -> weight; a missing name weighs 1.
Weights = Mapping[str, int]
#: (resource, requested, zone available) -> 0..MAX_NODE_SCORE for that resource.
_PerResource = Callable[[str, int, int], int]


@dataclass(slots=True)
class Cell:
    """A mutable working copy of one NUMA zone: id, ``available`` and costs by NUMA id."""

    numa_id: int
    available: dict[str, int]
    costs: Mapping[int, int] = field(default_factory=dict)


def weight_of(weights: Weights, resource: str) -> int:
    """The weight of *resource*: 1 when unset; weights below 1 count as 1."""
    return max(weights.get(resource, 1), 1)


def _value(resource: str, amount: int) -> int:
    """Canonical amount -> integer value (millicores round up to whole CPUs)."""
    return math.ceil(amount / 1000) if resource == CPU else amount


def pinned_only_when_guaranteed(resource: str) -> bool:
    """cpu, memory and hugepages: kubelet aligns them only for Guaranteed pods."""
    return resource in (CPU, "memory") or is_hugepages(resource)


def suitable(qos: QOSClass, resource: str, requested: int, available: int) -> bool:
    """Can *available* of *resource* serve *requested*? Always for unpinned resources of a
    non-Guaranteed pod."""
    if qos is not QOSClass.GUARANTEED and pinned_only_when_guaranteed(resource):
        return True
    return available >= requested


# --------------------------------------------------------- per-zone scores
def _weighted_mean(
    request: Resources, zone: Resources, weights: Weights, per_resource: _PerResource, empty: int
) -> int:
    if not request:
        return empty
    total = weight_sum = 0
    for name, amount in request.items():
        w = weight_of(weights, name)
        total += per_resource(name, amount, zone.get(name, 0)) * w
        weight_sum += w
    return total // weight_sum


def _most(name: str, requested: int, available: int) -> int:
    if available == 0 or requested > available:
        return 0
    return _value(name, requested) * MAX_NODE_SCORE // _value(name, available)


def _least(name: str, requested: int, available: int) -> int:
    if available == 0 or requested > available:
        return 0
    cap = _value(name, available)
    return (cap - _value(name, requested)) * MAX_NODE_SCORE // cap


def most_allocated(request: Resources, zone: Resources, weights: Weights) -> int:
    """Weighted mean of ``r·100/a`` (0 where ``a == 0`` or ``r > a``); an empty request is 0."""
    return _weighted_mean(request, zone, weights, _most, MIN_NODE_SCORE)


def least_allocated(request: Resources, zone: Resources, weights: Weights) -> int:
    """Weighted mean of ``(a-r)·100/a`` (0 where ``a == 0`` or ``r > a``); empty request is 100."""
    return _weighted_mean(request, zone, weights, _least, MAX_NODE_SCORE)


def _sample_variance(xs: Sequence[float]) -> float:
    """Corrected two-pass sample variance (n-1 denominator); 0 for fewer than two values."""
    n = len(xs)
    if n < 2:
        return 0.0
    mean = sum(xs) / n
    ss = comp = 0.0
    for x in xs:
        d = x - mean
        ss += d * d
        comp += d
    return (ss - comp * comp / n) / (n - 1)


def balanced_allocation(request: Resources, zone: Resources, weights: Weights) -> int:
    """``(1 - variance(r/a))·100`` over the requested resources; 0 if any ``r/a > 1``.

    A zone lacking a resource counts its fraction as 1. Weights do not apply (as
    upstream). One resource, or none, has no imbalance: 100.
    """
    fractions: list[float] = []
    for name, amount in request.items():
        cap = _value(name, zone.get(name, 0))
        frac = 1.0 if cap == 0 else _value(name, amount) / cap
        if frac > 1:
            return MIN_NODE_SCORE
        fractions.append(frac)
    return int((1 - _sample_variance(fractions)) * MAX_NODE_SCORE)


# ------------------------------------------------------------ least NUMA
def only_non_numa_resources(cells: Sequence[Cell], request: Resources) -> bool:
    """True when no zone reports any of the requested resources."""
    return not any(name in c.available for c in cells for name in request)


def _distance_sum(cells: Sequence[Cell], positions: Sequence[int]) -> int:
    return sum(cells[a].costs.get(cells[b].numa_id, MAX_DISTANCE) for a in positions for b in positions)


def nodes_avg_distance(cells: Sequence[Cell], positions: Sequence[int]) -> Fraction:
    """Mean of ``cost[a][b]`` over all ordered pairs of the set, ``a == b`` included;
    a missing cost counts as :data:`MAX_DISTANCE`."""
    if not positions:
        return Fraction(MAX_DISTANCE)
    return Fraction(_distance_sum(cells, positions), len(positions) ** 2)


def min_avg_distance(cells: Sequence[Cell], combinations: Sequence[Sequence[int]]) -> Fraction:
    """The smallest :func:`nodes_avg_distance` among *combinations* (positions in *cells*)."""
    return min((nodes_avg_distance(cells, c) for c in combinations), default=Fraction(MAX_DISTANCE))


def _needed(request: Resources, qos: QOSClass) -> list[tuple[str, int]]:
    """The (resource, amount) pairs a set of zones must hold for *qos*."""
    return [
        (name, amount)
        for name, amount in request.items()
        if amount != 0 and (qos is QOSClass.GUARANTEED or not pinned_only_when_guaranteed(name))
    ]


def _set_fits(cells: Sequence[Cell], positions: Sequence[int], request: Resources, qos: QOSClass) -> bool:
    for name, amount in _needed(request, qos):
        members = [cells[p].available.get(name) for p in positions]
        # Every NUMA node of the set must report the resource for it to be spread there.
        if any(m is None for m in members) or sum(m or 0 for m in members) < amount:
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _min_distance_sums(costs: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Per set size k (index k-1), the least distance sum over all k-sets of positions."""
    n = len(costs)
    out = []
    for size in range(1, n + 1):
        out.append(
            min(sum(costs[a][b] for a in c for b in c) for c in itertools.combinations(range(n), size))
        )
    return tuple(out)


def _cost_matrix(cells: Sequence[Cell]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(a.costs.get(b.numa_id, MAX_DISTANCE) for b in cells) for a in cells)


def numa_nodes_required(
    cells: Sequence[Cell], request: Resources, qos: QOSClass
) -> tuple[frozenset[int] | None, bool]:
    """The smallest set of NUMA ids whose summed ``available`` holds *request*.

    Sets of size 1, 2, ... are tried over zone positions in lexicographic order. Among
    the fitting sets of the smallest size the first with the least average distance
    wins. Returns (NUMA ids, whether that distance is the least possible for any set
    of that size), or (None, False) when nothing fits.
    """
    needed = _needed(request, qos)
    # Per needed resource, the zone amounts by position (None: the zone does not report it).
    columns = [([c.available.get(name) for c in cells], amount) for name, amount in needed]
    usable = [p for p in range(len(cells)) if all(col[p] is not None for col, _ in columns)]
    if columns and not usable:
        return None, False
    costs = _cost_matrix(cells)
    for size in range(1, len(cells) + 1):
        # Sets of one size share the denominator size², so distance sums compare like averages.
        best: tuple[int, ...] | None = None
        best_sum = 0
        for combo in itertools.combinations(range(len(cells)), size):
            if not all(
                sum(col[p] or 0 for p in combo) >= amount and all(col[p] is not None for p in combo)
                for col, amount in columns
            ):
                continue
            total = sum(costs[a][b] for a in combo for b in combo)
            if best is None or total < best_sum:
                best, best_sum = combo, total
        if best is not None:
            ids = frozenset(cells[p].numa_id for p in best)
            return ids, best_sum == _min_distance_sums(costs)[size - 1]
    return None, False


def normalize_score(numa_count: int, is_min_avg_distance: bool) -> int:
    """``100 - n·(100 div 8)``, plus half a step when the set has the least average distance."""
    step = MAX_NODE_SCORE // HIGHEST_NUMA_ID
    score = MAX_NODE_SCORE - numa_count * step
    return score + step // 2 if is_min_avg_distance else score


def subtract_greedy(cells: Sequence[Cell], numa_ids: frozenset[int], request: Resources) -> None:
    """Take *request* out of the chosen NUMA zones, lowest id first, never below zero."""
    chosen = sorted((c for c in cells if c.numa_id in numa_ids), key=lambda c: c.numa_id)
    for name, amount in request.items():
        left = amount
        for cell in chosen:
            if left == 0:
                break
            have = cell.available.get(name)
            if have is None:
                continue
            take = min(have, left)
            cell.available[name] = have - take
            left -= take
