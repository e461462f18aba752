"""Topology-aware CPU allocation: the pure core of the static policy (no I/O).

:func:`take_by_topology` picks *n* CPUs out of an available set the way kubelet's static
CPU manager does: whole NUMA nodes and sockets first, then (optionally) whole uncore
caches, then whole cores, then single threads, always preferring the units that are
already partly used so that free units stay free. :func:`take_by_topology_numa_distributed`
(in :mod:`cpumanager.distributed`) spreads a large request evenly over NUMA nodes instead.

Both work over a :class:`CPUAccumulator`: the CPUs still free, the number still needed and
the result so far. Its ``free_*``/``sorted_*`` candidate generators document their sort
keys; each step computes its candidate list once and walks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import AllocationError, InsufficientCPUsError
from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = [
    "CPUAccumulator",
    "Strategy",
    "as_cpu_topology",
    "take_by_topology",
]

#: ``packed`` fills cores before moving on; ``spread`` prefers one thread per core
#: (kubelet's ``distribute-cpus-across-cores``).
Strategy = Literal["packed", "spread"]
STRATEGIES: tuple[Strategy, ...] = ("packed", "spread")


def as_cpu_topology(topo: Topology | CPUTopology) -> CPUTopology:
    """The allocation view of *topo* (itself when it already is one)."""
    return topo if isinstance(topo, CPUTopology) else CPUTopology.from_topology(topo)


class CPUAccumulator:
    """The state of one allocation: free CPUs (``details``), ``need`` and ``result``.

    Ordering rule shared by every candidate generator: units are sorted by the number of
    their CPUs that are still free (ascending, so partly used units come first and whole
    free units are kept for larger requests), then by id (ascending). Hierarchical lists
    sort children within each parent, parents in their own order.
    """

    __slots__ = ("details", "need", "result", "strategy", "topo")

    def __init__(self, topo: CPUTopology, available: CPUSet, n: int, strategy: Strategy = "packed") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.topo = topo
        self.details = available & topo.cpus
        self.need = n
        self.result = CPUSet()
        self.strategy: Strategy = strategy

    # ---------------------------------------------------------- primitives
    def take(self, cpus: CPUSet) -> None:
        """Add *cpus* to the result and drop them from the free CPUs."""
        self.result |= cpus
        self.details -= cpus
        self.need -= len(cpus)

    def needs_at_least(self, n: int) -> bool:
        return self.need >= n

    def is_satisfied(self) -> bool:
        return self.need < 1

    def is_failed(self) -> bool:
        return self.need > len(self.details)

    def _sort(self, ids: list[int], cpus_of: Mapping[int, CPUSet]) -> list[int]:
        details = self.details
        return sorted(ids, key=lambda i: (len(details & cpus_of[i]), i))

    # --------------------------------------------------- ordered candidates
    def sorted_numa_nodes(self) -> list[int]:
        """NUMA nodes with free CPUs. NUMA-first: (free CPUs, id). Sockets-first: by
        socket in :meth:`sorted_sockets` order, then (free CPUs, id) within a socket."""
        topo, free = self.topo, self.details
        if topo.numa_first:
            return self._sort(topo.numa_nodes_with(free), topo.numa_cpus)
        return [
            n
            for s in self.sorted_sockets()
            for n in self._sort(topo.numa_nodes_in_socket_with(s, free), topo.numa_cpus)
        ]

    def sorted_sockets(self) -> list[int]:
        """Sockets with free CPUs. Sockets-first: (free CPUs, id). NUMA-first: by NUMA
        node in :meth:`sorted_numa_nodes` order, then (free CPUs, id) within a node."""
        topo, free = self.topo, self.details
        if not topo.numa_first:
            return self._sort(topo.sockets_with(free), topo.socket_cpus)
        return [
            s
            for n in self.sorted_numa_nodes()
            for s in self._sort(topo.sockets_in_numa_with(n, free), topo.socket_cpus)
        ]

    def sorted_cores(self) -> list[int]:
        """Cores with free CPUs: by the lower level of NUMA/socket (sockets when
        NUMA-first, NUMA nodes when sockets-first) in its order, then (free CPUs, id)."""
        topo, free = self.topo, self.details
        if topo.numa_first:
            groups = [topo.cores_in_socket_with(s, free) for s in self.sorted_sockets()]
        else:
            groups = [topo.cores_in_numa_with(n, free) for n in self.sorted_numa_nodes()]
        return [c for g in groups for c in self._sort(g, topo.core_cpus)]

    def sorted_uncore_caches(self) -> list[int]:
        """Uncore caches with free CPUs: by NUMA node in :meth:`sorted_numa_nodes`
        order, then (free CPUs, id) within a node."""
        topo, free = self.topo, self.details
        return [
            u
            for n in self.sorted_numa_nodes()
            for u in self._sort(topo.uncore_caches_in_numa_with(n, free), topo.uncore_cpus)
        ]

    def sorted_cpus(self) -> list[int]:
        """Free CPUs. Packed: by core in :meth:`sorted_cores` order, a core's CPUs by id.
        Spread: by socket in :meth:`sorted_sockets` order, a socket's CPUs by id (sibling
        threads have distant ids, so this visits one thread per core first)."""
        topo, free = self.topo, self.details
        if self.strategy == "spread":
            units, cpus_of = self.sorted_sockets(), topo.socket_cpus
        else:
            units, cpus_of = self.sorted_cores(), topo.core_cpus
        return [cpu for u in units for cpu in free & cpus_of[u]]

    # ------------------------------------------------------- free units
    def free_numa_nodes(self) -> list[int]:
        """NUMA nodes all of whose CPUs are free, in :meth:`sorted_numa_nodes` order."""
        numa = self.topo.numa_cpus
        return [n for n in self.sorted_numa_nodes() if len(self.details & numa[n]) == len(numa[n])]

    def free_sockets(self) -> list[int]:
        """Sockets with the declared CPUs-per-socket free, in :meth:`sorted_sockets` order."""
        size, sockets = self.topo.cpus_per_socket(), self.topo.socket_cpus
        return [s for s in self.sorted_sockets() if len(self.details & sockets[s]) == size]

    def free_cores(self) -> list[int]:
        """Cores with the declared CPUs-per-core free, in :meth:`sorted_cores` order."""
        size, cores = self.topo.cpus_per_core(), self.topo.core_cpus
        return [c for c in self.sorted_cores() if len(self.details & cores[c]) == size]

    def free_uncore_caches(self) -> list[int]:
        """Uncore caches all of whose CPUs are free, in :meth:`sorted_uncore_caches` order."""
        unc = self.topo.uncore_cpus
        return [u for u in self.sorted_uncore_caches() if len(self.details & unc[u]) == len(unc[u])]

    def free_cpus(self) -> list[int]:
        """Free CPUs in packed order (see :meth:`sorted_cpus`)."""
        return CPUAccumulator(self.topo, self.details, self.need, "packed").sorted_cpus()

    # ------------------------------------------------------------- steps
    def _take_whole(self, units: list[int], cpus_of: Mapping[int, CPUSet]) -> None:
        """Take each listed unit's free CPUs while at least that many are needed."""
        for unit in units:
            cpus = cpus_of[unit] & self.details
            if cpus and self.needs_at_least(len(cpus)):
                self.take(cpus)

    def take_full_numa_nodes(self) -> None:
        self._take_whole(self.free_numa_nodes(), self.topo.numa_cpus)

    def take_full_sockets(self) -> None:
        self._take_whole(self.free_sockets(), self.topo.socket_cpus)

    def take_full_cores(self) -> None:
        self._take_whole(self.free_cores(), self.topo.core_cpus)

    def take_first_level(self) -> None:
        """Whole NUMA nodes when a NUMA node holds sockets, else whole sockets."""
        (self.take_full_numa_nodes if self.topo.numa_first else self.take_full_sockets)()

    def take_second_level(self) -> None:
        """Whole sockets when a NUMA node holds sockets, else whole NUMA nodes."""
        (self.take_full_sockets if self.topo.numa_first else self.take_full_numa_nodes)()

    def take_uncore_caches(self) -> None:
        """Per uncore cache (in :meth:`sorted_uncore_caches` order, listed once): take
        whole free caches while a cache's worth is needed, then try to fill the rest
        exactly from this cache's lowest-numbered cores."""
        per_uncore = self.topo.cpus_per_uncore()
        for uncore in self.sorted_uncore_caches():
            if self.needs_at_least(per_uncore):
                self._take_whole(self.free_uncore_caches(), self.topo.uncore_cpus)
            if self.is_satisfied():
                return
            self.take_partial_uncore(uncore)
            if self.is_satisfied():
                return

    def take_partial_uncore(self, uncore: int) -> None:
        """Take exactly ``need`` CPUs from the lowest-numbered cores of *uncore*, or nothing.

        ``ceil(need / cpus_per_core)`` cores are tried; on SMT machines an odd ``need``
        drops the highest candidate thread so a single half-core is used.
        """
        per_core = max(self.topo.cpus_per_core(), 1)
        cores = self.topo.cores_in_uncore_with(uncore, self.details)[: -(-self.need // per_core)]
        candidates = self.topo.cpus_in_cores(*cores) & self.details
        if self.need % 2 == 1 and per_core > 1 and len(candidates) > self.need:
            candidates -= CPUSet.of(max(candidates))
        if len(candidates) == self.need:
            self.take(candidates)

    def take_remaining_cpus(self) -> None:
        """Single CPUs in :meth:`sorted_cpus` order until satisfied."""
        for cpu in self.sorted_cpus():
            self.take(CPUSet.of(cpu))
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
    topo: Topology | CPUTopology,
    available: CPUSet,
    n: int,
    *,
    strategy: Strategy = "packed",
    align_by_uncore_cache: bool = False,
) -> CPUSet:
    """Pick *n* CPUs of *available*, packed by topology (kubelet's NUMA-packed taker).

    1. Take whole units of the first level: NUMA nodes if a NUMA node holds one or more
       sockets, otherwise sockets.
    2. Take whole units of the second level (the other of the two).
    3. With *align_by_uncore_cache*, take whole uncore caches, then an exact partial fit.
    4. With the ``packed`` strategy, take whole cores.
    5. Take single CPUs in strategy order.

    Each step returns as soon as the request is met. Raises
    :class:`InsufficientCPUsError` when fewer than *n* CPUs are available.
    """
    acc, done = _start(as_cpu_topology(topo), available, n, strategy)
    if done is not None:
        return done
    steps: list[Callable[[], None]] = [acc.take_first_level, acc.take_second_level]
    if align_by_uncore_cache:
        steps.append(acc.take_uncore_caches)
    if strategy == "packed":
        steps.append(acc.take_full_cores)
    steps.append(acc.take_remaining_cpus)
    for step in steps:
        step()
        if acc.is_satisfied():
            return acc.result
    raise AllocationError("failed to allocate cpus", f'{n} CPUs requested from "{available}"')
