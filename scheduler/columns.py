"""The cluster's NUMA zones as numpy columns: what the vectorised fit and score read.

:class:`ClusterColumns` keeps one row per node with an NRT object. A row holds up to
:data:`MAX_SLOTS` zones in zone order: ``available`` and ``allocatable`` per resource
column (``-1`` available: the zone does not report the resource), the Topology
Manager policy and scope as small codes, each slot's distance to itself, and, per
subset of slots, the summed pairwise distance that LeastNUMANodes compares.

Rows are rewritten whenever the NRT cache builds a node's view (NRT update,
reservation, expiry), so the columns always equal the views. Each row carries the
``generation`` of the view it was written from (``-1`` once the node is removed): a
result computed from a row stays valid while that number is the same, which is what
:mod:`scheduler.results` keys its per-row caches on. A row is *eligible* for
the vectorised path only when its zones are in increasing NUMA id order and there are
at most :data:`MAX_SLOTS` of them; other nodes take the per-node path. Readers take a
:class:`Gathered` copy of the rows they need under the lock, so a concurrent update
never shows them a half-written row.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.strategies import MAX_DISTANCE
from scheduler.views import NodeView

__all__ = [
    "MAX_SLOTS",
    "POLICY_CODES",
    "SUBSET_SIZES",
    "SUBSETS",
    "WIRE_WIDTH",
    "ClusterColumns",
    "Gathered",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Zones per node the columns hold; nodes with more take the per-node path.
MAX_SLOTS = 8
#: JSON fragments kept per row: the name, and one prioritize entry per score 0..10.
WIRE_WIDTH = 12
#: Topology Manager policy -> code (anything else: not eligible).
POLICY_CODES: Mapping[str, int] = {"none": 0, "best-effort": 1, "restricted": 2, "single-numa-node": 3}


def _subsets() -> tuple[BoolArray, IntArray, IntArray]:
    """Every non-empty subset of slots, by size then in ``itertools.combinations`` order
    (the order LeastNUMANodes tries zone sets in), with its size and highest slot."""
    combos = [c for k in range(1, MAX_SLOTS + 1) for c in itertools.combinations(range(MAX_SLOTS), k)]
    members = np.zeros((len(combos), MAX_SLOTS), dtype=np.bool_)
    for i, combo in enumerate(combos):
        members[i, list(combo)] = True
    sizes = np.array([len(c) for c in combos], dtype=np.int64)
    highest = np.array([max(c) for c in combos], dtype=np.int64)
    return members, sizes, highest


SUBSETS, SUBSET_SIZES, _SUBSET_HIGHEST = _subsets()
_SUBSETS_F = SUBSETS.astype(np.float64)


@dataclass(frozen=True, slots=True)
class Gathered:
    """Copies of some rows, in the caller's order (``rows`` index the cluster arrays)."""

    rows: IntArray
    avail: IntArray  # resources x n x slots (the resources of the request only)
    alloc: IntArray
    nzones: IntArray
    policy: IntArray
    scope_pod: BoolArray
    self_dist: IntArray  # n x slots
    numa: IntArray  # n x slots: the NUMA id of each slot
    resources: Mapping[str, int]

    def column(self, name: str) -> int | None:
        return self.resources.get(name)

    def subset(self, keep: BoolArray) -> Gathered:
        """The rows where *keep* is true."""
        return Gathered(
            self.rows[keep],
            self.avail[:, keep],
            self.alloc[:, keep],
            self.nzones[keep],
            self.policy[keep],
            self.scope_pod[keep],
            self.self_dist[keep],
            self.numa[keep],
            self.resources,
        )


Distances = tuple[tuple[int, tuple[tuple[int, int], ...]], ...]


def _distance_rows(view: NodeView) -> tuple[IntArray, IntArray, IntArray]:
    """(self distance per slot, distance sum per subset, least sum per subset size).

    A node's distances change only with its NRT object's costs, not with what is free, so
    the rows are kept per distance table: a reservation's rewrite of a row reuses them."""
    key = tuple((c.numa_id, tuple(sorted(c.costs.items()))) for c in view.nrt.numa_cells())
    return _distance_rows_of(key)


