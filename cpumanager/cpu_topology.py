"""CPUTopology: the CPU manager's indexed view of a :class:`~topology.model.Topology` (pure).

The allocator asks the same few questions thousands of times per request: "which CPUs
of socket S / NUMA node N / core C / L3 cache U are still free?". This view answers
them with precomputed :class:`CPUSet` bitmasks, so each answer is one AND and a popcount.

It is the *only* topology the allocator (:mod:`cpumanager.allocation`,
:mod:`cpumanager.distributed`, :mod:`cpumanager.fragmentation`,
:class:`~cpumanager.policy_static.StaticPolicy`) works on. Everything else in topolet asks
the model (:class:`~topology.model.Topology`). So that the two never answer the same
question differently, no name here is also a name on the model: the view speaks in
mappings (``numa_cpus[n]``, ``socket_bits[s]``, ...), per-CPU unit ids (``cpu_core[c]``),
and two level-generic helpers (:func:`cpus_of_units`, :func:`units_holding`).

It mirrors kubelet's ``CPUTopology``: per-CPU ``(numa, socket, core, l3)`` ids plus
*declared* counts (``declared_cpus``, ``declared_cores``, ...). The per-unit sizes the
allocator compares against (:meth:`CPUTopology.declared_cpus_per_core` and friends) are
integer divisions of those declared counts, exactly as kubelet computes them. On a
discovered machine the declared counts equal the real ones; they can be overridden to
replay kubelet's hand-written fixtures, some of which declare counts that differ from
their CPU lists.

The shared last-level cache is called *L3* here as in the model (kubelet calls it the
"uncore cache"; see ``docs/glossary.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = ["CPUTopology", "cpus_of_units", "units_holding"]

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


def cpus_of_units(units: Mapping[int, CPUSet], ids: Iterable[int]) -> CPUSet:
    """The CPUs of the listed units of one level (ids absent from *units* add nothing).

    ``cpus_of_units(view.numa_cpus, [0, 1])`` is the CPUs of NUMA nodes 0 and 1.
    """
    return CPUSet().union(*(units[i] for i in ids if i in units))


def units_holding(units: Mapping[int, CPUSet], cpus: CPUSet) -> list[int]:
    """Ids of the units of one level that hold any of *cpus* (ascending).

    ``units_holding(view.l3_cpus, cpus)`` is the L3 caches *cpus* touch.
    """
    return [u for u, cs in units.items() if not cs.isdisjoint(cpus)]


@dataclass(frozen=True, slots=True, eq=False)
class CPUTopology:
    """Per-CPU unit ids of a machine plus its declared counts, indexed for allocation.

    Build it with :meth:`from_topology` (or :meth:`from_ids` from raw per-CPU ids)::

        view = CPUTopology.from_topology(topo)
        view.numa_cpus[0] & available
    """

    cpuset: CPUSet
    """Every CPU of the view."""
    cpu_numa: Mapping[int, int]
    cpu_socket: Mapping[int, int]
    cpu_core: Mapping[int, int]
    cpu_l3: Mapping[int, int]
    declared_cpus: int
    declared_cores: int
    declared_sockets: int
    declared_numa_nodes: int
    declared_l3_caches: int
    numa_cpus: Mapping[int, CPUSet]
    socket_cpus: Mapping[int, CPUSet]
    core_cpus: Mapping[int, CPUSet]
    l3_cpus: Mapping[int, CPUSet]
    numa_sockets: _Nested
    socket_numas: _Nested
    socket_cores: _Nested
    numa_cores: _Nested
    numa_l3_caches: _Nested
    l3_cores: _Nested
    # The same relations as int bitmasks, for the allocator's inner loops.
    numa_bits: Mapping[int, int]
    socket_bits: Mapping[int, int]
    core_bits: Mapping[int, int]
    l3_bits: Mapping[int, int]
    numa_socket_bits: _Children
    socket_numa_bits: _Children
    socket_core_bits: _Children
    numa_core_bits: _Children
    numa_l3_bits: _Children
    l3_core_bits: _Children

    # ------------------------------------------------------------- building
    @staticmethod
    def from_ids(
        *,
        numa: Mapping[int, int],
        socket: Mapping[int, int],
        core: Mapping[int, int],
        l3: Mapping[int, int],
        declared_cpus: int | None = None,
        declared_cores: int | None = None,
        declared_sockets: int | None = None,
        declared_numa_nodes: int | None = None,
        declared_l3_caches: int | None = None,
    ) -> CPUTopology:
        """Index per-CPU ids (each mapping is CPU id → unit id, all with the same keys).

        A declared count left as None is the number of distinct ids in the CPU map.
        """
        keys = set(numa)
        if not (keys == set(socket) == set(core) == set(l3)):
            raise ValueError("numa, socket, core and l3 maps must cover the same CPUs")

        def count(declared: int | None, ids: Mapping[int, int]) -> int:
            return len(set(ids.values())) if declared is None else declared

        numa_cpus, socket_cpus = _group(numa), _group(socket)
        core_cpus, l3_cpus = _group(core), _group(l3)
        pairs = {
            "numa_sockets": _pairs(numa, socket),
            "socket_numas": _pairs(socket, numa),
            "socket_cores": _pairs(socket, core),
            "numa_cores": _pairs(numa, core),
            "numa_l3_caches": _pairs(numa, l3),
            "l3_cores": _pairs(l3, core),
        }
        return CPUTopology(
            cpuset=CPUSet(keys),
            cpu_numa=MappingProxyType(dict(numa)),
            cpu_socket=MappingProxyType(dict(socket)),
            cpu_core=MappingProxyType(dict(core)),
            cpu_l3=MappingProxyType(dict(l3)),
            declared_cpus=len(keys) if declared_cpus is None else declared_cpus,
            declared_cores=count(declared_cores, core),
            declared_sockets=count(declared_sockets, socket),
            declared_numa_nodes=count(declared_numa_nodes, numa),
            declared_l3_caches=count(declared_l3_caches, l3),
            numa_cpus=numa_cpus,
            socket_cpus=socket_cpus,
            core_cpus=core_cpus,
            l3_cpus=l3_cpus,
            **pairs,
            numa_bits=_bits(numa_cpus),
            socket_bits=_bits(socket_cpus),
            core_bits=_bits(core_cpus),
            l3_bits=_bits(l3_cpus),
            numa_socket_bits=_children(pairs["numa_sockets"]),
            socket_numa_bits=_children(pairs["socket_numas"]),
            socket_core_bits=_children(pairs["socket_cores"]),
            numa_core_bits=_children(pairs["numa_cores"]),
            numa_l3_bits=_children(pairs["numa_l3_caches"]),
            l3_core_bits=_children(pairs["l3_cores"]),
        )

    @staticmethod
    def from_topology(
        topo: Topology,
        *,
        default_l3: int | None = None,
        declared_cpus: int | None = None,
        declared_cores: int | None = None,
        declared_sockets: int | None = None,
        declared_numa_nodes: int | None = None,
        declared_l3_caches: int | None = None,
    ) -> CPUTopology:
        """The view of a :class:`Topology`.

        A CPU without a socket is put in socket 0. A CPU outside every L3 group gets
        *default_l3*, or its socket id when that is None (kubelet discovery's rule:
        no reported uncore cache means one per socket).
        """
        infos = topo.cpus.values()
        socket = {i.cpu: (i.socket if i.socket is not None else 0) for i in infos}
        l3 = {
            i.cpu: i.l3 if i.l3 is not None else (socket[i.cpu] if default_l3 is None else default_l3)
            for i in infos
        }
        return CPUTopology.from_ids(
            numa={i.cpu: i.numa for i in infos},
            socket=socket,
            core={i.cpu: i.core for i in infos},
            l3=l3,
            declared_cpus=declared_cpus,
            declared_cores=declared_cores,
            declared_sockets=declared_sockets,
            declared_numa_nodes=declared_numa_nodes,
            declared_l3_caches=declared_l3_caches,
        )

    # ------------------------------------------------------- declared sizes
    @property
    def numa_first(self) -> bool:
        """True when a NUMA node holds one or more sockets (declared counts)."""
        return self.declared_sockets >= self.declared_numa_nodes

    def declared_cpus_per_core(self) -> int:
        """Declared CPUs per core (integer division; 0 without cores)."""
        return self.declared_cpus // self.declared_cores if self.declared_cores else 0

    def declared_cpus_per_socket(self) -> int:
        """Declared CPUs per socket (integer division; 0 without sockets)."""
        return self.declared_cpus // self.declared_sockets if self.declared_sockets else 0

    def declared_cpus_per_l3(self) -> int:
        """Declared CPUs per L3 cache (integer division; 0 without L3 caches)."""
        return self.declared_cpus // self.declared_l3_caches if self.declared_l3_caches else 0
