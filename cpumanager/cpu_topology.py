"""CPUTopology: the CPU manager's indexed view of a machine (pure, no I/O).

The allocator asks the same few questions thousands of times per request: "which CPUs
of socket S / NUMA node N / core C / uncore cache U are still free?". This view answers
them with precomputed :class:`CPUSet` bitmasks, so each answer is one AND and a popcount.

It mirrors kubelet's ``CPUTopology``: per-CPU ``(numa, socket, core, uncore)`` ids plus
*declared* counts (``num_cpus``, ``num_cores``, ...). The per-unit sizes the allocator
compares against (:meth:`cpus_per_core`, :meth:`cpus_per_socket`, :meth:`cpus_per_uncore`)
are integer divisions of those declared counts, exactly as kubelet computes them. On a
discovered machine the declared counts equal the real ones; they can be overridden to
replay kubelet's hand-written fixtures, some of which declare counts that differ from
their CPU lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = ["CPUTopology"]

_Nested = Mapping[int, Mapping[int, CPUSet]]
#: Parent id → ((child id, bitmask of the CPUs in both), ...) in ascending child id.
_Children = Mapping[int, tuple[tuple[int, int], ...]]


def _group(cpu_ids: Mapping[int, int]) -> Mapping[int, CPUSet]:
    """Unit id → the CPUs whose id for that unit it is."""
    members: dict[int, list[int]] = {}
    for cpu, unit in cpu_ids.items():
        members.setdefault(unit, []).append(cpu)
    return MappingProxyType({unit: CPUSet(cpus) for unit, cpus in sorted(members.items())})


def _pairs(parent: Mapping[int, int], child: Mapping[int, int]) -> _Nested:
    """Parent id → child id → the CPUs that lie in both (children in ascending id)."""
    members: dict[int, dict[int, list[int]]] = {}
    for cpu in sorted(parent):
        members.setdefault(parent[cpu], {}).setdefault(child[cpu], []).append(cpu)
    return MappingProxyType(
        {
            p: MappingProxyType({c: CPUSet(cs) for c, cs in sorted(kids.items())})
            for p, kids in sorted(members.items())
        }
    )


def _children(pairs: _Nested) -> _Children:
    return MappingProxyType({p: tuple((c, cs.bits) for c, cs in kids.items()) for p, kids in pairs.items()})


def _bits(units: Mapping[int, CPUSet]) -> Mapping[int, int]:
    return MappingProxyType({u: cs.bits for u, cs in units.items()})


@dataclass(frozen=True, slots=True, eq=False)
class CPUTopology:
    """Per-CPU unit ids of a machine plus its declared counts, indexed for allocation.

    Build it with :meth:`from_topology` (or :meth:`build` from raw per-CPU ids)::

        view = CPUTopology.from_topology(topo)
        view.cpus_in_numa_nodes(0) & available
    """

    cpus: CPUSet
    cpu_numa: Mapping[int, int]
    cpu_socket: Mapping[int, int]
    cpu_core: Mapping[int, int]
    cpu_uncore: Mapping[int, int]
    num_cpus: int
    num_cores: int
    num_sockets: int
    num_numa_nodes: int
    num_uncore_caches: int
    numa_cpus: Mapping[int, CPUSet]
    socket_cpus: Mapping[int, CPUSet]
    core_cpus: Mapping[int, CPUSet]
    uncore_cpus: Mapping[int, CPUSet]
    numa_sockets: _Nested
    socket_numas: _Nested
    socket_cores: _Nested
    numa_cores: _Nested
    numa_uncores: _Nested
    uncore_cores: _Nested
    # The same relations as int bitmasks, for the allocator's inner loops.
    numa_bits: Mapping[int, int]
    socket_bits: Mapping[int, int]
    core_bits: Mapping[int, int]
    uncore_bits: Mapping[int, int]
    numa_socket_bits: _Children
    socket_numa_bits: _Children
    socket_core_bits: _Children
    numa_core_bits: _Children
    numa_uncore_bits: _Children
    uncore_core_bits: _Children

    # ------------------------------------------------------------- building
    @staticmethod
    def build(
        *,
        numa: Mapping[int, int],
        socket: Mapping[int, int],
        core: Mapping[int, int],
        uncore: Mapping[int, int],
        num_cpus: int | None = None,
        num_cores: int | None = None,
        num_sockets: int | None = None,
        num_numa_nodes: int | None = None,
        num_uncore_caches: int | None = None,
    ) -> CPUTopology:
        """Index per-CPU ids (each mapping is CPU id → unit id, all with the same keys).

        A declared count left as None is the number of distinct ids in the CPU map.
        """
        keys = set(numa)
        if not (keys == set(socket) == set(core) == set(uncore)):
            raise ValueError("numa, socket, core and uncore maps must cover the same CPUs")

        def count(declared: int | None, ids: Mapping[int, int]) -> int:
            return len(set(ids.values())) if declared is None else declared

        numa_cpus, socket_cpus = _group(numa), _group(socket)
        core_cpus, uncore_cpus = _group(core), _group(uncore)
        pairs = {
            "numa_sockets": _pairs(numa, socket),
            "socket_numas": _pairs(socket, numa),
            "socket_cores": _pairs(socket, core),
            "numa_cores": _pairs(numa, core),
            "numa_uncores": _pairs(numa, uncore),
            "uncore_cores": _pairs(uncore, core),
        }
        return CPUTopology(
            cpus=CPUSet(keys),
            cpu_numa=MappingProxyType(dict(numa)),
            cpu_socket=MappingProxyType(dict(socket)),
            cpu_core=MappingProxyType(dict(core)),
            cpu_uncore=MappingProxyType(dict(uncore)),
            num_cpus=len(keys) if num_cpus is None else num_cpus,
            num_cores=count(num_cores, core),
            num_sockets=count(num_sockets, socket),
            num_numa_nodes=count(num_numa_nodes, numa),
            num_uncore_caches=count(num_uncore_caches, uncore),
            numa_cpus=numa_cpus,
            socket_cpus=socket_cpus,
            core_cpus=core_cpus,
            uncore_cpus=uncore_cpus,
            **pairs,
            numa_bits=_bits(numa_cpus),
            socket_bits=_bits(socket_cpus),
            core_bits=_bits(core_cpus),
            uncore_bits=_bits(uncore_cpus),
            numa_socket_bits=_children(pairs["numa_sockets"]),
            socket_numa_bits=_children(pairs["socket_numas"]),
            socket_core_bits=_children(pairs["socket_cores"]),
            numa_core_bits=_children(pairs["numa_cores"]),
            numa_uncore_bits=_children(pairs["numa_uncores"]),
            uncore_core_bits=_children(pairs["uncore_cores"]),
        )

    @staticmethod
    def from_topology(
        topo: Topology,
        *,
        default_uncore: int | None = None,
        num_cpus: int | None = None,
        num_cores: int | None = None,
        num_sockets: int | None = None,
        num_numa_nodes: int | None = None,
        num_uncore_caches: int | None = None,
    ) -> CPUTopology:
        """The view of a :class:`Topology`.

        A CPU without a socket is put in socket 0. A CPU outside every L3 group gets
        *default_uncore*, or its socket id when that is None (kubelet discovery's rule:
        no reported uncore cache means one per socket).
        """
        infos = topo.cpus.values()
        socket = {i.cpu: (i.socket if i.socket is not None else 0) for i in infos}
        uncore = {
            i.cpu: i.l3 if i.l3 is not None else (socket[i.cpu] if default_uncore is None else default_uncore)
            for i in infos
        }
        return CPUTopology.build(
            numa={i.cpu: i.numa for i in infos},
            socket=socket,
            core={i.cpu: i.core for i in infos},
            uncore=uncore,
            num_cpus=num_cpus,
            num_cores=num_cores,
            num_sockets=num_sockets,
            num_numa_nodes=num_numa_nodes,
            num_uncore_caches=num_uncore_caches,
        )

    # ------------------------------------------------------- declared sizes
    @property
    def numa_first(self) -> bool:
        """True when a NUMA node holds one or more sockets (declared counts)."""
        return self.num_sockets >= self.num_numa_nodes

    def cpus_per_core(self) -> int:
        """Declared CPUs per core (integer division; 0 without cores)."""
        return self.num_cpus // self.num_cores if self.num_cores else 0

    def cpus_per_socket(self) -> int:
        """Declared CPUs per socket (integer division; 0 without sockets)."""
        return self.num_cpus // self.num_sockets if self.num_sockets else 0

    def cpus_per_uncore(self) -> int:
        """Declared CPUs per uncore cache (integer division; 0 without uncore caches)."""
        return self.num_cpus // self.num_uncore_caches if self.num_uncore_caches else 0

    # --------------------------------------------------------------- queries
    def cpus_in_numa_nodes(self, *ids: int) -> CPUSet:
        return CPUSet().union(*(self.numa_cpus[i] for i in ids if i in self.numa_cpus))

    def cpus_in_sockets(self, *ids: int) -> CPUSet:
        return CPUSet().union(*(self.socket_cpus[i] for i in ids if i in self.socket_cpus))

    def cpus_in_cores(self, *ids: int) -> CPUSet:
        return CPUSet().union(*(self.core_cpus[i] for i in ids if i in self.core_cpus))

    def cpus_in_uncore_caches(self, *ids: int) -> CPUSet:
        return CPUSet().union(*(self.uncore_cpus[i] for i in ids if i in self.uncore_cpus))

    def sockets_in_numa_nodes(self, ids: Iterable[int]) -> list[int]:
        """Sockets with CPUs on any of these NUMA nodes (ascending)."""
        return sorted({s for n in ids for s in self.numa_sockets.get(n, {})})

    def numa_nodes_of(self, cpus: CPUSet) -> list[int]:
        """NUMA nodes holding any of *cpus* (ascending)."""
        return [n for n, cs in self.numa_cpus.items() if not cs.isdisjoint(cpus)]

    def uncore_caches_of(self, cpus: CPUSet) -> list[int]:
        """Uncore caches holding any of *cpus* (ascending)."""
        return [u for u, cs in self.uncore_cpus.items() if not cs.isdisjoint(cpus)]
