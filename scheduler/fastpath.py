"""The extender's vectorised fit and LeastNUMANodes score: all candidate nodes at once.

Both functions take a compiled pod and the :class:`~scheduler.columns.Gathered` rows of
the candidate nodes, and give per row the same answer as the per-node code
(:func:`scheduler.views.fast_single_numa_fit`, :func:`scheduler.views.fast_restricted_fit`,
the LeastNUMANodes scorer of :mod:`scheduler.score`), or say that the row must take the
per-node path (``UNDECIDED``). Checks run in order over numpy arrays of shape
``rows x zone slots``; a placed container takes its resources from its lowest-id
fitting zone before the next container is checked, exactly as the per-node code does.

* ``single-numa-node``: every check needs one zone holding all its items.
* ``restricted`` (kubelet rules): each constrained item's preferred width comes from
  ``allocatable``; widths that disagree reject, width 1 is the single-zone check, wider
  sets go to the per-node path.
* LeastNUMANodes: per check the smallest zone set (by size, then least distance sum,
  then ``itertools.combinations`` order) whose summed ``available`` holds the request;
  single zones are tried over all rows, larger sets over the remaining rows only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.columns import _SUBSETS_F, MAX_SLOTS, SUBSET_SIZES, SUBSETS, Gathered, IntArray
from scheduler.filter import ALWAYS_PRESENT
from scheduler.pod import Resources
from scheduler.strategies import HIGHEST_NUMA_ID, MAX_NODE_SCORE, MIN_NODE_SCORE
from scheduler.views import Check

__all__ = ["UNDECIDED", "FilterColumns", "filter_rows", "least_numa_rows"]

BoolArray = npt.NDArray[np.bool_]
#: ``verdict`` / score value of a row the per-node path must decide.
UNDECIDED = -2
_PASS, _FAIL, _UNRESOLVABLE = 1, 0, -1
_RESTRICTED = 2
#: positions in the gathered rows -> their distance sums per subset (rows x subsets).
SubsetSums = Callable[[IntArray], IntArray]


@dataclass(frozen=True, slots=True)
class FilterColumns:
    """Per row: ``verdict`` (1 pass, 0 fail, -1 unresolvable, UNDECIDED), the failing
    check and item, and the zones' ``available`` as it was when that check ran."""

    verdict: IntArray
    check: IntArray
    item: IntArray
    working: IntArray


def _slot_valid(g: Gathered) -> BoolArray:
    valid: BoolArray = np.arange(MAX_SLOTS)[None, :] < g.nzones[:, None]
    return valid


def _values(g: Gathered, working: IntArray, name: str) -> IntArray:
    col = g.column(name)
    if col is None:
        return np.full((len(g.rows), MAX_SLOTS), -1, dtype=np.int64)
    out: IntArray = working[col]
    return out


def _widths(g: Gathered, check: Check) -> IntArray:
    """Per row the common preferred width of the check's constrained items: 0 when none
    is constrained, -1 when there is none or they disagree (kubelet rejects)."""
    n = len(g.rows)
    common = np.zeros(n, dtype=np.int64)
    for item in check.items:
        col = g.column(item.name)
        if col is None:
            continue
        reporting = g.avail[col] >= 0
        caps = np.where(reporting, g.alloc[col], 0)
        cum = np.cumsum(-np.sort(-caps, axis=1), axis=1)
        reached = cum >= item.amount
        width = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, -1)
        width = np.where(reporting.any(axis=1), width, 0)
        agree = (common == 0) | (width == 0) | (common == width)
        common = np.where(width == 0, common, np.where(agree & (width > 0) & (common >= 0), width, -1))
    return common


