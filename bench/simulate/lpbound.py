"""An upper bound on how many pods of a trace any scheduler could admit: an LP relaxation.

Every admitted pod holds its requests from its arrival for its whole lifetime, so a
schedule that admits a set of pods is a feasible 0/1 point of this program; the LP
optimum, rounded down, therefore bounds the admitted count of *every* scheduler, online
or not (it assumes pods start at arrival: with retries it is an estimate, not a bound).

Variables, all in [0, 1]: ``x[p]`` (pod p admitted), ``w[p, T]`` (on a node of type T)
and ``y[c, Z]`` (container c's pinned resources on a NUMA zone of class Z). A zone
class is a set of identical NUMA zones of one node type (same exclusive CPUs, memory,
hugepages, GPUs); merging identical zones does not change the LP optimum, since any
fractional solution can be spread evenly over them. Constraints:

* ``sum_T w[p, T] = x[p]``; ``sum_{Z in T} y[c, Z] = w[p, T]`` for every pinned container
  c of p (what kubelet pins: whole CPUs, memory and hugepages of Guaranteed pods, GPUs);
* ``w[p, T]`` exists only if p's requests fit T's allocatable, ``y[c, Z]`` only if c's
  pinned request fits one zone of Z (the single-numa-node rule, kept by the relaxation);
* at every instant, per node type and resource, the requests of the pods present on T
  fit ``count(T) x allocatable(T)``; per zone class and pinned resource, the pinned
  requests fit ``size(Z) x zone capacity``. Instants are the maximal sets of pods
  alive together (after an arrival that a departure follows): every other instant's
  constraint is implied by one of those.

Maximise ``sum_p x[p]``. Relaxed away: integrality, which node of a type and which zone
of a class, the 110-pod limit and init containers. HiGHS (``scipy.optimize.linprog``)
solves it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from bench.simulate.kubelet import KubeletNode, pinned_request
from bench.simulate.trace import SimPod

__all__ = ["LPBound", "instants", "lp_bound"]

Vector = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class LPBound:
    """The bound (admitted pods), the LP value, the problem size and solve time."""

    pods: int
    lp_value: float
    variables: int
    constraints: int
    instants: int
    wall_s: float
    status: str


def instants(pods: Sequence[SimPod]) -> list[float]:
    """Times at which the set of pods alive is maximal (the arrival before a departure)."""
    events = sorted([(p.arrival_s, 1) for p in pods] + [(p.arrival_s + p.duration_s, 0) for p in pods])
    out: list[float] = []
    for (t, kind), nxt in zip(events, [*events[1:], (math.inf, 0)], strict=True):
        if kind == 1 and nxt[1] == 0:
            out.append(t)
    return out


def _fits(request: Mapping[str, int], capacity: Mapping[str, int]) -> bool:
    return all(amount <= capacity.get(name, 0) for name, amount in request.items() if amount > 0)


@dataclass(slots=True)
class _Type:
    count: int
    allocatable: dict[str, int]
    zones: dict[Vector, int]  # zone vector -> zones per node


def _types(nodes: Sequence[KubeletNode]) -> list[_Type]:
    found: dict[tuple[str, Vector], _Type] = {}
    for node in nodes:
        alloc = tuple(sorted(node.allocatable.items()))
        key = (node.node_type, alloc)
        if key in found:
            found[key].count += 1
            continue
        zones: dict[Vector, int] = {}
        for row in node.available().values():
            vec = tuple(sorted(row.items()))
            zones[vec] = zones.get(vec, 0) + 1
        found[key] = _Type(1, dict(node.allocatable), zones)
    return list(found.values())


class _Builder:
    """Columns, equality rows and per-instant capacity entries of the LP."""

    def __init__(self) -> None:
        self.cols = 0
        self.eq: list[tuple[int, int, float]] = []  # (row, col, coef)
        self.eq_rows = 0
        self.cap: list[tuple[int, int, float, int, int]] = []  # (col, group, coef, first, last)
        self.groups: dict[tuple[object, ...], int] = {}

    def col(self) -> int:
        self.cols += 1
        return self.cols - 1

    def link(self, parent: int, children: Sequence[int]) -> None:
        """sum(children) - parent = 0."""
        row = self.eq_rows
        self.eq_rows += 1
        self.eq.extend((row, c, 1.0) for c in children)
        self.eq.append((row, parent, -1.0))

    def use(self, col: int, key: tuple[object, ...], share: float, span: tuple[int, int]) -> None:
        group = self.groups.setdefault(key, len(self.groups))
        self.cap.append((col, group, share, *span))


def _add_pod(b: _Builder, pod: SimPod, types: Sequence[_Type], span: tuple[int, int]) -> int:
    x = b.col()
    request = pod.request.effective_request()
    pinned = [r for c in pod.request.containers if (r := pinned_request(pod.request, c))]
    ws = []
    for t_index, t in enumerate(types):
        zones = [[z for z in t.zones if _fits(r, dict(z))] for r in pinned]
        if not _fits(request, t.allocatable) or any(not z for z in zones):
            continue
        w = b.col()
        ws.append(w)
        for name, amount in request.items():
            if amount > 0:
                b.use(w, ("node", t_index, name), amount / (t.count * t.allocatable[name]), span)
        for r, fitting in zip(pinned, zones, strict=True):
            ys = []
            for z in fitting:
                y = b.col()
                ys.append(y)
                cap = dict(z)
                for name, amount in r.items():
                    b.use(y, ("zone", t_index, z, name), amount / (t.count * t.zones[z] * cap[name]), span)
            b.link(w, ys)
    b.link(x, ws)
    return x


def _capacity_rows(b: _Builder, n_instants: int) -> tuple[coo_matrix, np.ndarray]:
    groups = len(b.groups)
    if not b.cap:
        return coo_matrix((0, b.cols)), np.zeros(0)
    col, group, coef, first, last = (np.array(v) for v in zip(*b.cap, strict=True))
    lengths = last - first
    keep = lengths > 0
    col, group, coef, first, lengths = col[keep], group[keep], coef[keep], first[keep], lengths[keep]
    starts = np.repeat(first - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    instant = starts + np.arange(int(lengths.sum()))
    rows = instant * groups + np.repeat(group, lengths)
    a = coo_matrix(
        (np.repeat(coef, lengths), (rows, np.repeat(col, lengths))), shape=(n_instants * groups, b.cols)
    )
    return a, np.ones(n_instants * groups)


def lp_bound(pods: Sequence[SimPod], nodes: Sequence[KubeletNode]) -> LPBound:
    """The LP upper bound on admitted pods of *pods* on the (empty) cluster *nodes*."""
    started = time.perf_counter()
    times = instants(pods)
    types = _types(nodes)
    b = _Builder()
    xs = []
    for pod in pods:
        span = (
            bisect.bisect_left(times, pod.arrival_s),
            bisect.bisect_left(times, pod.arrival_s + pod.duration_s),
        )
        xs.append(_add_pod(b, pod, types, span))
    a_ub, b_ub = _capacity_rows(b, len(times))
    rows, cols, coefs = zip(*b.eq, strict=True) if b.eq else ((), (), ())
    a_eq = coo_matrix((coefs, (rows, cols)), shape=(b.eq_rows, b.cols))
    c = np.zeros(b.cols)
    c[xs] = -1.0
    res = linprog(
        c,
        A_ub=a_ub.tocsr(),
        b_ub=b_ub,
        A_eq=a_eq.tocsr(),
        b_eq=np.zeros(b.eq_rows),
        bounds=(0.0, 1.0),
        method="highs",
    )
    value = -float(res.fun) if res.status == 0 else float(len(pods))
    return LPBound(
        pods=min(len(pods), math.floor(value + 1e-6)),
        lp_value=round(value, 3),
        variables=b.cols,
        constraints=a_ub.shape[0] + b.eq_rows,
        instants=len(times),
        wall_s=time.perf_counter() - started,
        status=str(res.message),
    )
