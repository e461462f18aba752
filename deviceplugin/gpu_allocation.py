"""GPU preferred allocation: which GPUs to hand a container, chosen by topology.

Pure core of the GPU device plugin's ``GetPreferredAllocation`` (no I/O, no NVML):

* the model: :class:`GPU` (device id, NVML index, NUMA node), :class:`GPULink` (PCIe
  relationship plus NVLink count) and :class:`GPUTopology`, scored with NVIDIA's link table
  (:data:`PCIE_POINTS`, :data:`NVLINK_POINTS`): a pair scores the points of its PCIe
  relationship plus 100 per NVLink, a set the sum over its pairs;
* :func:`preferred_allocation`: every must-include GPU, on the fewest NUMA nodes, then the
  link score choice of NVIDIA go-gpuallocator's best-effort policy, tie breaking included;
* that allocator's topology-blind policies and the registry :data:`ALLOCATION_POLICIES`,
  from which the plugin picks one policy when it is built;
* :func:`gpu_sets` and :func:`gpu_partitions`, the enumerations that define the search order.

The best-effort policy is not greedy. It pads the available list with empty slots to a
multiple of ``size``, takes the highest-scoring partition of the whole list into groups of
``size`` (a group holds no padding or all of it) among those having an *eligible* group, and
returns that partition's best eligible group. A group is eligible when it has no padding,
holds every must-include GPU and spans the fewest NUMA nodes such a group can (GPUs with no
NUMA node count as one node of their own). Ties go to the partition visited first in
:func:`gpu_partitions` order, then to its first group. Rather than visit every partition
(2 million for 16 GPUs in pairs), :class:`_Search` computes the best value of every set of
still-ungrouped GPUs once, then rebuilds the first-visited optimum.
Reference: shared/reference/deviceplugin.md §2.6 (go-gpuallocator ``besteffort_policy.go``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from types import MappingProxyType
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from deviceplugin.errors import (
    DevicePluginConfigError,
    GPUModelError,
    InsufficientDevicesError,
    InvalidRequestError,
    UnknownDeviceError,
)

__all__ = [
    "ALLOCATION_POLICIES",
    "GPU",
    "MAX_NVLINKS",
    "MAX_SEARCH_GPUS",
    "NVLINK_POINTS",
    "NVML_TOPOLOGY_LEVELS",
    "PCIE_POINTS",
    "AllocationPolicy",
    "GPULink",
    "GPUTopology",
    "PCIeLink",
    "allocation_policy",
    "gpu_partitions",
    "gpu_sets",
    "preferred_allocation",
    "simple_allocation",
    "static_dgx1_pascal_allocation",
    "static_dgx1_volta_allocation",
]

T = TypeVar("T")
_Ints = NDArray[np.int64]

AVAILABLE, MUST_INCLUDE, SIZE = "available_deviceIDs", "must_include_deviceIDs", "allocation_size"


class PCIeLink(enum.Enum):
    """PCIe relationship of a GPU pair, named as ``nvidia-smi topo -m`` prints it."""

    SYS = "SYS"  # across the inter-socket link
    NODE = "NODE"  # host bridges of one NUMA node
    PHB = "PHB"  # one PCIe host bridge
    PXB = "PXB"  # several PCIe switches
    PIX = "PIX"  # one PCIe switch
    SINGLE_BOARD = "SINGLE_BOARD"  # one board


#: Points per PCIe relationship, go-gpuallocator's link table (reference/deviceplugin.md §2.6).
PCIE_POINTS: Mapping[PCIeLink, int] = MappingProxyType(
    {
        PCIeLink.SYS: 10,
        PCIeLink.NODE: 20,
        PCIeLink.PHB: 30,
        PCIeLink.PXB: 40,
        PCIeLink.PIX: 50,
        PCIeLink.SINGLE_BOARD: 60,
    }
)
#: Points per NVLink between a pair (same table), which scores up to MAX_NVLINKS links.
NVLINK_POINTS, MAX_NVLINKS = 100, 12
#: NVML ``nvmlGpuTopologyLevel_t`` (common ancestor of two GPUs) → PCIe relationship.
NVML_TOPOLOGY_LEVELS: Mapping[int, PCIeLink] = MappingProxyType(
    {
        0: PCIeLink.SINGLE_BOARD,
        10: PCIeLink.PIX,
        20: PCIeLink.PXB,
        30: PCIeLink.PHB,
        40: PCIeLink.NODE,
        50: PCIeLink.SYS,
    }
)
#: Most available GPUs the best-effort search takes: its tables hold an entry per subset of
#: them; 16 GPUs answer in well under 0.2 s, 20 would take seconds and over 1 GB.
MAX_SEARCH_GPUS = 16


@dataclass(frozen=True, slots=True)
class GPULink:
    """What joins two GPUs: a PCIe relationship (None when unknown) and NVLink lanes."""

    pcie: PCIeLink | None = None
    nvlinks: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.nvlinks <= MAX_NVLINKS:
            raise GPUModelError("link.nvlinks", f"got {self.nvlinks}, expected 0..{MAX_NVLINKS}")

    @property
    def score(self) -> int:
        """PCIe points plus :data:`NVLINK_POINTS` per NVLink."""
        return (PCIE_POINTS[self.pcie] if self.pcie else 0) + NVLINK_POINTS * self.nvlinks


@dataclass(frozen=True, slots=True)
class GPU:
    """One GPU: the device id advertised to kubelet, its NVML index, its NUMA node (None when
    the kernel reports none)."""

    id: str
    index: int
    numa_node: int | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise GPUModelError("gpu.id", "expected a non-empty device id")
        if self.index < 0:
            raise GPUModelError("gpu.index", f"GPU {self.id!r}: got {self.index}, expected >= 0")
        if self.numa_node is not None and self.numa_node < 0:
            raise GPUModelError("gpu.numa_node", f"GPU {self.id!r}: got {self.numa_node}, expected >= 0")


class GPUTopology:
    """The GPUs of one node and the links between them; immutable. Links are symmetric and
    a pair without a link scores 0.

    >>> topo = GPUTopology([GPU("GPU-a", 0), GPU("GPU-b", 1)],
    ...                    {("GPU-a", "GPU-b"): GPULink(PCIeLink.PIX, nvlinks=2)})
    >>> topo.pair_score("GPU-b", "GPU-a")
    250
    """

    __slots__ = ("_by_index", "_gpus", "_links")

    def __init__(self, gpus: Iterable[GPU], links: Mapping[tuple[str, str], GPULink]) -> None:
        self._gpus: dict[str, GPU] = {}
        self._by_index: dict[int, GPU] = {}
        for gpu in gpus:
            if gpu.id in self._gpus or gpu.index in self._by_index:
                raise GPUModelError("gpus", f"GPU {gpu.id!r} (index {gpu.index}) repeats an id or index")
            self._gpus[gpu.id] = self._by_index[gpu.index] = gpu
        self._links: dict[frozenset[str], GPULink] = {}
        for (a, b), link in links.items():
            if unknown := [end for end in (a, b) if end not in self._gpus]:
                raise GPUModelError("links", f"link {a!r}-{b!r} names unknown GPU {unknown[0]!r}")
            if a == b or frozenset((a, b)) in self._links:
                raise GPUModelError("links", f"link {a!r}-{b!r} joins a GPU to itself or is given twice")
            self._links[frozenset((a, b))] = link

    @property
    def gpus(self) -> Mapping[str, GPU]:
        """GPUs by device id, in the order given."""
        return MappingProxyType(self._gpus)

    def by_index(self, index: int) -> GPU | None:
        """The GPU with this NVML index, if any."""
        return self._by_index.get(index)

    def link(self, a: str, b: str) -> GPULink | None:
        """The link between two GPUs, None when they have none."""
        return self._links.get(frozenset((a, b))) if a != b else None

    def pair_score(self, a: str, b: str) -> int:
        """Score of a pair: its link's score; 0 without a link or for a GPU with itself."""
        link = self.link(a, b)
        return link.score if link else 0

    def set_score(self, ids: Iterable[str]) -> int:
        """Sum of the pair scores over all unordered pairs of ``ids``."""
        return sum(self.pair_score(a, b) for a, b in combinations(list(ids), 2))