def filter_rows(checks: tuple[Check, ...], g: Gathered, *, strict: bool) -> FilterColumns:
    """Decide ``single-numa-node`` rows (both rule sets) and ``restricted`` rows (kubelet
    rules, ``strict`` False); other rows are passed through as UNDECIDED."""
    n = len(g.rows)
    working = g.avail.copy()
    verdict = np.full(n, _PASS, dtype=np.int64)
    restricted = g.policy == _RESTRICTED
    if strict:
        verdict[restricted] = UNDECIDED
    fail_check = np.full(n, -1, dtype=np.int64)
    fail_item = np.full(n, -1, dtype=np.int64)
    valid = _slot_valid(g)
    snapshot = working.copy()
    for ci, check in enumerate(checks):
        alive = verdict == _PASS
        if not strict and restricted.any():
            width = _widths(g, check)
            bad = alive & restricted & (width < 0)
            verdict[bad], fail_check[bad] = _FAIL, ci
            verdict[alive & restricted & (width > 1)] = UNDECIDED
            alive = verdict == _PASS
        cand = valid.copy()
        constrained = np.zeros(n, dtype=np.bool_)
        for ii, item in enumerate(check.items):
            values = _values(g, working, item.name)
            reported: BoolArray = np.asarray((values >= 0).any(axis=1))
            skip: BoolArray
            if not strict or item.host_level:
                skip = ~reported
            else:
                skip = np.zeros(n, dtype=np.bool_)
                if item.name not in ALWAYS_PRESENT:
                    gone = alive & ~reported
                    verdict[gone], fail_check[gone], fail_item[gone] = _UNRESOLVABLE, ci, ii
                    alive &= ~gone
            narrowed = cand & (values >= item.need)
            cand = np.where(skip[:, None], cand, narrowed)
            constrained |= ~skip
            empty = alive & ~skip & ~cand.any(axis=1)
            verdict[empty], fail_check[empty], fail_item[empty] = _FAIL, ci, ii
            snapshot[:, empty] = working[:, empty]
            alive &= ~empty
        if check.consumes:
            _take(check, g, working, cand, alive & constrained)
    return FilterColumns(verdict, fail_check, fail_item, snapshot)


def _take(check: Check, g: Gathered, working: IntArray, cand: BoolArray, rows: BoolArray) -> None:
    """Consume the check from each row's lowest-id fitting zone (slots are in id order)."""
    idx = np.flatnonzero(rows)
    if not len(idx):
        return
    slot = cand[idx].argmax(axis=1)
    for item in check.items:
        col = g.column(item.name)
        if not item.take or col is None:
            continue
        have = working[col, idx, slot]
        working[col, idx, slot] = np.where(have >= 0, np.maximum(have - item.amount, 0), have)


