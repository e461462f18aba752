"""One extender request over all its candidate nodes: columns first, per node where needed.

:func:`filter_batch` and :func:`least_numa_batch` look the candidate names up in the
:class:`~scheduler.columns.ClusterColumns`, decide every eligible node with the
vectorised code of :mod:`scheduler.fastpath`, and hand the rest (nodes the columns
cannot hold, multi-zone ``restricted`` fits) to a per-node callback. Names without an
NRT object pass the filter and get the no-data score. Rejection messages are the ones
the per-node code writes, built only for rejected nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from scheduler.columns import POLICY_CODES, ClusterColumns, Gathered, IntArray
from scheduler.fastpath import UNDECIDED, FilterColumns, filter_rows, least_numa_rows
from scheduler.pod import PodRequest
from scheduler.views import Check, CompiledPod
from topology.nrt import zone_name
from topology.quantity import format_amount

__all__ = ["BatchFilter", "filter_batch", "least_numa_batch", "least_numa_plugin"]

_SNN = POLICY_CODES["single-numa-node"]
_RESTRICTED = POLICY_CODES["restricted"]
#: (position in the request) -> (fits, message, unresolvable): the per-node path.
PerNode = Callable[[int], tuple[bool, str, bool]]


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """Survivors in request order and the rejected nodes with their reasons."""

    passed: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


@lru_cache(maxsize=65536)
def _amount(name: str, value: int) -> str:
    return format_amount(name, value)


@lru_cache(maxsize=65536)
def _zone_text(name: str, numa: tuple[int, ...], values: tuple[int, ...]) -> str:
    return ", ".join(
        f"{zone_name(n)}: {_amount(name, v)}" for n, v in zip(numa, values, strict=True) if v >= 0
    )


def _restricted_message(check: Check) -> str:
    wants = ", ".join(f"{i.name} {_amount(i.name, i.amount)}" for i in check.items)
    return (
        f"{check.reason}: {check.label}: TopologyAffinityError under restricted "
        f"(no NUMA set is the narrowest fit for all of {wants})"
    )


def _rows(columns: ClusterColumns, names: Sequence[str]) -> tuple[IntArray, IntArray]:
    """(positions of names with a row, their rows)."""
    rows = columns.rows_of(names)
    known = np.flatnonzero(rows >= 0)
    return known, rows[known]


def _checks_resources(checks: Sequence[Check]) -> list[str]:
    return [item.name for check in checks for item in check.items]


def _record(
    checks: tuple[Check, ...],
    g: Gathered,
    out: FilterColumns,
    names: list[str],
    failed: dict[str, str],
    unresolvable: dict[str, str],
) -> None:
    """Write the messages of the rejected rows (in the order of *names*, one per row);
    rows left UNDECIDED get theirs from the per-node path."""
    bad = np.flatnonzero((out.verdict <= 0) & (out.verdict != UNDECIDED))
    if not len(bad):
        return
    verdicts, fchecks, fitems = out.verdict[bad].tolist(), out.check[bad].tolist(), out.item[bad].tolist()
    numa = [tuple(row) for row in g.numa[bad].tolist()]
    policies = g.policy[bad].tolist()
    for k, pos in enumerate(bad.tolist()):
        check = checks[fchecks[k]]
        if verdicts[k] < 0:
            item = check.items[fitems[k]].name
            unresolvable[names[pos]] = (
                f"{check.reason}: {check.label}: the node has no {item!r} in any NUMA zone"
            )
        elif policies[k] == _RESTRICTED:
            failed[names[pos]] = _restricted_message(check)
        else:
            it = check.items[fitems[k]]
            col = g.column(it.name)
            have = "" if col is None else _zone_text(it.name, numa[k], tuple(out.working[col, pos].tolist()))
            failed[names[pos]] = (
                f"{check.reason}: {check.label}: no single NUMA node has {it.name} "
                f"{_amount(it.name, it.amount)} ({have or 'none'})"
            )


def filter_batch(
    compiled: CompiledPod, names: Sequence[str], columns: ClusterColumns, per_node: PerNode
) -> BatchFilter:
    """Filter *names* for *compiled* (which needs work)."""
    strict = compiled.mode == "nrt-match"
    verdict = np.ones(len(names), dtype=np.int64)
    known, rows = _rows(columns, names)
    policy, scope_pod = columns.meta(rows)
    aligned = (policy == _SNN) | ((policy == _RESTRICTED) & (not strict))
    verdict[known[policy < 0]] = UNDECIDED
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for pod_scope, checks in ((True, compiled.pod_checks), (False, compiled.container_checks)):
        keep = aligned & (scope_pod == pod_scope)
        if not keep.any():
            continue
        g = columns.gather(rows[keep], _checks_resources(checks))
        out = filter_rows(checks, g, strict=strict)
        where = known[keep]
        verdict[where] = out.verdict
        _record(checks, g, out, [names[i] for i in where.tolist()], failed, unresolvable)
    for pos in np.flatnonzero(verdict == UNDECIDED).tolist():
        fits, message, unres = per_node(pos)
        if fits:
            verdict[pos] = 1
        else:
            (unresolvable if unres else failed)[names[pos]] = message
    passed = [names[i] for i in np.flatnonzero(verdict == 1).tolist()]
    return BatchFilter(passed, failed, unresolvable)


def least_numa_plugin(pod: PodRequest, rows: IntArray, columns: ClusterColumns) -> IntArray:
    """LeastNUMANodes plugin scores (0..100) of a Guaranteed *pod* on eligible *rows*."""
    requests = [c.requests for c in pod.all_containers()]
    g = columns.gather(rows, [n for r in requests for n in r])
    return least_numa_rows(
        requests,
        pod.effective_request(),
        g,
        lambda positions: columns.subset_sums(rows[positions]),
        columns.least_sums(rows),
    )


def least_numa_batch(
    pod: PodRequest,
    names: Sequence[str],
    columns: ClusterColumns,
    no_nrt: int,
    per_node: Callable[[int], int],
) -> list[int]:
    """Extender scores (0..10) of a Guaranteed *pod* under LeastNUMANodes, per name."""
    scores = np.full(len(names), no_nrt, dtype=np.int64)
    known, rows = _rows(columns, names)
    policy, _ = columns.meta(rows)
    eligible = policy >= 0
    if eligible.any():
        plugin = least_numa_plugin(pod, rows[eligible], columns)
        scores[known[eligible]] = (np.clip(plugin, 0, 100) * 10 + 50) // 100
    for pos in known[~eligible].tolist():
        scores[pos] = per_node(pos)
    out: list[int] = scores.tolist()
    return out
