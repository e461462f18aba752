"""Per-row result caches of the extender: filter verdicts and scores by pod shape.

kube-scheduler asks about the same few pod shapes over and over, against nodes whose
NRT data changes a few rows at a time. A :class:`RowTable` keeps, for one pod shape
(its signature) and one verb, a value per cluster row (see
:class:`~scheduler.columns.ClusterColumns`) together with the row generation it was
computed from. A lookup compares those generations with the rows' current ones in one
vectorised step: only rows whose node changed since (NRT update, reservation, expiry,
a node removed and its row reused) are stale and recomputed; the rest are served from
the table.

Generations are taken *before* the data a value is computed from is read, so a value
is never labelled newer than the data behind it; at worst a fresh value carries an
older label and is recomputed once more. Values and labels are read and written
under the table's lock, as pairs.

Rejected rows also keep their message, and the message already encoded as a JSON
object member (``"node-17":"..."``), so a reply over thousands of candidates is joined
from bytes instead of encoded afresh.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scheduler.columns import IntArray

__all__ = ["MAX_SHAPES", "RejectText", "ResultCache", "RowTable"]

#: Distinct pod shapes whose tables are kept before all of them are dropped.
MAX_SHAPES = 1024


@dataclass(frozen=True, slots=True)
class RejectText:
    """Why a row was rejected: the message, whether preemption cannot help, and the
    ``"node":"message"`` JSON member."""

    message: str
    unresolvable: bool
    member: bytes

    @staticmethod
    def build(node: str, message: str, unresolvable: bool) -> RejectText:
        member = f"{json.dumps(node)}:{json.dumps(message)}".encode()
        return RejectText(message, unresolvable, member)


class RowTable:
    """One value per cluster row, each valid for the row generation stored beside it.
    With *rejects*, rows with a value <= 0 (filter: failed, unresolvable) keep a reason."""

    def __init__(self, *, rejects: bool = False) -> None:
        self._lock = threading.Lock()
        self._rejects = rejects
        self._gen: IntArray = np.full(0, -1, dtype=np.int64)
        self._value: IntArray = np.zeros(0, dtype=np.int64)
        self.texts: dict[int, RejectText] = {}

    def _fit(self, size: int) -> None:
        if size <= len(self._gen):
            return
        grown = max(size, 2 * len(self._gen), 64)
        gen = np.full(grown, -1, dtype=np.int64)
        value = np.zeros(grown, dtype=np.int64)
        gen[: len(self._gen)] = self._gen
        value[: len(self._value)] = self._value
        self._gen, self._value = gen, value

    def lookup(self, rows: IntArray, current: IntArray) -> tuple[IntArray, IntArray, dict[int, RejectText]]:
        """(value per row, positions in *rows* whose value is stale or missing, the
        reasons of the rows served from the table with a value <= 0), read together."""
        with self._lock:
            self._fit(int(rows.max()) + 1 if len(rows) else 0)
            values = self._value[rows]
            fresh = self._gen[rows] == current
            stale = np.flatnonzero(~fresh)
            texts: dict[int, RejectText] = {}
            if self._rejects:
                rejected = rows[fresh & (values <= 0)].tolist()
                texts = {r: self.texts[r] for r in rejected}
        return values, stale, texts

    def store(
        self, rows: IntArray, gens: IntArray, values: IntArray, texts: Mapping[int, RejectText]
    ) -> None:
        """Record *values* for *rows* (computed from data no older than *gens*); *texts*
        holds the reasons of the rejected ones by row."""
        with self._lock:
            self._fit(int(rows.max()) + 1 if len(rows) else 0)
            self._value[rows] = values
            self._gen[rows] = gens
            if not self._rejects:
                return
            for row in rows.tolist():
                text = texts.get(row)
                if text is None:
                    self.texts.pop(row, None)
                else:
                    self.texts[row] = text


class ResultCache:
    """:class:`RowTable` objects by ``(verb, pod signature)``."""

    def __init__(self, max_shapes: int = MAX_SHAPES) -> None:
        self._lock = threading.Lock()
        self._max = max_shapes
        self._tables: dict[tuple[str, object], RowTable] = {}

    def table(self, verb: str, signature: object) -> RowTable:
        key = (verb, signature)
        table = self._tables.get(key)
        if table is not None:
            return table
        with self._lock:
            if len(self._tables) >= self._max:
                self._tables.clear()
            return self._tables.setdefault(key, RowTable(rejects=verb == "filter"))

    def __len__(self) -> int:
        return len(self._tables)
