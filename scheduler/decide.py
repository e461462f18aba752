"""One filter or prioritize request through the per-row result caches.

:func:`cached_filter` and :func:`cached_scores` map the candidate names to cluster rows
(one dict lookup each), serve every row whose :class:`~scheduler.results.RowTable`
entry still carries the row's current generation, and hand only the stale rows to the
vectorised batch code (:mod:`scheduler.batch`), which itself sends what the columns
cannot hold to the per-node path. Fresh results are written back before the answer is
assembled. Names without an NRT object pass the filter and get the no-data score.

:class:`FilterAnswer` keeps the verdict per position and the cached reasons, and
gives the reply either as Python values or as the ``nodeCacheCapable`` JSON reply,
joined from the reasons' pre-encoded members.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress

import numpy as np

from scheduler.batch import filter_batch
from scheduler.columns import WIRE_WIDTH, ClusterColumns, IntArray
from scheduler.results import RejectText, RowTable
from scheduler.views import CompiledPod

__all__ = [
    "EXTRA_REFRESH",
    "SMALL_REFRESH",
    "FilterAnswer",
    "ScoreAnswer",
    "cached_filter",
    "cached_scores",
    "constant_scores",
    "warm_filter",
    "warm_scores",
]

PASS, FAIL, UNRESOLVABLE = 1, 0, -1
#: node name -> (fits, message, unresolvable): the per-node verdict.
PerNode = Callable[[str], tuple[bool, str, bool]]
#: names of stale candidates -> their scores.
ScoreRows = Callable[[list[str]], list[int]]
#: (rows, their names) -> (value per row, reasons by row for rejected rows).
Compute = Callable[[IntArray, list[str]], tuple[IntArray, dict[int, RejectText]]]
#: Stale rows at most this many are recomputed node by node (cheaper than the
#: vectorised pass for them); more go to one vectorised pass, with up to
#: :data:`EXTRA_REFRESH` other stale rows of the cluster.
SMALL_REFRESH = 16
#: Other stale rows of the cluster recomputed beside the wanted ones in a vectorised
#: pass: a new shape's tables fill over its first few requests (5,000 nodes, 500 names:
#: about five) and no single request pays for the whole cluster.
EXTRA_REFRESH = 128


@dataclass(frozen=True, slots=True)
class FilterAnswer:
    """Per candidate position: the verdict (1 pass, 0 fail, -1 unresolvable) and, for
    the rejected ones, the reason."""

    names: Sequence[str]
    verdict: IntArray
    reasons: Mapping[int, RejectText]
    rows: IntArray
    layout: int
    columns: ClusterColumns
    #: More than the small-refresh count of the candidates were stale: the shape's table
    #: is still filling (or the cluster changed a lot), so idle time should fill the rest.
    incomplete: bool = False

    def passed(self) -> list[str]:
        return list(compress(self.names, (self.verdict == PASS).tolist()))

    def rejected(self, unresolvable: bool) -> list[int]:
        """Positions rejected as unresolvable (or as failed), in request order."""
        return [p for p, r in sorted(self.reasons.items()) if r.unresolvable == unresolvable]

    def outcome(self) -> tuple[list[str], dict[str, str], dict[str, str]]:
        """(survivors, failed name -> reason, unresolvable name -> reason)."""
        failed = {self.names[p]: self.reasons[p].message for p in self.rejected(False)}
        unres = {self.names[p]: self.reasons[p].message for p in self.rejected(True)}
        return self.passed(), failed, unres

    def encode(self) -> bytes:
        """The filter reply for a ``NodeNames`` request, as compact JSON bytes (the same
        keys, order and values as :func:`scheduler.wire.filter_result`)."""
        failed = b",".join(self.reasons[p].member for p in self.rejected(False))
        unres = b",".join(self.reasons[p].member for p in self.rejected(True))
        return b"".join(
            (
                b'{"FailedNodes":{',
                failed,
                b'},"FailedAndUnresolvableNodes":{',
                unres,
                b'},"Error":"","NodeNames":',
                self._encoded_passed(),
                b',"Nodes":null}',
            )
        )

    def passed_rows(self) -> tuple[IntArray, int]:
        """The survivors' rows, with the layout they were looked up under."""
        return self.rows[self.verdict == PASS], self.layout

    def _encoded_passed(self) -> bytes:
        """The survivors as a JSON array, joined from the rows' cached quoted names."""
        rows = self.rows[self.verdict == PASS]
        if rows.min(initial=0) >= 0:
            quoted = self.columns.fragments(rows, 0, self.layout)
            if quoted is not None:
                return b"[" + b",".join(quoted) + b"]"
        return json.dumps(self.passed(), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ScoreAnswer:
    """Per candidate position: the extender score (0..10) and the row (-1: no NRT)."""

    names: Sequence[str]
    scores: IntArray
    rows: IntArray
    layout: int
    columns: ClusterColumns
    #: As :attr:`FilterAnswer.incomplete`.
    incomplete: bool = False

    def encode(self, fallback: Callable[[Sequence[str], list[int]], bytes]) -> bytes:
        """The prioritize reply, joined from the rows' cached entries (*fallback* encodes
        from the names when a candidate has no row or rows changed hands)."""
        if (
            self.rows.min(initial=0) >= 0
            and self.scores.min(initial=0) >= 0
            and self.scores.max(initial=0) <= WIRE_WIDTH - 2
        ):
            entries = self.columns.fragments(self.rows, self.scores + 1, self.layout)
            if entries is not None:
                return b"[" + b",".join(entries) + b"]"
        return fallback(self.names, self.scores.tolist())


def _stale(
    columns: ClusterColumns, table: RowTable, names: Sequence[str], rows: IntArray | None = None
) -> tuple[IntArray, IntArray, IntArray, IntArray, dict[int, RejectText]]:
    """(row per position, positions with a row, the values the table holds for them, the
    indexes into those positions that are stale, the reasons served from the table).
    *rows*, when given, are the rows of *names* already looked up."""
    if rows is None:
        rows = columns.rows_of(names)
    known = np.flatnonzero(rows >= 0)
    values, stale, texts = table.lookup(rows[known], columns.generations(rows[known]))
    return rows, known, values, stale, texts


def _cluster_stale(columns: ClusterColumns, table: RowTable) -> tuple[IntArray, list[str], IntArray]:
    """(every row of the cluster, their names, the positions of those *table* holds stale)."""
    all_rows, all_names = columns.live()
    _, stale, _ = table.lookup(all_rows, columns.generations(all_rows))
    return all_rows, all_names, stale


def _filter_compute(compiled: CompiledPod, columns: ClusterColumns, per_node: PerNode, small: int) -> Compute:
    def compute(rows: IntArray, sub: list[str]) -> tuple[IntArray, dict[int, RejectText]]:
        return _compute_filter(compiled, sub, rows, columns, per_node, small)

    return compute


def _score_compute(compute: ScoreRows) -> Compute:
    def rows_compute(rows: IntArray, sub: list[str]) -> tuple[IntArray, dict[int, RejectText]]:
        return np.fromiter(compute(sub), dtype=np.int64, count=len(sub)), {}

    return rows_compute


def _refresh(
    columns: ClusterColumns,
    table: RowTable,
    names: Sequence[str],
    rows_of: IntArray,
    wanted: IntArray,
    compute: Compute,
    small: int,
    extra_budget: int = EXTRA_REFRESH,
) -> tuple[IntArray, IntArray, dict[int, RejectText]]:
    """Recompute the stale *wanted* positions of *names* (rows *rows_of*) and store them;
    returns (their distinct rows sorted, the value of each, reasons by row).

    A few stale rows go to *compute* alone. More than *small* mean the pod
    shape meets many rows for the first time (or the cluster changed a lot): then up to
    *extra* other stale rows of the cluster are recomputed in the same vectorised pass,
    so that later requests naming other subsets of the cluster find them ready, while
    the first request of a shape stays bounded."""
    want_rows, first = np.unique(rows_of[wanted], return_index=True)
    want_names = [names[p] for p in wanted[first].tolist()]
    if len(want_rows) > small and extra_budget > 0:
        all_rows, all_names, stale = _cluster_stale(columns, table)
        extra = np.setdiff1d(all_rows[stale], want_rows, assume_unique=True)[:extra_budget]
        if len(extra):
            index = {r: i for i, r in enumerate(all_rows.tolist())}
            want_names += [all_names[index[r]] for r in extra.tolist()]
            want_rows = np.concatenate((want_rows, extra))
    gens = columns.generations(want_rows)
    values, texts = compute(want_rows, want_names)
    table.store(want_rows, gens, values, texts)
    order = np.argsort(want_rows, kind="stable")
    return want_rows[order], values[order], texts


def _answer(
    columns: ClusterColumns,
    table: RowTable,
    names: Sequence[str],
    compute: Compute,
    small: int,
    rows_hint: IntArray | None = None,
) -> tuple[IntArray, IntArray, IntArray, dict[int, RejectText], bool]:
    """(row per position, positions with a row, their values, reasons by row, whether
    more than *small* of them were stale)."""
    rows, known, values, stale, texts = _stale(columns, table, names, rows_hint)
    if len(stale):
        wanted = known[stale]
        done_rows, done_values, done_texts = _refresh(columns, table, names, rows, wanted, compute, small)
        values[stale] = done_values[np.searchsorted(done_rows, rows[known][stale])]
        texts.update(done_texts)
    return rows, known, values, texts, len(stale) > small


def _warm(columns: ClusterColumns, table: RowTable, compute: Compute, budget: int) -> int:
    """Recompute up to *budget* stale rows of *table*, over the whole cluster (the lowest
    rows first); returns how many stale rows are left."""
    all_rows, all_names, stale = _cluster_stale(columns, table)
    pick = stale[:budget]
    if len(pick):
        rows = all_rows[pick]
        gens = columns.generations(rows)  # before the data is read (see scheduler.results)
        values, texts = compute(rows, [all_names[i] for i in pick.tolist()])
        table.store(rows, gens, values, texts)
    return len(stale) - len(pick)


def warm_filter(
    compiled: CompiledPod,
    columns: ClusterColumns,
    table: RowTable,
    per_node: PerNode,
    budget: int,
    small: int = SMALL_REFRESH,
) -> int:
    """Fill up to *budget* stale rows of *compiled*'s filter table (idle time, no request
    waiting); returns the stale rows left."""
    return _warm(columns, table, _filter_compute(compiled, columns, per_node, small), budget)


def warm_scores(columns: ClusterColumns, table: RowTable, compute: ScoreRows, budget: int) -> int:
    """As :func:`warm_filter`, for a prioritize table (*compute*: names -> scores)."""
    return _warm(columns, table, _score_compute(compute), budget)


def cached_filter(
    compiled: CompiledPod,
    names: Sequence[str],
    columns: ClusterColumns,
    table: RowTable,
    per_node: PerNode,
    small: int = SMALL_REFRESH,
) -> FilterAnswer:
    """Filter *names* for *compiled* (which needs work), recomputing stale rows only:
    up to *small* of them node by node, more in one vectorised pass."""
    compute = _filter_compute(compiled, columns, per_node, small)
    layout = columns.layout
    rows, known, values, texts, incomplete = _answer(columns, table, names, compute, small)
    verdict = np.ones(len(names), dtype=np.int64)
    verdict[known] = values
    bad = np.flatnonzero(verdict <= 0).tolist()
    row_of = rows.tolist() if bad else []
    reasons = {p: texts[row_of[p]] for p in bad}
    return FilterAnswer(names, verdict, reasons, rows, layout, columns, incomplete)


def _compute_filter(
    compiled: CompiledPod,
    names: list[str],
    rows: IntArray,
    columns: ClusterColumns,
    per_node: PerNode,
    small: int,
) -> tuple[IntArray, dict[int, RejectText]]:
    if len(names) <= small:
        found = [per_node(name) for name in names]
        failed = {n: m for n, (fits, m, unres) in zip(names, found, strict=True) if not fits and not unres}
        unresolvable = {n: m for n, (fits, m, unres) in zip(names, found, strict=True) if not fits and unres}
    else:
        out = filter_batch(compiled, names, columns, lambda i: per_node(names[i]))
        failed, unresolvable = out.failed, out.unresolvable
    values = np.full(len(names), PASS, dtype=np.int64)
    texts: dict[int, RejectText] = {}
    if failed or unresolvable:
        index = {name: i for i, name in enumerate(names)}
        row_list = rows.tolist()
        for verdict, table in ((FAIL, failed), (UNRESOLVABLE, unresolvable)):
            for name, message in table.items():
                i = index[name]
                values[i] = verdict
                texts[row_list[i]] = RejectText.build(name, message, verdict == UNRESOLVABLE)
    return values, texts


def cached_scores(
    names: Sequence[str],
    columns: ClusterColumns,
    table: RowTable,
    no_nrt: int,
    compute: ScoreRows,
    small: int = SMALL_REFRESH,
    known_rows: tuple[IntArray, int] | None = None,
) -> ScoreAnswer:
    """Scores of *names*, in order: cached per row, *compute* called for stale rows
    (more than *small* of them: every stale row of the cluster). *known_rows* are the
    rows of *names* with the layout they were looked up under (used while it holds)."""
    rows_compute = _score_compute(compute)

    layout = columns.layout
    rows_hint = None
    if known_rows is not None and known_rows[1] == layout:
        rows_hint = known_rows[0]
    rows, known, values, _, incomplete = _answer(columns, table, names, rows_compute, small, rows_hint)
    scores = np.full(len(names), no_nrt, dtype=np.int64)
    scores[known] = values
    return ScoreAnswer(names, scores, rows, layout, columns, incomplete)


def constant_scores(names: Sequence[str], columns: ClusterColumns, score: int) -> ScoreAnswer:
    """The same *score* for every name (a pod with nothing to align), answered from the
    rows' pre-encoded entries like any other reply."""
    layout = columns.layout
    rows = columns.rows_of(names)
    return ScoreAnswer(names, np.full(len(names), score, dtype=np.int64), rows, layout, columns)