@functools.lru_cache(maxsize=1024)
def _distance_rows_of(cells: Distances) -> tuple[IntArray, IntArray, IntArray]:
    n = len(cells)
    matrix = np.full((MAX_SLOTS, MAX_SLOTS), MAX_DISTANCE, dtype=np.int64)
    for a, (_, costs) in enumerate(cells):
        row = dict(costs)
        for b, (numa_id, _) in enumerate(cells):
            matrix[a, b] = row.get(numa_id, MAX_DISTANCE)
    sub = SUBSETS.astype(np.int64)
    sums = np.einsum("sa,ab,sb->s", sub, matrix, sub)
    least = np.zeros(MAX_SLOTS, dtype=np.int64)
    inside = n > _SUBSET_HIGHEST
    for size in range(1, n + 1):
        least[size - 1] = sums[inside & (size == SUBSET_SIZES)].min()
    out = (np.diagonal(matrix).copy(), sums, least)
    for array in out:
        array.setflags(write=False)  # shared by every row with this table: read-only
    return out


class ClusterColumns:
    """Per-node zone columns, updated row by row from :class:`NodeView` objects."""

    def __init__(self, capacity: int = 64) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, int] = {}
        self._free: list[int] = []
        self._resources: dict[str, int] = {}
        #: Changes whenever a row is given to another node or freed: fragments and rows
        #: looked up under one value still name the same nodes.
        self.layout = 0
        #: Per row: the node name as JSON, then ``{"Host":NAME,"Score":S}`` for S = 0..10.
        self.wire: npt.NDArray[np.object_] = np.empty((0, WIRE_WIDTH), dtype=object)
        self._allocate(capacity, 4)

    def _allocate(self, capacity: int, width: int) -> None:
        self.avail: IntArray = np.full((width, capacity, MAX_SLOTS), -1, dtype=np.int64)
        self.alloc: IntArray = np.zeros((width, capacity, MAX_SLOTS), dtype=np.int64)
        self.nzones: IntArray = np.zeros(capacity, dtype=np.int64)
        self.policy: IntArray = np.full(capacity, -1, dtype=np.int64)
        self.scope_pod: BoolArray = np.zeros(capacity, dtype=np.bool_)
        self.self_dist: IntArray = np.zeros((capacity, MAX_SLOTS), dtype=np.int64)
        self.numa: IntArray = np.full((capacity, MAX_SLOTS), -1, dtype=np.int64)
        self.gen: IntArray = np.full(capacity, -1, dtype=np.int64)
        self.subset_dist: IntArray = np.zeros((capacity, len(SUBSETS)), dtype=np.int64)
        self.least_dist: IntArray = np.zeros((capacity, MAX_SLOTS), dtype=np.int64)

    def _grow(self, capacity: int, width: int) -> None:
        old = (
            self.avail,
            self.alloc,
            self.numa,
            self.gen,
            self.nzones,
            self.policy,
            self.scope_pod,
            self.self_dist,
            self.subset_dist,
            self.least_dist,
        )
        self._allocate(capacity, width)
        r, n, _ = old[0].shape
        self.avail[:r, :n] = old[0]
        self.alloc[:r, :n] = old[1]
        for new, src in zip(
            (
                self.numa,
                self.gen,
                self.nzones,
                self.policy,
                self.scope_pod,
                self.self_dist,
                self.subset_dist,
                self.least_dist,
            ),
            old[2:],
            strict=True,
        ):
            new[:n] = src

    # ------------------------------------------------------------ writes
    def update(self, view: NodeView) -> None:
        """Write *view*'s node into its row (a new row for a new node)."""
        dist = _distance_rows(view) if self._eligible(view) else None
        with self._lock:
            row = self._row_for(view.name)
            for cell in view.nrt.numa_cells():
                for name in cell.available:
                    self._column_for(name)
            for name in (n for a in view.allocatable.values() for n in a):
                self._column_for(name)
            self._write(row, view, dist)

    def remove(self, node: str) -> None:
        with self._lock:
            row = self._rows.pop(node, None)
            if row is not None:
                self.policy[row] = -1
                self.gen[row] = -1
                self._free.append(row)
                self.layout += 1

    @staticmethod
    def _eligible(view: NodeView) -> bool:
        ids = [c.numa_id for c in view.nrt.numa_cells()]
        return (
            len(ids) <= MAX_SLOTS
            and all(a < b for a, b in itertools.pairwise(ids))
            and view.config.policy in POLICY_CODES
            and view.config.scope in ("pod", "container")
        )

    def _row_for(self, node: str) -> int:
        row = self._rows.get(node)
        if row is None:
            if not self._free:
                size = len(self.nzones)
                self._grow(size * 2, self.avail.shape[0])
                self._free.extend(range(size * 2 - 1, size - 1, -1))
            row = self._free.pop()
            self._rows[node] = row
            self._encode(row, node)
        return row

    def _encode(self, row: int, node: str) -> None:
        """The row's JSON fragments: the quoted name, and the prioritize entry per score."""
        if row >= len(self.wire):
            wire = np.empty((len(self.nzones), WIRE_WIDTH), dtype=object)
            wire[: len(self.wire)] = self.wire
            self.wire = wire
        name = json.dumps(node).encode()
        head = b'{"Host":' + name + b',"Score":'
        self.wire[row, 0] = name
        for score in range(WIRE_WIDTH - 1):
            self.wire[row, score + 1] = head + b"%d}" % score
        self.layout += 1

    def _column_for(self, name: str) -> int:
        col = self._resources.get(name)
        if col is None:
            col = len(self._resources)
            if col >= self.avail.shape[0]:
                self._grow(len(self.nzones), self.avail.shape[0] * 2)
            self._resources[name] = col
        return col

    def _write(self, row: int, view: NodeView, dist: tuple[IntArray, IntArray, IntArray] | None) -> None:
        self.avail[:, row] = -1
        self.alloc[:, row] = 0
        self.gen[row] = view.generation
        if dist is None:
            self.policy[row] = -1
            return
        cells = view.nrt.numa_cells()
        self.numa[row] = -1
        for slot, cell in enumerate(cells):
            self.numa[row, slot] = cell.numa_id
            for name, amount in cell.available.items():
                self.avail[self._resources[name], row, slot] = amount
            for name, amount in view.allocatable.get(cell.numa_id, {}).items():
                self.alloc[self._resources[name], row, slot] = amount
        self.nzones[row] = len(cells)
        self.policy[row] = POLICY_CODES[view.config.policy]
        self.scope_pod[row] = view.config.scope == "pod"
        self.self_dist[row], self.subset_dist[row], self.least_dist[row] = dist

    # ------------------------------------------------------------- reads
    def rows_of(self, names: Sequence[str]) -> IntArray:
        """Row per name; -1 for a node with no NRT object."""
        found = map(self._rows.get, names, itertools.repeat(-1, len(names)))
        return np.fromiter(found, dtype=np.int64, count=len(names))

    def fragments(self, rows: IntArray, column: IntArray | int, layout: int) -> list[bytes] | None:
        """``wire[rows, column]`` (all rows valid), or None when rows changed hands since
        *layout* was read (the caller then encodes from the names)."""
        with self._lock:
            if layout != self.layout:
                return None
            out: list[bytes] = self.wire[rows, column].tolist()
            return out

    def live(self) -> tuple[IntArray, list[str]]:
        """Every node's row and name."""
        with self._lock:
            names = list(self._rows)
            rows = np.fromiter(self._rows.values(), dtype=np.int64, count=len(names))
        return rows, names

    def generations(self, rows: IntArray) -> IntArray:
        """The view generation each of *rows* was last written from."""
        with self._lock:
            out: IntArray = self.gen[rows]
            return out

    def meta(self, rows: IntArray) -> tuple[IntArray, BoolArray]:
        """(policy code, pod scope) of *rows*."""
        with self._lock:
            return self.policy[rows], self.scope_pod[rows]

    def gather(self, rows: IntArray, names: Iterable[str]) -> Gathered:
        """Copies of *rows* (all valid rows), with the columns of *names* only."""
        with self._lock:
            local = {n: self._resources[n] for n in dict.fromkeys(names) if n in self._resources}
            cols = np.fromiter(local.values(), dtype=np.int64, count=len(local))
            grid = np.ix_(cols, rows)
            return Gathered(
                rows,
                self.avail[grid],
                self.alloc[grid],
                self.nzones[rows],
                self.policy[rows],
                self.scope_pod[rows],
                self.self_dist[rows],
                self.numa[rows],
                {n: i for i, n in enumerate(local)},
            )

    def subset_sums(self, rows: IntArray) -> IntArray:
        """The distance sum of every slot subset (:data:`SUBSETS` order) of *rows*."""
        with self._lock:
            out: IntArray = self.subset_dist[rows]
            return out

    def least_sums(self, rows: IntArray) -> IntArray:
        """Per set size (index size-1), the least distance sum of *rows*."""
        with self._lock:
            out: IntArray = self.least_dist[rows]
            return out

    def policies(self) -> IntArray:
        return self.policy
