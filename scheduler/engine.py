"""The fit engine: one interface, a scalar reference and a vectorised implementation.

A :class:`FitEngine` answers the two questions the extender is asked, for one pod over
candidate node names, under one rule set (``kubelet`` or ``nrt-match``) and one scoring
strategy fixed at construction:

* :meth:`FitEngine.filter`: which nodes pass, with a reason per rejected node;
* :meth:`FitEngine.scores`: the extender score (0..10) of every node.

:class:`ScalarEngine` is the reference, node by node, on the shared code: ``kubelet``
runs the node's full Topology Manager (policy and scope, through the hint merge of
:mod:`topology.hints`, :func:`scheduler.admission.admit`), ``nrt-match`` runs
NodeResourceTopologyMatch's :func:`scheduler.filter.fit`, and every strategy scores
through :class:`scheduler.score.Scorer`.

:class:`VectorEngine` decides the same rules over the NRT cache's numpy columns
(:mod:`scheduler.columns`): the single-zone and ``restricted`` filters
(:func:`scheduler.batch.filter_batch`), LeastNUMANodes (:func:`scheduler.batch.least_numa_batch`)
and the three per-zone allocation strategies (:func:`allocation_rows`). Nodes the
columns cannot hold (more than 8 zones, zones out of NUMA id order) and multi-zone
``restricted`` fits go node by node. The property test
``tests/unit/test_extender_engine.py`` keeps the two equal on random clusters and pods,
every mode and strategy.

Per-row result caching (:mod:`scheduler.decide`) wraps the vectorised engine in
:class:`scheduler.service.ExtenderCore`.

DRA claims: a pod that holds devices through allocated claims (*claims*, a
:data:`ClaimLookup` from :class:`scheduler.claim_index.ClaimIndex`) is decided node by node
on the scalar path by both engines (:func:`claim_verdict`): under the ``kubelet`` rules
the claim devices' NUMA hint is merged with the CPU hints (:func:`scheduler.admission.admit`),
so the pod's exclusive CPUs must fit on those NUMA nodes. The columns hold no per-pod
device data, so such pods never take the vectorised path nor its result cache.
``nrt-match`` (the plugin's rules) ignores claims, as the plugin does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scheduler.admission import admit
from scheduler.batch import filter_batch, least_numa_batch
from scheduler.claim_index import ClaimHints
from scheduler.columns import POLICY_CODES, BoolArray, ClusterColumns, Gathered, IntArray
from scheduler.filter import fit
from scheduler.pod import PodRequest, Resources, is_host_level_resource
from scheduler.score import Scorer, to_extender_score
from scheduler.strategies import MAX_NODE_SCORE, MIN_NODE_SCORE, weight_of
from scheduler.views import (
    CompiledPod,
    FastVerdict,
    NodeView,
    compile_pod,
    fast_restricted_fit,
    fast_single_numa_fit,
)
from topology.quantity import CPU

__all__ = [
    "ClaimLookup",
    "FilterOutcome",
    "FitEngine",
    "NodeViews",
    "ScalarEngine",
    "VectorEngine",
    "allocation_rows",
    "claim_verdict",
    "fast_verdict",
    "reference_verdict",
]

_SNN = POLICY_CODES["single-numa-node"]
_PASS = FastVerdict(True)
#: node name -> the hint of the devices the pod holds through claims there (None: none).
ClaimLookup = Callable[[str], ClaimHints | None]


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """Survivors in request order, and the rejected nodes with their reasons."""

    passed: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


class NodeViews(Protocol):
    """What an engine reads: a node's view, and the columns of every view (None: none)."""

    def view(self, node: str) -> NodeView | None: ...

    def fresh_columns(self) -> ClusterColumns | None: ...


class FitEngine(Protocol):
    """Filter and score one pod over candidate names (rules and strategy fixed)."""

    mode: str
    scorer: Scorer

    def filter(
        self, pod: PodRequest, names: Sequence[str], claims: ClaimLookup | None = None
    ) -> FilterOutcome: ...

    def scores(self, pod: PodRequest, names: Sequence[str]) -> list[int]: ...


def _outcome(names: Sequence[str], verdicts: Sequence[FastVerdict]) -> FilterOutcome:
    passed: list[str] = []
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for name, v in zip(names, verdicts, strict=True):
        if v.fits:
            passed.append(name)
        else:
            (unresolvable if v.unresolvable else failed)[name] = v.message
    return FilterOutcome(passed, failed, unresolvable)


# ---------------------------------------------------------------- reference
def reference_verdict(compiled: CompiledPod, view: NodeView | None) -> FastVerdict:
    """The reference decision on one node: kubelet's Topology Manager, or the plugin's fit."""
    if view is None or not compiled.needs_work:
        return _PASS
    if compiled.mode == "kubelet":
        decision = admit(compiled, view)
        return FastVerdict(decision.fits, decision.message, decision.unresolvable)
    pod = compiled.pod
    host_level = {n for c in pod.all_containers() for n in c.requests if is_host_level_resource(n)}
    result = fit(pod, view.nrt, view.reported | host_level)
    return FastVerdict(result.fits, "" if result.fits else f"{result.reason}: {result.detail}")