# --------------------------------------------------------------------------- enumeration


def gpu_sets(items: Sequence[T], size: int) -> Iterator[tuple[T, ...]]:
    """All ``size``-subsets of ``items`` in lexicographic order of position; none when ``size``
    is outside 1..len(items)."""
    if 1 <= size <= len(items):
        yield from combinations(items, size)


def gpu_partitions(items: Sequence[T], size: int) -> Iterator[list[tuple[T | None, ...]]]:
    """Partitions of ``items`` into groups of ``size``, in best-effort visiting order.

    ``items`` is padded with None to a multiple of ``size``; a group holds no padding or all
    of it. Depth first: the first group is the first item plus each (size-1)-combination of
    the items after it, in lexicographic order of position; the rest is partitioned likewise.
    Size 1 yields each item as a partition of its own (the policy special-cases it); sizes
    outside 1..len(items) yield nothing.
    """
    if not 1 <= size <= len(items):
        return
    if size == 1:
        for item in items:
            yield [(item,)]
        return
    padded: list[T | None] = [*items, *([None] * (-len(items) % size))]
    yield from _partitions(tuple(range(len(padded))), size, frozenset(range(len(items), len(padded))), padded)


def _partitions(
    positions: tuple[int, ...], size: int, pads: frozenset[int], padded: Sequence[T | None]
) -> Iterator[list[tuple[T | None, ...]]]:
    if not positions:
        yield []
        return
    for combo in combinations(positions[1:], size - 1):
        if pads.intersection(combo) not in (frozenset(), pads):
            continue
        group = tuple(padded[p] for p in (positions[0], *combo))
        for tail in _partitions(tuple(p for p in positions[1:] if p not in combo), size, pads, padded):
            yield [group, *tail]


