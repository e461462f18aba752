"""Topology-aware CPU allocation: the pure core of the static policy (no I/O).

:func:`take_by_topology` picks *n* CPUs out of an available set the way kubelet's static
CPU manager does: whole NUMA nodes and sockets first, then (optionally) whole L3
caches, then whole cores, then single threads, always preferring the units that are
already partly used so that free units stay free. :func:`take_by_topology_numa_distributed`
(in :mod:`cpumanager.distributed`) spreads a large request evenly over NUMA nodes instead.

Both work over a :class:`CPUAccumulator`: the CPUs still free, the number still needed and
the result so far. Its ``free_*``/``sorted_*`` candidate generators document their sort
keys; each step computes its candidate list once and walks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Literal

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import AllocationError, InsufficientCPUsError
from topology.cpuset import CPUSet

__all__ = [
    "CPUAccumulator",
    "Strategy",
    "take_by_topology",
]

#: ``packed`` fills cores before moving on; ``spread`` prefers one thread per core
#: (kubelet's ``distribute-cpus-across-cores``).
Strategy = Literal["packed", "spread"]
STRATEGIES: tuple[Strategy, ...] = ("packed", "spread")


def _ids(mask: int) -> list[int]:
    """The CPU ids of a bitmask, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _children_with(children: Mapping[int, tuple[tuple[int, int], ...]], parent: int, free: int) -> list[int]:
    """Children of *parent* that still hold a free CPU (ascending id)."""
    return [c for c, mask in children.get(parent, ()) if mask & free]