# ------------------------------------------------------------ least NUMA
def _normalize(count: IntArray, is_min: BoolArray) -> IntArray:
    step = MAX_NODE_SCORE // HIGHEST_NUMA_ID
    out: IntArray = MAX_NODE_SCORE - count * step + np.where(is_min, step // 2, 0)
    return out


def _required(
    g: Gathered, working: IntArray, request: Resources, least: IntArray, sums: SubsetSums, rows: BoolArray
) -> tuple[IntArray, BoolArray, IntArray]:
    """Per row: the chosen set size (0: nothing fits), whether its distance is the least
    for that size, and the chosen subset index (into :data:`SUBSETS`)."""
    n = len(g.rows)
    needed = [(name, amount) for name, amount in request.items() if amount != 0]
    valid = _slot_valid(g)
    fits1 = valid.copy()
    reports_all = valid.copy()
    for name, amount in needed:
        values = _values(g, working, name)
        fits1 &= values >= amount
        reports_all &= values >= 0
    size = np.zeros(n, dtype=np.int64)
    chosen = np.zeros(n, dtype=np.int64)
    is_min = np.zeros(n, dtype=np.bool_)
    one = rows & fits1.any(axis=1)
    if one.any():
        dist = np.where(fits1, g.self_dist, np.iinfo(np.int64).max)
        slot = dist.argmin(axis=1)
        best = dist[np.arange(n), slot]
        size[one], chosen[one] = 1, slot[one]
        is_min[one] = best[one] == least[one, 0]
    many = np.flatnonzero(rows & ~one & reports_all.any(axis=1))
    if len(many):
        _required_many(g, working, needed, many, sums, least, (size, chosen, is_min), valid, reports_all)
    return size, is_min, chosen


def _required_many(
    g: Gathered,
    working: IntArray,
    needed: list[tuple[str, int]],
    idx: IntArray,
    sums: SubsetSums,
    least: IntArray,
    out: tuple[IntArray, IntArray, BoolArray],
    valid: BoolArray,
    reports_all: BoolArray,
) -> None:
    usable = (valid[idx] & reports_all[idx]).astype(np.float64)
    fits = (usable @ _SUBSETS_F.T) == SUBSET_SIZES[None, :]
    for name, amount in needed:
        values = np.maximum(_values(g, working, name)[idx], 0).astype(np.float64)
        fits &= (values @ _SUBSETS_F.T) >= amount
    big = np.iinfo(np.int64).max
    smallest = np.where(fits, SUBSET_SIZES[None, :], big).min(axis=1)
    found = smallest < big
    pick = fits & (SUBSET_SIZES[None, :] == smallest[:, None])
    dist = sums(idx)
    key = np.where(pick, dist * len(SUBSETS) + np.arange(len(SUBSETS))[None, :], big)
    best = key.argmin(axis=1)
    size, chosen, is_min = out
    rows = idx[found]
    size[rows] = smallest[found]
    chosen[rows] = best[found]
    is_min[rows] = dist[np.arange(len(idx)), best][found] == least[rows, smallest[found] - 1]


def _subtract(g: Gathered, working: IntArray, request: Resources, chosen: IntArray, rows: BoolArray) -> None:
    """Take *request* out of each row's chosen slots, lowest slot first, never below zero."""
    idx = np.flatnonzero(rows)
    members = SUBSETS[chosen[idx]]
    for name, amount in request.items():
        col = g.column(name)
        if col is None or amount == 0:
            continue
        left = np.full(len(idx), amount, dtype=np.int64)
        for slot in range(MAX_SLOTS):
            have = working[col, idx, slot]
            take = np.where(members[:, slot] & (have >= 0), np.minimum(np.maximum(have, 0), left), 0)
            working[col, idx, slot] = have - take
            left -= take


def least_numa_rows(
    requests: list[Resources], pod_scope_request: Resources, g: Gathered, sums: SubsetSums, least: IntArray
) -> IntArray:
    """LeastNUMANodes plugin scores (0..100) of a Guaranteed pod per row. *requests* are
    the containers' requests in admission order (init containers first)."""
    n = len(g.rows)
    score = np.full(n, MAX_NODE_SCORE, dtype=np.int64)
    working = g.avail.copy()
    pod = g.scope_pod
    _score_pod_scope(g, working, pod_scope_request, sums, least, pod, score)
    widest = np.zeros(n, dtype=np.int64)
    all_min = np.ones(n, dtype=np.bool_)
    failed = np.zeros(n, dtype=np.bool_)
    for request in requests:
        live = ~pod & ~failed & _reports_any(g, request)
        if not live.any():
            continue
        size, is_min, chosen = _required(g, working, request, least, sums, live)
        failed |= live & (size == 0)
        ok = live & (size > 0)
        widest = np.where(ok, np.maximum(widest, size), widest)
        all_min &= ~ok | is_min
        _subtract(g, working, request, chosen, ok)
    container = np.where(widest == 0, MAX_NODE_SCORE, _normalize(widest, all_min))
    container = np.where(failed, MIN_NODE_SCORE, container)
    return np.where(pod, score, container)


def _reports_any(g: Gathered, request: Resources) -> BoolArray:
    out = np.zeros(len(g.rows), dtype=np.bool_)
    for name in request:
        col = g.column(name)
        if col is not None:
            out |= (g.avail[col] >= 0).any(axis=1)
    return out


def _score_pod_scope(
    g: Gathered,
    working: IntArray,
    request: Resources,
    sums: SubsetSums,
    least: IntArray,
    rows: BoolArray,
    score: IntArray,
) -> None:
    live = rows & _reports_any(g, request)
    if not live.any():
        return
    size, is_min, _ = _required(g, working, request, least, sums, live)
    score[live] = np.where(size[live] == 0, MIN_NODE_SCORE, _normalize(size, is_min)[live])
