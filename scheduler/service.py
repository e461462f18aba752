"""The extender's verbs as pure functions of the request and the NRT cache.

:class:`ExtenderCore` answers ``filter``, ``prioritize``, ``bind`` and ``preempt`` with no I/O of its
own: NRT data comes from a :class:`~scheduler.cache.TopologyCache`, and binding goes
through an injected :class:`Binder` (the Kubernetes adapter in production). The HTTP
server is a thin layer over it.

The per-request path is built to stay fast over thousands of node names:

* pods that need no alignment (BestEffort, or non-Guaranteed without devices) pass
  every node with no per-node work;
* a pod is parsed and compiled once per request, then every candidate the NRT
  cache's numpy columns can hold is decided at once (:mod:`scheduler.batch`,
  :mod:`scheduler.fastpath`): ``single-numa-node`` and single-zone ``restricted``
  fits, and the LeastNUMANodes score;
* the rest (more than 8 zones, zones out of id order, multi-zone ``restricted`` fits,
  the other scoring strategies) go node by node, with verdicts and scores cached by
  ``(pod signature, node)`` while the node's view ``generation`` is the same.

``preempt`` keeps the candidate nodes where the pod fits once the proposed victims'
reservations are given back (:mod:`scheduler.preempt`).

Bind re-checks the pod against the node's current view (which includes the
reservations of pods bound since the pod was filtered), so two pods filtered on the
same stale data are never both placed on one exhausted zone: the second bind is
refused and kube-scheduler retries the pod.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from scheduler.admission import admit
from scheduler.batch import filter_batch, least_numa_batch
from scheduler.cache import TopologyCache
from scheduler.columns import ClusterColumns
from scheduler.errors import SchedulerError
from scheduler.pod import PodRequest, parse_pod
from scheduler.preempt import released_view
from scheduler.score import DEFAULT_STRATEGY, Scorer, to_extender_score
from scheduler.strategies import MAX_NODE_SCORE
from scheduler.views import (
    FIT_MODES,
    CompiledPod,
    FastVerdict,
    NodeView,
    compile_pod,
    fast_restricted_fit,
    fast_single_numa_fit,
)
from scheduler.wire import (
    BindRequest,
    ExtenderBindingResult,
    ExtenderFilterResult,
    ExtenderPreemptionResult,
    FilterRequest,
    HostPriority,
    NodeVictims,
    PreemptRequest,
    filter_result,
    preemption_result,
)

__all__ = ["BindError", "Binder", "ExtenderCore", "FilterOutcome"]

_PASS = FastVerdict(True)
#: Distinct pod shapes whose per-node results are kept before all are dropped.
_MAX_SIGNATURES = 1024
_POD_MEMORY = 8192
_T = TypeVar("_T")


class BindError(SchedulerError):
    """Creating the Binding failed; the message is returned to kube-scheduler."""


class Binder(Protocol):
    """Creates the ``pods/binding`` subresource for a pod."""

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None: ...


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """Survivors in request order, and the rejected nodes with their reasons."""

    passed: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


def _pod_key(namespace: str, name: str, uid: str) -> str:
    return uid or f"{namespace}/{name}"


class ExtenderCore:
    """Filter, prioritize and bind over a :class:`TopologyCache`; rules and strategy fixed
    at construction (``fit_mode`` ``kubelet`` or ``nrt-match``)."""

    def __init__(
        self,
        cache: TopologyCache,
        *,
        fit_mode: str = "kubelet",
        strategy: str = DEFAULT_STRATEGY,
        binder: Binder | None = None,
    ) -> None:
        if fit_mode not in FIT_MODES:
            raise SchedulerError(f"fit mode {fit_mode!r} is unknown; valid: {', '.join(FIT_MODES)}")
        self.cache = cache
        self.fit_mode = fit_mode
        self.scorer = Scorer(strategy)
        self.binder = binder
        # signature -> node name -> (view generation, result)
        self._verdicts: dict[object, dict[str, tuple[int, FastVerdict]]] = {}
        self._scores: dict[object, dict[str, tuple[int, int]]] = {}
        self._pods: OrderedDict[str, PodRequest] = OrderedDict()
        self._signatures: dict[tuple[object, ...], int] = {}
        self._lock = threading.Lock()
        self._bind_lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    def _compile(self, pod: PodRequest, mode: str) -> CompiledPod:
        """Compile *pod*, its signature replaced by a small interned id (cheap to hash per node)."""
        compiled = compile_pod(pod, mode)
        with self._lock:
            if len(self._signatures) >= _MAX_SIGNATURES:
                self._signatures.clear()
                self._verdicts.clear()
                self._scores.clear()
            sig_id = self._signatures.setdefault((mode, compiled.signature), len(self._signatures))
        return replace(compiled, signature=(sig_id,))

    def _remember(self, pod: PodRequest) -> None:
        with self._lock:
            for key in {_pod_key(pod.namespace, pod.name, pod.uid), f"{pod.namespace}/{pod.name}"}:
                self._pods[key] = pod
                self._pods.move_to_end(key)
            while len(self._pods) > _POD_MEMORY:
                self._pods.popitem(last=False)

    def parse(self, raw_pod: Any) -> PodRequest:
        pod = parse_pod(raw_pod)
        self._remember(pod)
        return pod

    def verdict(self, compiled: CompiledPod, view: NodeView | None) -> FastVerdict:
        """Whether the node passes, computed afresh (None view: no NRT object, it passes)."""
        if view is None or not compiled.needs_work:
            return _PASS
        policy = view.config.policy
        if compiled.mode == "kubelet" and policy == "restricted":
            return fast_restricted_fit(compiled, view)
        if policy != "single-numa-node":
            return _PASS
        return fast_single_numa_fit(compiled, view)

    def _table(
        self, tables: dict[object, dict[str, tuple[int, _T]]], signature: object
    ) -> dict[str, tuple[int, _T]]:
        with self._lock:
            return tables.setdefault(signature, {})

    def _columns(self) -> ClusterColumns | None:
        fresh = getattr(self.cache, "fresh_columns", None)
        return None if fresh is None else fresh()

    def _cached_verdict(
        self, compiled: CompiledPod, name: str, table: dict[str, tuple[int, FastVerdict]]
    ) -> FastVerdict:
        view = self.cache.view(name)
        if view is None:
            return _PASS
        hit = table.get(name)
        if hit is not None and hit[0] == view.generation:
            return hit[1]
        v = self.verdict(compiled, view)
        table[name] = (view.generation, v)
        return v

    def _cached_score(
        self, pod: PodRequest, name: str, table: dict[str, tuple[int, int]], no_nrt: int
    ) -> int:
        view = self.cache.view(name)
        if view is None:
            return no_nrt
        hit = table.get(name)
        if hit is not None and hit[0] == view.generation:
            return hit[1]
        score = to_extender_score(self.scorer.score(pod, view.nrt))
        table[name] = (view.generation, score)
        return score

    # -------------------------------------------------------------- verbs
    def run_filter(self, pod: PodRequest, names: tuple[str, ...]) -> FilterOutcome:
        compiled = self._compile(pod, self.fit_mode)
        if not compiled.needs_work:
            return FilterOutcome(list(names), {}, {})
        columns = self._columns()
        if columns is not None:
            table = self._table(self._verdicts, compiled.signature)

            def per_node(pos: int) -> tuple[bool, str, bool]:
                v = self._cached_verdict(compiled, names[pos], table)
                return v.fits, v.message, v.unresolvable

            out = filter_batch(compiled, names, columns, per_node)
            return FilterOutcome(out.passed, out.failed, out.unresolvable)
        passed: list[str] = []
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        views = self.cache.views()
        table = self._table(self._verdicts, compiled.signature)
        for name in names:
            view = views.get(name)
            if view is None:
                passed.append(name)
                continue
            hit = table.get(name)
            if hit is not None and hit[0] == view.generation:
                v = hit[1]
            else:
                v = self.verdict(compiled, view)
                table[name] = (view.generation, v)
            if v.fits:
                passed.append(name)
            elif v.unresolvable:
                unresolvable[name] = v.message
            else:
                failed[name] = v.message
        return FilterOutcome(passed, failed, unresolvable)

    def filter(self, request: FilterRequest) -> ExtenderFilterResult:
        """The ``filter`` verb: survivors named the way the request named candidates."""
        pod = self.parse(request.pod)
        outcome = self.run_filter(pod, request.names)
        return filter_result(request, outcome.passed, outcome.failed, outcome.unresolvable)

    def prioritize(self, request: FilterRequest) -> list[HostPriority]:
        """The ``prioritize`` verb: one integer 0..10 per candidate, in request order."""
        pod = self.parse(request.pod)
        scores = self.scores(pod, request.names)
        return [{"Host": n, "Score": s} for n, s in zip(request.names, scores, strict=True)]

    def scores(self, pod: PodRequest, names: tuple[str, ...]) -> list[int]:
        """Extender scores (0..10) of *pod* on *names*, in order."""
        if not pod.guaranteed:
            return [to_extender_score(MAX_NODE_SCORE)] * len(names)
        no_nrt = to_extender_score(self.scorer.score(pod, None))
        table = self._table(self._scores, self._compile(pod, self.fit_mode).signature)
        columns = self._columns()
        if columns is None or self.scorer.strategy != "least-numa-nodes":
            return [self._cached_score(pod, name, table, no_nrt) for name in names]
        return least_numa_batch(
            pod, names, columns, no_nrt, lambda pos: self._cached_score(pod, names[pos], table, no_nrt)
        )

    def bind(self, request: BindRequest) -> ExtenderBindingResult:
        """The ``bind`` verb: re-check on current data, reserve, then create the Binding."""
        key = _pod_key(request.pod_namespace, request.pod_name, request.pod_uid)
        with self._lock:
            pod = self._pods.get(key) or self._pods.get(f"{request.pod_namespace}/{request.pod_name}")
        where = f"pod {request.pod_namespace}/{request.pod_name} on node {request.node}"
        with self._bind_lock:
            held_before = self.cache.holds(key)
            view = self.cache.view(request.node)
            if pod is not None and view is not None and not held_before:
                verdict = self.verdict(self._compile(pod, self.fit_mode), view)
                if not verdict.fits:
                    return {
                        "Error": f"{where} no longer fits (resources reserved since filtering): "
                        f"{verdict.message}"
                    }
                placement = admit(self._compile(pod, "kubelet"), view).placement
                self.cache.reserve(request.node, key, placement)
        if self.binder is not None:
            try:
                self.binder.bind(request.pod_namespace, request.pod_name, request.pod_uid, request.node)
            except BindError as err:
                if not held_before:
                    self.cache.release_pod(key)
                return {"Error": f"binding {where}: {err}"}
        return {"Error": ""}

    def preempt(self, request: PreemptRequest) -> ExtenderPreemptionResult:
        """The ``preempt`` verb: keep the nodes where the pod fits once their victims'
        NUMA holdings are given back; nodes with no victims are dropped."""
        compiled = self._compile(self.parse(request.pod), self.fit_mode)
        held = getattr(self.cache, "reservations", None)
        kept: dict[str, NodeVictims] = {}
        for node, victims in request.victims.items():
            if not victims.uids:
                continue
            view = self.cache.view(node)
            if view is not None and compiled.needs_work:
                uids = set(victims.uids)
                freed = [r.amounts for r in (held(node) if held else []) if r.pod_key in uids]
                if not self.verdict(compiled, released_view(view, freed)).fits:
                    continue
            kept[node] = victims
        return preemption_result(kept)

    def forget_pod(self, namespace: str, name: str, uid: str) -> None:
        """A pod was deleted: drop its reservations and its remembered request."""
        key = _pod_key(namespace, name, uid)
        self.cache.release_pod(key)
        with self._lock:
            self._pods.pop(key, None)
            self._pods.pop(f"{namespace}/{name}", None)
