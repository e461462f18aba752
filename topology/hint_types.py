"""The values the topology manager speaks in: :class:`TopologyHint`, the shape of a
provider's answer (:data:`ProviderHints`), and :class:`NUMAInfo` (the machine's NUMA
node ids and distances).

Pure values, no I/O: the node agent builds them from discovery, the scheduler from a
NodeResourceTopology object, and both feed the same merge (:mod:`topology.hints`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Protocol, TypeAlias

from topology import numa_bitmask as nb
from topology.hint_errors import HintError, NUMAMaskError
from topology.model import Topology

__all__ = ["NUMAInfo", "Policy", "ProviderHints", "TopologyHint"]


@dataclass(frozen=True, slots=True)
class TopologyHint:
    """A NUMA affinity and whether it is preferred.

    ``numa_affinity`` None means "no preference / any node" (kubelet's nil bitmask); an
    empty frozenset is an affinity that no node satisfies.

    >>> TopologyHint.on([1, 0], preferred=True)
    TopologyHint(numa_affinity=frozenset({0, 1}), preferred=True)
    """

    numa_affinity: frozenset[int] | None
    preferred: bool

    def __post_init__(self) -> None:
        if self.numa_affinity is not None:
            nb.mask_of(self.numa_affinity)  # validates the ids

    @classmethod
    def on(cls, nodes: Iterable[int] | None, *, preferred: bool) -> TopologyHint:
        """A hint for these NUMA nodes (None: no preference)."""
        return cls(None if nodes is None else frozenset(nodes), preferred)

    @property
    def mask(self) -> int | None:
        """The affinity as a bitmask (None stays None)."""
        return None if self.numa_affinity is None else nb.mask_of(self.numa_affinity)

    def __str__(self) -> str:
        nodes = "nil" if self.numa_affinity is None else ",".join(map(str, sorted(self.numa_affinity)))
        return f"{{{nodes}}}:{'T' if self.preferred else 'F'}"


#: One provider's answer: resource name → hints. A None or empty mapping means "no
#: preference for any resource"; a None list means "no preference for that resource";
#: an empty list means "this resource cannot be satisfied".
ProviderHints: TypeAlias = Mapping[str, Sequence[TopologyHint] | None] | None


class Policy(Protocol):
    """A topology manager policy: merges the providers' hints and decides admission
    (implementations and their registry live in :mod:`topology.hints`)."""

    @property
    def name(self) -> str: ...

    def merge(self, providers_hints: Sequence[ProviderHints]) -> tuple[TopologyHint, bool]: ...


@dataclass(frozen=True, slots=True)
class NUMAInfo:
    """The NUMA nodes the topology manager may choose from, and their distances.

    ``nodes`` is sorted; ``distances[a][b]`` is the SLIT distance from node *a* to node
    *b* (keyed by id; it may be empty when only the narrowest comparison is used).

    >>> info = NUMAInfo.from_distance_rows([0, 8], {0: [10, 21], 8: [21, 10]})
    >>> sorted(info.default_affinity), info.distance(0, 8)
    ([0, 8], 21)
    """

    nodes: tuple[int, ...]
    distances: Mapping[int, Mapping[int, int]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.nodes:
            raise NUMAMaskError("NUMAInfo needs at least one NUMA node")
        if len(set(self.nodes)) != len(self.nodes):
            raise NUMAMaskError(f"NUMA node ids must be unique, got {list(self.nodes)}")
        nb.mask_of(self.nodes)
        object.__setattr__(self, "nodes", tuple(sorted(self.nodes)))
        frozen = {a: MappingProxyType(dict(row)) for a, row in self.distances.items()}
        object.__setattr__(self, "distances", MappingProxyType(frozen))

    @classmethod
    def from_topology(cls, topo: Topology) -> NUMAInfo:
        """Every NUMA node of *topo* (memory-only nodes included) with its distances."""
        nodes = topo.numa_node_ids()
        return cls(tuple(nodes), {n: dict(topo.numa_nodes[n].distances) for n in nodes})

    @classmethod
    def from_distance_rows(cls, nodes: Iterable[int], rows: Mapping[int, Sequence[int]]) -> NUMAInfo:
        """Build from per-node distance rows as sysfs ``nodeN/distance`` lists them: the
        k-th entry of a row is the distance to the k-th node in ascending id order."""
        ordered = sorted(nodes)
        table: dict[int, dict[int, int]] = {}
        for node, row in rows.items():
            if len(row) != len(ordered):
                raise NUMAMaskError(
                    f"distance row of NUMA node {node} has {len(row)} entries, "
                    f"expected one per node ({len(ordered)}: {ordered})"
                )
            table[node] = dict(zip(ordered, row, strict=True))
        return cls(tuple(ordered), table)

    @property
    def default_mask(self) -> int:
        """The mask of all nodes (kubelet's default affinity)."""
        return nb.mask_of(self.nodes)

    @property
    def default_affinity(self) -> frozenset[int]:
        return frozenset(self.nodes)

    def has_distances(self) -> bool:
        """True when a distance is known for every ordered pair of nodes."""
        return all(b in self.distances.get(a, {}) for a in self.nodes for b in self.nodes)

    def distance(self, a: int, b: int) -> int:
        try:
            return self.distances[a][b]
        except KeyError:
            raise HintError(f"no NUMA distance known from node {a} to node {b}") from None

    def average_distance(self, mask: int) -> Fraction:
        """Mean distance over all ordered pairs (i, j) of the mask's nodes, i == j
        included (kubelet's ``CalculateAverageFor``); 0 for the empty mask."""
        ids = sorted(nb.ids_of(mask))
        if not ids:
            return Fraction(0)
        total = sum(self.distance(a, b) for a in ids for b in ids)
        return Fraction(total, len(ids) * len(ids))

    def closest(self, m1: int, m2: int) -> int:
        """The closer of two masks: fewer nodes; then the lower average distance; then
        the smaller integer value (kubelet's ``NUMAInfo.Closest``)."""
        if m1.bit_count() != m2.bit_count():
            return nb.narrowest(m1, m2)
        d1, d2 = self.average_distance(m1), self.average_distance(m2)
        if d1 == d2:
            return m1 if m1 < m2 else m2
        return m1 if d1 < d2 else m2