# --------------------------------------------------------------------------- validation


def _validate(gpus: GPUTopology, available: Sequence[str], must_include: Sequence[str], size: int) -> None:
    """Raise an :class:`~deviceplugin.errors.DeviceAllocationError` naming the field at fault."""
    if size < 1:
        raise InvalidRequestError(SIZE, f"got {size}, expected a positive number of devices")
    for field, ids in ((AVAILABLE, available), (MUST_INCLUDE, must_include)):
        if dup := sorted(i for i, n in Counter(ids).items() if n > 1):
            raise InvalidRequestError(field, f"device id(s) {dup} listed more than once")
        if unknown := [i for i in ids if i not in gpus.gpus]:
            raise UnknownDeviceError(field, unknown, gpus.gpus)
    if missing := sorted(set(must_include) - set(available)):
        raise InvalidRequestError(MUST_INCLUDE, f"device id(s) {missing} are not in {AVAILABLE}")
    if len(must_include) > size:
        raise InvalidRequestError(MUST_INCLUDE, f"{len(must_include)} devices exceed {SIZE} {size}")
    if size > len(available):
        raise InsufficientDevicesError(
            SIZE,
            f"{size} devices requested, only {len(available)} available",
            requested=size,
            available=len(available),
        )


# --------------------------------------------------------------------------- best effort

#: Value of an infeasible search state; far below any reachable total.
_NEG = -(1 << 40)