def claim_verdict(compiled: CompiledPod, view: NodeView | None, claims: ClaimHints | None) -> FastVerdict:
    """The decision for a pod holding claim devices on the node (the scalar path): kubelet's
    Topology Manager with the claim hint merged in; without a hint, the reference verdict."""
    if claims is None or view is None or not compiled.needs_work or compiled.mode != "kubelet":
        return reference_verdict(compiled, view)
    decision = admit(compiled, view, claims)
    return FastVerdict(decision.fits, decision.message, decision.unresolvable)


def _claim_outcome(
    compiled: CompiledPod, views: NodeViews, names: Sequence[str], claims: ClaimLookup
) -> FilterOutcome:
    return _outcome(names, [claim_verdict(compiled, views.view(n), claims(n)) for n in names])


class ScalarEngine:
    """The reference engine: every node on its own, through the shared per-node code."""

    def __init__(self, views: NodeViews, *, mode: str, scorer: Scorer) -> None:
        self.views = views
        self.mode = mode
        self.scorer = scorer

    def filter(
        self, pod: PodRequest, names: Sequence[str], claims: ClaimLookup | None = None
    ) -> FilterOutcome:
        compiled = compile_pod(pod, self.mode)
        if claims is not None:
            return _claim_outcome(compiled, self.views, names, claims)
        return _outcome(names, [reference_verdict(compiled, self.views.view(n)) for n in names])

    def scores(self, pod: PodRequest, names: Sequence[str]) -> list[int]:
        out = []
        for name in names:
            view = self.views.view(name)
            out.append(to_extender_score(self.scorer.score(pod, None if view is None else view.nrt)))
        return out


# --------------------------------------------------------------- vectorised
def fast_verdict(compiled: CompiledPod, view: NodeView | None) -> FastVerdict:
    """The per-node fast decision (the vectorised engine's fallback and bind re-check)."""
    if view is None or not compiled.needs_work:
        return _PASS
    policy = view.config.policy
    if (
        compiled.mode == "kubelet"
        and policy != "none"
        and len(view.zones) > max(view.config.max_numa_nodes, 8)
    ):
        return reference_verdict(compiled, view)  # kubelet cannot run the policy here: admit says why
    if compiled.mode == "kubelet" and policy == "restricted":
        return fast_restricted_fit(compiled, view)
    if policy != "single-numa-node":
        return _PASS
    return fast_single_numa_fit(compiled, view)


