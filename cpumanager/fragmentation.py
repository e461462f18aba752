"""Fragmentation: how scattered a free CPU set is, and a choice that keeps it low (pure).

kubelet's taker walks sockets → cores → threads over the whole available set. Its
whole-core step may reach into a wholly free socket while a partly used socket still has
enough free threads, so under churn every socket ends up partly used and a request for
a whole socket (or a single-NUMA-node request of that size) can no longer be met, even
though enough CPUs are free.

:func:`take_best_fit` is the ``fragmentation-aware`` choice. Among equally aligned
candidates it keeps the largest free units intact:

1. Best-fit unit: of the smallest level (NUMA node or socket, whichever is smaller) and
   then the next, pick the unit with the *fewest* available CPUs that still holds the
   whole request (ties: fewer wholly free cores, so partly used cores are used up
   first; then lower id), and take inside it with kubelet's taker. Inside the unit,
   kubelet's order already takes whole cores first and an odd thread from a partly
   used core.
2. When no single unit holds the request, kubelet's taker over everything (it fills the
   fullest units first, so the remaining free units stay whole where possible).

:func:`measure` reports fragmentation of a free set: counts of free CPUs, wholly free
cores / NUMA nodes / sockets, the largest free share of a NUMA node and of a socket, and
a 0..1 score per level. A level's score is the share of the free CPUs that would have to
move for the free set to be packed as tightly as that level allows (free CPUs filling
the biggest units first); 0 means perfectly packed. The overall ``score`` is the mean
over cores, NUMA nodes and sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cpumanager.cpu_topology import CPUTopology
from topology.cpuset import CPUSet

__all__ = ["Fragmentation", "Taker", "best_fit_unit", "measure", "take_best_fit"]

#: ``taker(available, n)``: kubelet's choice of *n* CPUs of *available* (with options).
Taker = Callable[[CPUSet, int], CPUSet]


# ------------------------------------------------------------------ choice


def _whole_cores_mask(topo: CPUTopology, free: int) -> int:
    """The CPUs of *free* that sit in wholly free cores, as a bitmask."""
    mask = 0
    for core_mask in topo.core_bits.values():
        if core_mask & free == core_mask:
            mask |= core_mask
    return mask


def _levels(topo: CPUTopology) -> list[Mapping[int, int]]:
    """Unit masks per level, smallest level first (NUMA nodes vs sockets)."""
    levels = [topo.numa_bits, topo.socket_bits]
    return sorted(levels, key=lambda units: max((m.bit_count() for m in units.values()), default=0))


def best_fit_unit(
    topo: CPUTopology, available: CPUSet, n: int, *, whole_cores_only: bool = False
) -> CPUSet | None:
    """The available CPUs of the best-fit NUMA node or socket for *n* CPUs, or None.

    Levels are tried smallest first. A unit fits when it has at least *n* available CPUs
    (counting only wholly free cores when *whole_cores_only*). Among fitting units of a
    level the sort keys are, in order: available CPUs (ascending), CPUs in wholly free
    cores (ascending), unit id (ascending).
    """
    free = available.bits & topo.cpuset.bits
    whole_free = _whole_cores_mask(topo, free)
    for units in _levels(topo):
        best: tuple[int, int, int] | None = None
        for unit, mask in units.items():
            have = (mask & free).bit_count()
            whole = (mask & whole_free).bit_count()
            if (whole if whole_cores_only else have) < n:
                continue
            key = (have, whole, unit)
            if best is None or key < best:
                best = key
        if best is not None:
            return CPUSet.from_bits(units[best[2]] & free)
    return None


def take_best_fit(
    topo: CPUTopology, available: CPUSet, n: int, taker: Taker, *, whole_cores_only: bool = False
) -> CPUSet:
    """Pick *n* CPUs of *available*, fragmentation-aware (see the module docstring).

    *taker* is kubelet's choice with the policy's options; it is used inside the
    best-fit unit, or over all of *available* when no unit holds the request (it then
    raises :class:`~cpumanager.errors.InsufficientCPUsError` when too few are free).
    """
    if n <= 0:
        return taker(available, n)
    unit = best_fit_unit(topo, available, n, whole_cores_only=whole_cores_only)
    return taker(unit if unit is not None else available, n)


# ----------------------------------------------------------------- measure


@dataclass(frozen=True, slots=True)
class Fragmentation:
    """Fragmentation of a free CPU set on one machine (see :func:`measure`)."""

    free_cpus: int
    free_whole_cores: int
    partly_free_cores: int
    free_numa_nodes: tuple[int, ...]
    free_sockets: tuple[int, ...]
    largest_numa_free: int
    largest_numa_fraction: float
    largest_socket_free: int
    largest_socket_fraction: float
    core_score: float
    numa_score: float
    socket_score: float

    @property
    def score(self) -> float:
        """Mean of the core, NUMA and socket scores (0 packed .. 1 scattered)."""
        return (self.core_score + self.numa_score + self.socket_score) / 3


def _level_score(free: int, masks: Mapping[int, int]) -> float:
    """Share of the free CPUs that must move to pack them into the biggest units first."""
    total = free.bit_count()
    if total == 0:
        return 0.0
    actual = sorted(((m & free).bit_count() for m in masks.values()), reverse=True)
    ideal: list[int] = []
    left = total
    for size in sorted((m.bit_count() for m in masks.values()), reverse=True):
        ideal.append(min(size, left))
        left -= ideal[-1]
    in_place = sum(min(a, b) for a, b in zip(actual, ideal, strict=True))
    return (total - in_place) / total


def _largest(free: int, masks: Mapping[int, int]) -> tuple[int, float]:
    """(free CPUs, free fraction) of the unit with the highest free fraction."""
    best = (0, 0.0)
    for mask in masks.values():
        have = (mask & free).bit_count()
        share = have / mask.bit_count() if mask else 0.0
        if (share, have) > (best[1], best[0]):
            best = (have, share)
    return best


def _wholly_free(free: int, masks: Mapping[int, int]) -> tuple[int, ...]:
    return tuple(u for u, m in sorted(masks.items()) if m and m & free == m)


def measure(topo: CPUTopology, free_cpus: CPUSet) -> Fragmentation:
    """Fragmentation of *free_cpus* (CPUs outside the machine are ignored).

    >>> frag = measure(view, CPUSet.parse("0-23"))     # doctest: +SKIP
    >>> frag.free_sockets, round(frag.score, 2)        # doctest: +SKIP
    ((0,), 0.0)
    """
    free = free_cpus.bits & topo.cpuset.bits
    cores = topo.core_bits
    whole = len(_wholly_free(free, cores))
    partly = sum(1 for m in cores.values() if m & free and m & free != m)
    numa_free, numa_share = _largest(free, topo.numa_bits)
    socket_free, socket_share = _largest(free, topo.socket_bits)
    return Fragmentation(
        free_cpus=free.bit_count(),
        free_whole_cores=whole,
        partly_free_cores=partly,
        free_numa_nodes=_wholly_free(free, topo.numa_bits),
        free_sockets=_wholly_free(free, topo.socket_bits),
        largest_numa_free=numa_free,
        largest_numa_fraction=numa_share,
        largest_socket_free=socket_free,
        largest_socket_fraction=socket_share,
        core_score=_level_score(free, cores),
        numa_score=_level_score(free, topo.numa_bits),
        socket_score=_level_score(free, topo.socket_bits),
    )