@dataclass(frozen=True, slots=True)
class _Tables:
    """Per-subset tables over the available GPUs (a subset is a bitmask of positions)."""

    score: _Ints  # sum of the pair scores inside the subset
    eligible: NDArray[np.bool_]  # holds every must-include GPU, on the fewest NUMA nodes
    touches: NDArray[np.bool_]  # holds some must-include GPU
    popcount: _Ints


def _tables(scores: Sequence[Sequence[int]], numa_bits: Sequence[int], required: int, span: int) -> _Tables:
    """Fill the subset tables one highest bit at a time (O(n * 2**n), vectorised)."""
    n = len(numa_bits)
    score, nodes, popcount = (np.zeros(1 << n, np.int64) for _ in range(3))
    for b in range(n):
        low = 1 << b
        partner = np.zeros(low, np.int64)  # partner[m]: pair scores of GPU b with the GPUs of m
        for j in range(b):
            partner[1 << j : 2 << j] = partner[: 1 << j] + scores[b][j]
        score[low : 2 * low] = score[:low] + partner
        nodes[low : 2 * low] = nodes[:low] | numa_bits[b]
        popcount[low : 2 * low] = popcount[:low] + 1
    masks = np.arange(1 << n, dtype=np.int64)
    holds = (masks & required) == required
    return _Tables(score, holds & (popcount[nodes] == span), (masks & required) != 0, popcount)


def _numa_span(gpus: GPUTopology, available: Sequence[str], must_include: Sequence[str], size: int) -> int:
    """Fewest NUMA nodes that a set of ``size`` available GPUs holding ``must_include`` spans."""
    counts = Counter(gpus.gpus[i].numa_node for i in available)
    required = {gpus.gpus[i].numa_node for i in must_include}
    have, span = sum(counts[n] for n in required), len(required)
    for count in sorted((c for n, c in counts.items() if n not in required), reverse=True):
        if have >= size:
            break
        have, span = have + count, span + 1
    return span


def _groups(states: _Ints, n: int, width: int, members: int) -> _Ints:
    """Each group of ``members`` GPUs holding the lowest GPU of a state (a bitmask of ``width``
    GPUs), as a states-by-groups array of bitmasks, groups in visiting order."""
    cols = np.nonzero((states[:, None] >> np.arange(n)) & 1)[1].reshape(len(states), width)
    bits = np.left_shift(np.int64(1), cols)
    combos = np.array(list(combinations(range(1, width), members - 1)), dtype=np.int64)
    groups = np.repeat(bits[:, :1], len(combos), axis=1)
    for j in range(members - 1):
        groups += bits[:, combos[:, j]]
    return groups