class CPUAccumulator:
    """The state of one allocation: free CPUs (``details``), ``need`` and ``result``.

    Ordering rule shared by every candidate generator: units are sorted by the number of
    their CPUs that are still free (ascending, so partly used units come first and whole
    free units are kept for larger requests), then by id (ascending). Hierarchical lists
    sort children within each parent, parents in their own order.
    """

    __slots__ = ("_free", "_result", "need", "strategy", "topo")

    def __init__(self, topo: CPUTopology, available: CPUSet, n: int, strategy: Strategy = "packed") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.topo = topo
        self._free = available.bits & topo.cpuset.bits
        self._result = 0
        self.need = n
        self.strategy: Strategy = strategy

    @property
    def details(self) -> CPUSet:
        """The CPUs still free."""
        return CPUSet.from_bits(self._free)

    @property
    def result(self) -> CPUSet:
        """The CPUs taken so far."""
        return CPUSet.from_bits(self._result)

    # ---------------------------------------------------------- primitives
    def take(self, cpus: CPUSet) -> None:
        """Add *cpus* to the result and drop them from the free CPUs."""
        self._take(cpus.bits)

    def _take(self, mask: int) -> None:
        self._result |= mask
        self._free &= ~mask
        self.need -= mask.bit_count()

    def needs_at_least(self, n: int) -> bool:
        return self.need >= n

    def is_satisfied(self) -> bool:
        return self.need < 1

    def is_failed(self) -> bool:
        return self.need > self._free.bit_count()

    def _sort(self, ids: list[int], masks: Mapping[int, int]) -> list[int]:
        free = self._free
        return sorted(ids, key=lambda i: ((free & masks[i]).bit_count(), i))

    # --------------------------------------------------- ordered candidates
    def sorted_numa_nodes(self) -> list[int]:
        """NUMA nodes with free CPUs. NUMA-first: (free CPUs, id). Sockets-first: by
        socket in :meth:`sorted_sockets` order, then (free CPUs, id) within a socket."""
        topo, free = self.topo, self._free
        if topo.numa_first:
            return self._sort([n for n, m in topo.numa_bits.items() if m & free], topo.numa_bits)
        return [
            n
            for s in self.sorted_sockets()
            for n in self._sort(_children_with(topo.socket_numa_bits, s, free), topo.numa_bits)
        ]

    def sorted_sockets(self) -> list[int]:
        """Sockets with free CPUs. Sockets-first: (free CPUs, id). NUMA-first: by NUMA
        node in :meth:`sorted_numa_nodes` order, then (free CPUs, id) within a node."""
        topo, free = self.topo, self._free
        if not topo.numa_first:
            return self._sort([s for s, m in topo.socket_bits.items() if m & free], topo.socket_bits)
        return [
            s
            for n in self.sorted_numa_nodes()
            for s in self._sort(_children_with(topo.numa_socket_bits, n, free), topo.socket_bits)
        ]

    def sorted_cores(self) -> list[int]:
        """Cores with free CPUs: by the lower level of NUMA/socket (sockets when
        NUMA-first, NUMA nodes when sockets-first) in its order, then (free CPUs, id)."""
        return list(self._iter_cores(self._free))

    def _iter_cores(self, free: int) -> Iterator[int]:
        """:meth:`sorted_cores` as of the free mask *free*, one parent group at a time (so
        a step that is satisfied early never sorts the later groups)."""
        topo = self.topo
        if topo.numa_first:
            parents, children = self.sorted_sockets(), topo.socket_core_bits
        else:
            parents, children = self.sorted_numa_nodes(), topo.numa_core_bits
        masks = topo.core_bits
        for parent in parents:
            group = _children_with(children, parent, free)
            yield from sorted(group, key=lambda c: ((free & masks[c]).bit_count(), c))

    def sorted_l3_caches(self) -> list[int]:
        """L3 caches with free CPUs: by NUMA node in :meth:`sorted_numa_nodes`
        order, then (free CPUs, id) within a node."""
        topo, free = self.topo, self._free
        return [
            u
            for n in self.sorted_numa_nodes()
            for u in self._sort(_children_with(topo.numa_l3_bits, n, free), topo.l3_bits)
        ]

    def sorted_cpus(self) -> list[int]:
        """Free CPUs. Packed: by core in :meth:`sorted_cores` order, a core's CPUs by id.
        Spread: by socket in :meth:`sorted_sockets` order, a socket's CPUs by id (sibling
        threads have distant ids, so this visits one thread per core first)."""
        return list(self._iter_cpus(self._free))

    def _iter_cpus(self, free: int) -> Iterator[int]:
        """:meth:`sorted_cpus` as of the free mask *free*, generated lazily."""
        topo = self.topo
        if self.strategy == "spread":
            units: Iterator[int] | list[int] = self.sorted_sockets()
            masks = topo.socket_bits
        else:
            units, masks = self._iter_cores(free), topo.core_bits
        for unit in units:
            yield from _ids(free & masks[unit])

    # ------------------------------------------------------- free units
    def free_numa_nodes(self) -> list[int]:
        """NUMA nodes all of whose CPUs are free, in :meth:`sorted_numa_nodes` order."""
        masks, free = self.topo.numa_bits, self._free
        return [n for n in self.sorted_numa_nodes() if masks[n] & free == masks[n]]

    def free_sockets(self) -> list[int]:
        """Sockets with the declared CPUs-per-socket free, in :meth:`sorted_sockets` order."""
        size, masks, free = self.topo.declared_cpus_per_socket(), self.topo.socket_bits, self._free
        return [s for s in self.sorted_sockets() if (masks[s] & free).bit_count() == size]

    def free_cores(self) -> list[int]:
        """Cores with the declared CPUs-per-core free, in :meth:`sorted_cores` order."""
        size, masks, free = self.topo.declared_cpus_per_core(), self.topo.core_bits, self._free
        return [c for c in self.sorted_cores() if (masks[c] & free).bit_count() == size]

    def free_l3_caches(self) -> list[int]:
        """L3 caches all of whose CPUs are free, in :meth:`sorted_l3_caches` order."""
        masks, free = self.topo.l3_bits, self._free
        return [u for u in self.sorted_l3_caches() if masks[u] & free == masks[u]]

    def free_cpus(self) -> list[int]:
        """Free CPUs in packed order (see :meth:`sorted_cpus`)."""
        return CPUAccumulator(self.topo, self.details, self.need, "packed").sorted_cpus()

    # ------------------------------------------------------------- steps
    def _take_whole(self, units: list[int], masks: Mapping[int, int]) -> None:
        """Take each listed unit's free CPUs while at least that many are needed."""
        for unit in units:
            mask = masks[unit] & self._free
            if mask and self.needs_at_least(mask.bit_count()):
                self._take(mask)

    def take_full_numa_nodes(self) -> None:
        if self.need >= min((m.bit_count() for m in self.topo.numa_bits.values()), default=1):
            self._take_whole(self.free_numa_nodes(), self.topo.numa_bits)

    def take_full_sockets(self) -> None:
        size = self.topo.declared_cpus_per_socket()
        if size and self.need >= size:  # a free socket has exactly `size` free CPUs
            self._take_whole(self.free_sockets(), self.topo.socket_bits)

    def take_full_cores(self) -> None:
        size, masks = self.topo.declared_cpus_per_core(), self.topo.core_bits
        if not size or self.need < size:  # a free core has exactly `size` free CPUs
            return
        start = self._free
        for core in self._iter_cores(start):
            if (masks[core] & start).bit_count() == size:
                self._take(masks[core] & start)
            if self.need < size:  # satisfied, or no whole core fits what is left
                return

    def take_first_level(self) -> None:
        """Whole NUMA nodes when a NUMA node holds sockets, else whole sockets."""
        (self.take_full_numa_nodes if self.topo.numa_first else self.take_full_sockets)()

    def take_second_level(self) -> None:
        """Whole sockets when a NUMA node holds sockets, else whole NUMA nodes."""
        (self.take_full_sockets if self.topo.numa_first else self.take_full_numa_nodes)()

    def take_l3_caches(self) -> None:
        """Per L3 cache (in :meth:`sorted_l3_caches` order, listed once): take
        whole free caches while a cache's worth is needed, then try to fill the rest
        exactly from this cache's lowest-numbered cores."""
        per_l3 = self.topo.declared_cpus_per_l3()
        for l3 in self.sorted_l3_caches():
            if self.needs_at_least(per_l3):
                self._take_whole(self.free_l3_caches(), self.topo.l3_bits)
            if self.is_satisfied():
                return
            self.take_partial_l3(l3)
            if self.is_satisfied():
                return

    def take_partial_l3(self, l3: int) -> None:
        """Take exactly ``need`` CPUs from the lowest-numbered cores of L3 cache *l3*, or nothing.

        ``ceil(need / cpus_per_core)`` cores are tried; on SMT machines an odd ``need``
        drops the highest candidate thread so a single half-core is used.
        """
        topo, free = self.topo, self._free
        per_core = max(topo.declared_cpus_per_core(), 1)
        cores = _children_with(topo.l3_core_bits, l3, free)[: -(-self.need // per_core)]
        candidates = 0
        for core in cores:
            candidates |= topo.core_bits[core] & free
        if self.need % 2 == 1 and per_core > 1 and candidates.bit_count() > self.need:
            candidates &= ~(1 << (candidates.bit_length() - 1))
        if candidates.bit_count() == self.need:
            self._take(candidates)

    def take_remaining_cpus(self) -> None:
        """Single CPUs in :meth:`sorted_cpus` order until satisfied."""
        for cpu in self._iter_cpus(self._free):
            self._take(1 << cpu)
            if self.is_satisfied():
                return


def _start(
    topo: CPUTopology, available: CPUSet, n: int, strategy: Strategy
) -> tuple[CPUAccumulator, CPUSet | None]:
    """A new accumulator, and the answer already when there is nothing to search."""
    if n < 0:
        raise ValueError(f"number of CPUs requested must be >= 0, got {n}")
    acc = CPUAccumulator(topo, available, n, strategy)
    if acc.is_satisfied():
        return acc, CPUSet()
    if acc.is_failed():
        raise InsufficientCPUsError(n, available)
    return acc, None


def take_by_topology(
    topo: CPUTopology,
    available: CPUSet,
    n: int,
    *,
    strategy: Strategy = "packed",
    align_by_l3: bool = False,
) -> CPUSet:
    """Pick *n* CPUs of *available*, packed by topology (kubelet's NUMA-packed taker).

    1. Take whole units of the first level: NUMA nodes if a NUMA node holds one or more
       sockets, otherwise sockets.
    2. Take whole units of the second level (the other of the two).
    3. With *align_by_l3* (kubelet's ``prefer-align-cpus-by-uncorecache``), take whole
       L3 caches, then an exact partial fit.
    4. With the ``packed`` strategy, take whole cores.
    5. Take single CPUs in strategy order.

    Each step returns as soon as the request is met. Raises
    :class:`InsufficientCPUsError` when fewer than *n* CPUs are available.
    """
    acc, done = _start(topo, available, n, strategy)
    if done is not None:
        return done
    steps: list[Callable[[], None]] = [acc.take_first_level, acc.take_second_level]
    if align_by_l3:
        steps.append(acc.take_l3_caches)
    if strategy == "packed":
        steps.append(acc.take_full_cores)
    steps.append(acc.take_remaining_cpus)
    for step in steps:
        step()
        if acc.is_satisfied():
            return acc.result
    raise AllocationError("failed to allocate cpus", f'{n} CPUs requested from "{available}"')
