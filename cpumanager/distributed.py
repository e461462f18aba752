"""NUMA-distributed CPU allocation (kubelet's ``distribute-cpus-across-numa``, KEP-2902).

A request that needs several NUMA nodes is split evenly over the smallest set of nodes
that can hold it, choosing the set (and the nodes that absorb the remainder) that leaves
the free CPUs of all nodes most balanced: the lowest population standard deviation of
the free-CPU counts per node, rounded as kubelet rounds it. Pure, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cpumanager.allocation import CPUAccumulator, Strategy, _start, take_by_topology
from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import AllocationError
from cpumanager.slice_combinations import SharedSlice, slice_combinations
from topology.cpuset import CPUSet

__all__ = ["balance_score", "take_by_topology_numa_distributed"]


def _round3(x: float) -> float:
    """Round to 3 decimals, halves away from zero (Go's ``math.Round(x*1000)/1000``)."""
    y = x * 1000
    whole = math.trunc(y)
    if abs(y - whole) >= 0.5:
        whole += 1 if y > 0 else -1
    return whole / 1000


def balance_score(counts: Sequence[int]) -> float:
    """Population standard deviation of *counts*: mean rounded to 3 decimals, then the
    root of the mean squared deviation rounded to 3 decimals."""
    mean = _round3(sum(counts) / len(counts))
    variance = sum((c - mean) ** 2 for c in counts) / len(counts)
    return _round3(math.sqrt(variance))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class _Choice:
    """A NUMA combination, the nodes that take the remainder, and its balance score.

    Both node lists are kubelet's shared slices: read them (``values()``) only once the
    search is over, as kubelet does."""

    combo: SharedSlice
    remainder_nodes: SharedSlice | None
    balance: float


def _node_range(acc: CPUAccumulator, numas: list[int], group: int) -> range:
    """How many NUMA nodes to try: from the fewest that could hold the request at an even
    share of the machine's CPU groups, to one node per group needed (or all available)."""
    topo = acc.topo
    groups_per_numa = _ceil_div(_ceil_div(len(topo.cpuset), group), len(topo.numa_cpus))
    groups_needed = _ceil_div(acc.need, group)
    return range(_ceil_div(groups_needed, groups_per_numa), min(groups_needed, len(numas)) + 1)


def _spread_remainder(after: dict[int, int], subset: tuple[int, ...], rem: int, group: int) -> bool:
    """Hand *rem* CPUs out of *subset* in groups, round-robin; False when stuck."""
    while rem > 0:
        progressed = False
        for numa in subset:
            if rem == 0:
                break
            if after[numa] >= group:
                after[numa] -= group
                rem -= group
                progressed = True
        if not progressed:
            return False
    return True


def _best_remainder(
    after: dict[int, int], combo: tuple[int, ...], rem: int, group: int
) -> tuple[float, SharedSlice | None]:
    """The most balanced subset of *combo* to absorb *rem* CPUs (largest subsets first;
    the first subset wins ties) and its score."""
    if rem == 0:
        return balance_score(list(after.values())), None
    best: tuple[float, SharedSlice | None] = (math.inf, None)
    candidates = [n for n in combo if after[n] >= group]
    for size in range(len(candidates), 0, -1):
        for shared in slice_combinations(candidates, size):
            subset = shared.values()
            if sum(after[n] for n in subset) < rem:
                continue
            trial = dict(after)
            if not _spread_remainder(trial, subset, rem, group):
                continue
            score = balance_score(list(trial.values()))
            if score < best[0]:
                best = (score, shared)
    return best


def _score_combo(free: dict[int, int], n: int, shared: SharedSlice, group: int) -> _Choice | None:
    """Score one NUMA combination for *n* CPUs given each available node's free CPU
    count, or None when the combination cannot hold the request evenly."""
    combo = shared.values()
    if sum(free[x] for x in combo) < n or sum(free[x] // group for x in combo) * group < n:
        return None
    share = (n // len(combo) // group) * group
    if any(free[x] < share for x in combo):
        return None
    after = dict(free)
    for x in combo:
        after[x] -= share
    balance, rem_nodes = _best_remainder(after, combo, n - share * len(combo), group)
    return _Choice(shared, rem_nodes, balance)


def _choose(acc: CPUAccumulator, group: int) -> _Choice | None:
    """The most balanced combination of the fewest NUMA nodes that can take the request."""
    numas = acc.sorted_numa_nodes()
    details = acc.details
    free = {n: len(details & acc.topo.numa_cpus[n]) for n in numas}
    for k in _node_range(acc, numas, group):
        best: _Choice | None = None
        for combo in slice_combinations(numas, k):
            if best is not None and best.balance == 0:
                break
            choice = _score_combo(free, acc.need, combo, group)
            if choice is not None and (best is None or choice.balance < best.balance):
                best = choice
        if best is not None and best.balance < math.inf:
            return best
    return None


def _allocate(acc: CPUAccumulator, choice: _Choice, group: int) -> CPUSet:
    """Take an even share from every node of the choice, then the remainder in groups."""
    topo, n = acc.topo, acc.need
    combo = choice.combo.values()
    remainder_nodes = () if choice.remainder_nodes is None else choice.remainder_nodes.values()
    share = (n // len(combo) // group) * group
    for numa in combo:
        acc.take(take_by_topology(topo, acc.details & topo.numa_cpus[numa], share, strategy=acc.strategy))
    rem = n - share * len(combo)
    while rem > 0:
        progressed = False
        for numa in remainder_nodes:
            node_free = acc.details & topo.numa_cpus[numa]
            if rem == 0 or len(node_free) < group:
                continue
            acc.take(take_by_topology(topo, node_free, group, strategy=acc.strategy))
            rem -= group
            progressed = True
        if not progressed:
            break
    if acc.need != 0:
        word = "not enough" if acc.need > 0 else "too many"
        raise AllocationError(
            f"accounting error, {word} CPUs allocated, remaining: {acc.need}",
            "this is a bug in the NUMA-distributed allocator; disable distribute-cpus-across-numa",
        )
    return acc.result


def take_by_topology_numa_distributed(
    topo: CPUTopology,
    available: CPUSet,
    n: int,
    *,
    group_size: int = 1,
    strategy: Strategy = "packed",
) -> CPUSet:
    """Pick *n* CPUs of *available*, spread evenly over the fewest NUMA nodes that fit.

    1. If *n* is not a multiple of *group_size*, use the packed taker instead.
    2. For k NUMA nodes, from the fewest that could hold the request upward, score
       every k-combination of the available nodes (in (free CPUs, id) order): each node
       takes an even share in groups of *group_size*; the remainder goes round-robin, in
       groups, to the subset of the combination that leaves the most balanced machine.
       The combination with the lowest balance score wins (the first on ties).
    3. Take each node's share, then the remainder, with the packed taker per node.
    4. If no combination fits, use the packed taker.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if n % group_size != 0:
        return take_by_topology(topo, available, n, strategy=strategy)
    acc, done = _start(topo, available, n, strategy)
    if done is not None:
        return done
    choice = _choose(acc, group_size)
    if choice is None:
        return take_by_topology(topo, available, n, strategy=strategy)
    return _allocate(acc, choice, group_size)