class _Search:
    """Best-effort partition search by dynamic programming over subsets.

    A state is (need, padded, mask): the GPUs still to group, whether the padding is still to
    place, whether an eligible group is still missing. ``best[need, padded, mask]`` is the top
    total score of the state's qualifying partitions (``_NEG`` when none). A state's first
    group holds its lowest GPU, as in the visiting order, so taking in each state the first
    group (in visiting order) that reaches the optimum rebuilds the first-visited optimum.
    """

    def __init__(self, tables: _Tables, n: int, size: int) -> None:
        self.t, self.n, self.size, self.pads = tables, n, size, -n % size
        self.best = np.full((2, 2, 1 << n), _NEG, dtype=np.int64)
        self.best[0, 0, 0] = 0
        for count in range(size, n + self.pads + 1, size):
            for padded in (0, 1) if self.pads else (0,):
                if 1 <= count - self.pads * padded <= n:
                    self._fill(padded, count - self.pads * padded)

    def _kinds(self, padded: int, width: int) -> Iterator[tuple[bool, int]]:
        """(takes the padding, real members) of the groups a state can start with."""
        for pad_group in (False, True) if padded else (False,):
            if (members := self.size - self.pads * pad_group) <= width:
                yield pad_group, members

    def _values(self, groups: _Ints, rest: _Ints, padded: int, pad_group: bool) -> tuple[_Ints, _Ints]:
        """Best totals, without and with ``need``, of states starting with ``groups`` and
        leaving ``rest`` (``padded``: the padding is still to place after the group)."""
        score = self.t.score[groups]
        done = score + self.best[0, padded, rest]
        still = np.where(self.t.touches[groups], _NEG, score + self.best[1, padded, rest])
        if pad_group:  # a group taking the padding is never eligible
            return done, still
        return done, np.where(self.t.eligible[groups], done, still)

    def _fill(self, padded: int, width: int) -> None:
        # k groups already taken hold the k lowest GPUs (each group holds the lowest left)
        taken = (self.n + self.pads - width - self.pads * padded) // self.size
        prefix_free = (np.arange(1 << self.n) & ((1 << taken) - 1)) == 0
        states = np.nonzero((self.t.popcount == width) & prefix_free)[0].astype(np.int64)
        options: tuple[list[_Ints], list[_Ints]] = ([], [])
        for pad_group, members in self._kinds(padded, width):
            groups = _groups(states, self.n, width, members)
            values = self._values(groups, states[:, None] ^ groups, int(padded and not pad_group), pad_group)
            for need in (0, 1):
                options[need].append(values[need])
        for need in (0, 1):
            self.best[need, padded, states] = np.concatenate(options[need], axis=1).max(axis=1)

    def _first_optimal(self, mask: int, padded: int, need: int, target: int) -> tuple[int, bool]:
        """First group, in visiting order, through which the state reaches ``target``, and
        whether it takes the padding (which sorts after every GPU)."""
        firsts: list[tuple[tuple[int, ...], int, bool]] = []
        for pad_group, members in self._kinds(padded, mask.bit_count()):
            groups = _groups(np.array([mask], np.int64), self.n, mask.bit_count(), members)[0]
            values = self._values(groups, mask ^ groups, int(padded and not pad_group), pad_group)[need]
            if hits := np.flatnonzero(values == target).tolist():
                group = int(groups[hits[0]])
                order = (*(p for p in range(self.n) if group >> p & 1), *(self.n,) * pad_group)
                firsts.append((order, group, pad_group))
        _, group, pad_group = min(firsts)
        return group, pad_group

    def partition(self) -> list[tuple[int, bool]]:
        """The first-visited best qualifying partition, as (group, takes the padding)."""
        mask, padded, need = (1 << self.n) - 1, int(self.pads > 0), 1
        target = int(self.best[need, padded, mask])
        chosen: list[tuple[int, bool]] = []
        while mask and target > _NEG // 2:
            group, pad_group = self._first_optimal(mask, padded, need, target)
            chosen.append((group, pad_group))
            target -= int(self.t.score[group])
            need = int(need and (pad_group or not self.t.eligible[group]))
            mask, padded = mask ^ group, int(padded and not pad_group)
        return chosen