def _value(name: str, amounts: IntArray) -> IntArray:
    """Canonical amounts -> integer values (millicores round up to whole CPUs)."""
    return -(-amounts // 1000) if name == CPU else amounts


def _zone_scores(strategy: str, request: Resources, g: Gathered, scorer: Scorer) -> IntArray:
    """n x slots per-zone scores of *request* (the formulas of :mod:`scheduler.strategies`)."""
    n, slots = g.self_dist.shape
    if not request:
        empty = MIN_NODE_SCORE if strategy == "most-allocated" else MAX_NODE_SCORE
        return np.full((n, slots), empty, dtype=np.int64)
    if strategy == "balanced-allocation":
        return _balanced(request, g)
    total = np.zeros((n, slots), dtype=np.int64)
    weight_sum = 0
    for name, amount in request.items():
        col = g.column(name)
        avail = np.zeros((n, slots), dtype=np.int64) if col is None else np.maximum(g.avail[col], 0)
        cap = _value(name, avail)
        req = int(_value(name, np.array(amount, dtype=np.int64)))
        ok = (avail != 0) & (amount <= avail)
        safe = np.where(ok, cap, 1)
        if strategy == "most-allocated":
            per = np.where(ok, req * MAX_NODE_SCORE // safe, 0)
        else:
            per = np.where(ok, (safe - req) * MAX_NODE_SCORE // safe, 0)
        w = weight_of(scorer.weights, name)
        total += per * w
        weight_sum += w
    return total // weight_sum


def _balanced(request: Resources, g: Gathered) -> IntArray:
    """``(1 - sample variance(r/a))·100``, the float operations in the scalar order."""
    n, slots = g.self_dist.shape
    fractions = []
    over = np.zeros((n, slots), dtype=np.bool_)
    for name, amount in request.items():
        col = g.column(name)
        avail = np.zeros((n, slots), dtype=np.int64) if col is None else np.maximum(g.avail[col], 0)
        cap = _value(name, avail)
        req = float(_value(name, np.array(amount, dtype=np.int64)))
        frac = np.where(cap == 0, 1.0, req / np.where(cap == 0, 1, cap))
        over |= frac > 1
        fractions.append(frac)
    count = len(fractions)
    if count < 2:
        variance = np.zeros((n, slots), dtype=np.float64)
    else:
        mean = fractions[0] + 0.0
        for frac in fractions[1:]:
            mean = mean + frac
        mean = mean / count
        ss = np.zeros((n, slots), dtype=np.float64)
        comp = np.zeros((n, slots), dtype=np.float64)
        for frac in fractions:
            d = frac - mean
            ss = ss + d * d
            comp = comp + d
        variance = (ss - comp * comp / count) / (count - 1)
    score = np.trunc((1 - variance) * MAX_NODE_SCORE).astype(np.int64)
    return np.where(over, MIN_NODE_SCORE, score)


def _min_nonzero(zone: IntArray, valid: BoolArray) -> IntArray:
    """Per row: the smallest non-zero score of a valid zone (0 when none)."""
    usable = valid & (zone != 0)
    worst = np.where(usable, zone, MAX_NODE_SCORE + 1).min(axis=1)
    return np.where(usable.any(axis=1), worst, MIN_NODE_SCORE)


def allocation_rows(pod: PodRequest, scorer: Scorer, g: Gathered) -> IntArray:
    """Plugin scores (0..100) of a Guaranteed *pod* on the rows of *g* under a per-zone
    strategy: 0 off ``single-numa-node``; pod scope rates the worst fitting zone, container
    scope the mean over every container of its worst fitting zone."""
    n, slots = g.self_dist.shape
    valid = np.arange(slots)[None, :] < g.nzones[:, None]
    pod_scope = _min_nonzero(_zone_scores(scorer.strategy, pod.effective_request(), g, scorer), valid)
    containers = pod.all_containers()
    if containers:
        total = np.zeros(n, dtype=np.int64)
        for c in containers:
            total += _min_nonzero(_zone_scores(scorer.strategy, c.requests, g, scorer), valid)
        container_scope = total // len(containers)
    else:
        container_scope = np.full(n, MAX_NODE_SCORE, dtype=np.int64)
    out = np.where(g.scope_pod, pod_scope, container_scope)
    return np.clip(np.where(g.policy == _SNN, out, MIN_NODE_SCORE), MIN_NODE_SCORE, MAX_NODE_SCORE)


class VectorEngine:
    """The same rules over the cache's numpy columns; node by node where they cannot hold."""

    def __init__(self, views: NodeViews, *, mode: str, scorer: Scorer) -> None:
        self.views = views
        self.mode = mode
        self.scorer = scorer

    def filter(
        self, pod: PodRequest, names: Sequence[str], claims: ClaimLookup | None = None
    ) -> FilterOutcome:
        compiled = compile_pod(pod, self.mode)
        if claims is not None:
            return _claim_outcome(compiled, self.views, names, claims)  # the scalar path
        return self.filter_compiled(compiled, names)

    def filter_compiled(self, compiled: CompiledPod, names: Sequence[str]) -> FilterOutcome:
        columns = self.views.fresh_columns()
        if not compiled.needs_work:
            return FilterOutcome(list(names), {}, {})
        if columns is None:
            return _outcome(names, [fast_verdict(compiled, self.views.view(n)) for n in names])

        def per_node(pos: int) -> tuple[bool, str, bool]:
            v = fast_verdict(compiled, self.views.view(names[pos]))
            return v.fits, v.message, v.unresolvable

        out = filter_batch(compiled, names, columns, per_node)
        return FilterOutcome(out.passed, out.failed, out.unresolvable)

    def no_nrt_score(self, pod: PodRequest) -> int:
        return to_extender_score(self.scorer.score(pod, None))

    def node_score(self, pod: PodRequest, name: str) -> int:
        view = self.views.view(name)
        return to_extender_score(self.scorer.score(pod, None if view is None else view.nrt))

    def scores(self, pod: PodRequest, names: Sequence[str]) -> list[int]:
        if not pod.guaranteed:
            return [to_extender_score(MAX_NODE_SCORE)] * len(names)
        columns = self.views.fresh_columns()
        no_nrt = self.no_nrt_score(pod)
        if columns is None:
            return [self.node_score(pod, n) for n in names]
        if self.scorer.strategy == "least-numa-nodes":
            return least_numa_batch(pod, names, columns, no_nrt, lambda i: self.node_score(pod, names[i]))
        scores = np.full(len(names), no_nrt, dtype=np.int64)
        rows = columns.rows_of(names)
        known = np.flatnonzero(rows >= 0)
        policy, _ = columns.meta(rows[known])
        eligible = policy >= 0
        if eligible.any():
            request_names = [n for c in pod.all_containers() for n in c.requests]
            g = columns.gather(rows[known[eligible]], request_names)
            plugin = allocation_rows(pod, self.scorer, g)
            scores[known[eligible]] = (plugin * 10 + 50) // 100
        for pos in known[~eligible].tolist():
            scores[pos] = self.node_score(pod, names[pos])
        out: list[int] = scores.tolist()
        return out