def preferred_allocation(
    gpus: GPUTopology, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """The ``size`` GPUs to prefer: every ``must_include`` id, on the fewest NUMA nodes, then
    the best-effort partition choice by link score (see the module docstring).

    ``available`` order breaks ties. Returns ids in ``available`` order; raises an
    :class:`~deviceplugin.errors.DeviceAllocationError` for a request that has no answer.
    """
    _validate(gpus, available, must_include, size)
    if size == len(available):
        return list(available)
    if size == 1:
        return [must_include[0] if must_include else available[0]]
    if len(available) > MAX_SEARCH_GPUS:
        raise InvalidRequestError(AVAILABLE, f"{len(available)} devices offered; at most {MAX_SEARCH_GPUS}")
    nodes = {n: 1 << i for i, n in enumerate(dict.fromkeys(gpus.gpus[a].numa_node for a in available))}
    tables = _tables(
        [[gpus.pair_score(a, b) for b in available] for a in available],
        [nodes[gpus.gpus[a].numa_node] for a in available],
        required=sum(1 << available.index(i) for i in must_include),
        span=_numa_span(gpus, available, must_include, size),
    )
    partition = _Search(tables, len(available), size).partition()
    picks = [group for group, pad_group in partition if not pad_group and tables.eligible[group]]
    best = max(picks, key=lambda group: int(tables.score[group]))  # max keeps the first of equals
    return [a for p, a in enumerate(available) if best >> p & 1]


# --------------------------------------------------------------------------- blind policies


def simple_allocation(
    gpus: GPUTopology, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """Topology-blind: the must-include ids, then the lowest-indexed other available GPUs."""
    _validate(gpus, available, must_include, size)
    others = sorted((a for a in available if a not in must_include), key=lambda a: gpus.gpus[a].index)
    return [*must_include, *others[: size - len(must_include)]]


def _dgx1_sets(pairs: Iterable[tuple[int, int]]) -> Mapping[int, tuple[frozenset[int], ...]]:
    """Fixed GPU index sets of a static DGX-1 policy, by size, in the order tried."""
    return MappingProxyType(
        {
            1: tuple(frozenset({i}) for i in range(8)),
            2: tuple(frozenset(p) for p in pairs),
            4: (frozenset(range(4)), frozenset(range(4, 8))),
            8: (frozenset(range(8)),),
        }
    )


_DGX1_VOLTA = _dgx1_sets([(0, 3), (1, 2), (4, 7), (5, 6)])
_DGX1_PASCAL = _dgx1_sets([(0, 2), (1, 3), (4, 6), (5, 7)])


def _static(
    valid: Mapping[int, tuple[frozenset[int], ...]],
    gpus: GPUTopology,
    available: Sequence[str],
    must_include: Sequence[str],
    size: int,
) -> list[str]:
    """The first fixed set of ``size`` that is all available and holds ``must_include``."""
    _validate(gpus, available, must_include, size)
    if size not in valid:
        raise InvalidRequestError(SIZE, f"got {size}, the static DGX-1 policy accepts {sorted(valid)}")
    free = {gpus.gpus[a].index: a for a in available}
    required = {gpus.gpus[m].index for m in must_include}
    if fits := [s for s in valid[size] if required <= s <= free.keys()]:
        return [free[i] for i in sorted(fits[0])]
    raise InsufficientDevicesError(
        AVAILABLE,
        f"no static DGX-1 set of {size} GPUs is free and holds {list(must_include)}",
        requested=size,
        available=len(available),
    )


def static_dgx1_volta_allocation(
    gpus: GPUTopology, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """Topology-blind fixed sets of a DGX-1 Volta node (pairs 0-3, 1-2, 4-7, 5-6)."""
    return _static(_DGX1_VOLTA, gpus, available, must_include, size)


def static_dgx1_pascal_allocation(
    gpus: GPUTopology, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """Topology-blind fixed sets of a DGX-1 Pascal node (pairs 0-2, 1-3, 4-6, 5-7)."""
    return _static(_DGX1_PASCAL, gpus, available, must_include, size)


#: An allocation policy: (gpus, available, must_include, size) → preferred device ids.
AllocationPolicy = Callable[[GPUTopology, Sequence[str], Sequence[str], int], list[str]]

#: Policies by configuration name.
ALLOCATION_POLICIES: Mapping[str, AllocationPolicy] = MappingProxyType(
    {
        "besteffort": preferred_allocation,
        "simple": simple_allocation,
        "static-dgx1-volta": static_dgx1_volta_allocation,
        "static-dgx1-pascal": static_dgx1_pascal_allocation,
    }
)


def allocation_policy(name: str) -> AllocationPolicy:
    """The policy registered under ``name``; :class:`DevicePluginConfigError` lists the valid names."""
    try:
        return ALLOCATION_POLICIES[name]
    except KeyError:
        raise DevicePluginConfigError("allocation policy", name, sorted(ALLOCATION_POLICIES)) from None
