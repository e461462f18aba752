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
  the other scoring strategies) go node by node;
* every verdict and score is kept per (pod shape, cluster row) for the row's current
  generation (:mod:`scheduler.results`, :mod:`scheduler.decide`): a request recomputes
  only the rows whose node changed since the shape was last seen;
* :meth:`ExtenderCore.filter_json` and :meth:`ExtenderCore.prioritize_json` give the
  replies as JSON bytes joined from pre-encoded per-node fragments.

``preempt`` keeps the candidate nodes where the pod fits once the proposed victims'
reservations are given back (:mod:`scheduler.preempt`).

Bind re-checks the pod against the node's current view (which includes the
reservations of pods bound since the pod was filtered), so two pods filtered on the
same stale data are never both placed on one exhausted zone: the second bind is
refused and kube-scheduler retries the pod.

DRA claims (:mod:`scheduler.claim_index`, mirrored into :attr:`ExtenderCore.claims` by the
sources): a pod holding devices of ``gpu.topolet.io`` through allocated claims is filtered
node by node with the devices' NUMA hint merged into its exclusive CPUs' hints
(:func:`scheduler.engine.claim_verdict`; ``kubelet`` rules only), and bind reserves its
CPUs on those NUMA nodes. Claims are usually allocated only after ``/filter`` (in
kube-scheduler's Reserve/PreBind), so the hint mostly acts at ``/bind``, where claims the
watch has not shown allocated yet are read from the API first. Unallocated claims give no
hint. Scores ignore claims.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from scheduler.admission import admit
from scheduler.cache import TopologyCache
from scheduler.claim_index import ClaimHints, ClaimIndex
from scheduler.claim_objects import PodClaims, pod_claims
from scheduler.columns import ClusterColumns, IntArray
from scheduler.decide import (
    SMALL_REFRESH,
    FilterAnswer,
    ScoreAnswer,
    cached_filter,
    cached_scores,
    constant_scores,
    warm_filter,
    warm_scores,
)
from scheduler.engine import ClaimLookup, VectorEngine, claim_verdict, fast_verdict
from scheduler.errors import SchedulerConfigError, SchedulerError
from scheduler.pod import PodRequest, parse_pod
from scheduler.preempt import released_view
from scheduler.results import ResultCache
from scheduler.score import DEFAULT_STRATEGY, Scorer, to_extender_score
from scheduler.strategies import MAX_NODE_SCORE
from scheduler.views import (
    FIT_MODES,
    CompiledPod,
    FastVerdict,
    NodeView,
    compile_pod,
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
    PriorityEncoder,
    filter_result,
    preemption_result,
)

log = logging.getLogger(__name__)

__all__ = ["NO_BINDER", "WARM_ROWS", "BindError", "Binder", "EncodedFilter", "ExtenderCore", "FilterOutcome"]

_PASS = FastVerdict(True)
#: Distinct pod shapes remembered before the id table is dropped (ids are never reused).
_MAX_SIGNATURES = 1024
_POD_MEMORY = 8192
#: Pods whose last filter survivors are kept for their prioritize call.
_SURVIVORS = 64
#: Stale rows one idle-time :meth:`ExtenderCore.warm` step recomputes (about 0.5 ms here:
#: what a request arriving meanwhile may wait).
WARM_ROWS = 128
#: Shape tables waiting to be filled in idle time; the oldest are forgotten beyond this.
_WARM_SHAPES = 64
#: (current columns, row budget) -> stale rows left: one idle-time step for one table.
_WarmStep = Callable[[ClusterColumns, int], int]
#: Why ``/bind`` is refused by an extender built without a binder (``--nrt-dir``).
NO_BINDER = (
    "this extender has no binder (it reads NRT objects from --nrt-dir and has no Kubernetes API); "
    "remove bindVerb from the KubeSchedulerConfiguration extender so that kube-scheduler binds"
)


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


@dataclass(frozen=True, slots=True)
class EncodedFilter:
    """A filter reply as JSON bytes, with how many nodes passed, failed, were unresolvable."""

    body: bytes
    passed: int
    failed: int
    unresolvable: int


def _pod_key(namespace: str, name: str, uid: str) -> str:
    return uid or f"{namespace}/{name}"


class ExtenderCore:
    """Filter, prioritize and bind over a :class:`TopologyCache`; rules and strategy fixed
    at construction (``fit_mode`` ``kubelet`` or ``nrt-match``)."""

    @property
    def ready(self) -> bool:
        """The NRT objects are listed (see :attr:`synced`)."""
        return self.synced is None or self.synced.is_set()

    def __init__(
        self,
        cache: TopologyCache,
        *,
        fit_mode: str = "kubelet",
        strategy: str = DEFAULT_STRATEGY,
        binder: Binder | None = None,
        small_refresh: int = SMALL_REFRESH,
    ) -> None:
        if fit_mode not in FIT_MODES:
            raise SchedulerConfigError(f"fit mode {fit_mode!r} is unknown; valid: {', '.join(FIT_MODES)}")
        self.cache = cache
        self.fit_mode = fit_mode
        self.scorer = Scorer(strategy)
        #: The vectorised fit engine (uncached); the result tables below wrap it.
        self.engine = VectorEngine(cache, mode=fit_mode, scorer=self.scorer)
        self.binder = binder
        #: Allocated DRA claims and slice NUMA nodes (fed by the sources' watches).
        self.claims = ClaimIndex()
        #: When set, binds go here instead (a worker process hands them to the
        #: coordinator that holds the reservations: :mod:`scheduler.workers`).
        self.bind_route: Callable[[BindRequest], ExtenderBindingResult] | None = None
        #: When set, called with every filtered pod object (the coordinator learns pods).
        self.on_filter: Callable[[Mapping[str, Any]], None] | None = None
        #: Set once the NRT source has listed every object (None: the source is ready at
        #: once, e.g. files read before serving). Until then a node without NRT data would
        #: pass every filter, so /filter answers an error and /readyz 503.
        self.synced: threading.Event | None = None
        self._results = ResultCache()
        # pod key -> (survivor names, their rows, layout) of its last filter: prioritize
        # names exactly those, so their rows need no second lookup.
        self._survivors: OrderedDict[str, tuple[tuple[str, ...], tuple[IntArray, int]]] = OrderedDict()
        #: Stale rows up to this many are recomputed node by node, more in one vectorised pass.
        self.small_refresh = small_refresh
        self._priorities = PriorityEncoder()
        self._next_signature = 0
        self._pods: OrderedDict[str, PodRequest] = OrderedDict()
        # pod key -> its DRA claims (pods that have some)
        self._pod_claims: OrderedDict[str, PodClaims] = OrderedDict()
        self._signatures: dict[tuple[object, ...], int] = {}
        # pod keys seen unbound by the pod watch (insertion-ordered set).
        self._pending: OrderedDict[str, None] = OrderedDict()
        # the newest creationTimestamp of the pod watch's first list: a pod created later
        # and first seen already bound (created with spec.nodeName) is not in NRT data yet
        self._listed_until = ""
        # pod key -> the node this extender bound it to (a second bind is refused).
        self._bound: OrderedDict[str, str] = OrderedDict()
        # (verb, shape) -> one step filling its table: shapes whose last request found
        # many stale rows, most recent last (see warm()).
        self._warming: OrderedDict[tuple[str, object], _WarmStep] = OrderedDict()
        self._lock = threading.Lock()
        self._bind_lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    def _compile(self, pod: PodRequest, mode: str) -> CompiledPod:
        """Compile *pod*, its signature replaced by a small interned id (cheap to hash per node)."""
        compiled = compile_pod(pod, mode)
        with self._lock:
            if len(self._signatures) >= _MAX_SIGNATURES:
                self._signatures.clear()  # ids are never reused: old tables just go cold
            sig_id = self._signatures.get((mode, compiled.signature))
            if sig_id is None:
                sig_id = self._signatures[(mode, compiled.signature)] = self._next_signature
                self._next_signature += 1
        return replace(compiled, signature=(sig_id,))

    def _remember(self, pod: PodRequest, claims: PodClaims | None = None) -> None:
        with self._lock:
            for key in {_pod_key(pod.namespace, pod.name, pod.uid), f"{pod.namespace}/{pod.name}"}:
                self._pods[key] = pod
                self._pods.move_to_end(key)
                if claims is None:
                    self._pod_claims.pop(key, None)
                else:
                    self._pod_claims[key] = claims
                    self._pod_claims.move_to_end(key)
            while len(self._pods) > _POD_MEMORY:
                self._pods.popitem(last=False)
            while len(self._pod_claims) > _POD_MEMORY:
                self._pod_claims.popitem(last=False)

    def parse(self, raw_pod: Any) -> PodRequest:
        """Parse and remember a pod with its DRA claims (errors: :class:`PodSpecError`)."""
        pod = parse_pod(raw_pod)
        self._remember(pod, pod_claims(raw_pod))
        return pod

    def _claims_of(self, pod: PodRequest) -> PodClaims | None:
        with self._lock:
            return self._pod_claims.get(_pod_key(pod.namespace, pod.name, pod.uid))

    def claim_lookup(self, pod: PodRequest) -> ClaimLookup | None:
        """Node -> the claim hint, when *pod* holds allocated claim devices (kubelet rules)."""
        claims = self._claims_of(pod)
        if self.fit_mode != "kubelet" or not self.claims.holds_devices(claims):
            return None
        return lambda node: self.claims.hints(claims, node)

    def verdict(self, compiled: CompiledPod, view: NodeView | None) -> FastVerdict:
        """Whether the node passes, computed afresh (None view: no NRT object, it passes)."""
        return fast_verdict(compiled, view)

    def _columns(self) -> ClusterColumns | None:
        return self.cache.fresh_columns()

    def _per_node_verdict(self, compiled: CompiledPod, name: str) -> tuple[bool, str, bool]:
        v = self.verdict(compiled, self.cache.view(name))
        return v.fits, v.message, v.unresolvable

    def _per_node_score(self, pod: PodRequest, name: str, no_nrt: int) -> int:
        view = self.cache.view(name)
        return no_nrt if view is None else to_extender_score(self.scorer.score(pod, view.nrt))

    # -------------------------------------------------------------- verbs
    def filter_answer(self, pod: PodRequest, names: Sequence[str]) -> FilterAnswer | None:
        """The cached, vectorised filter; None when the pod needs no work or the cache
        has no columns (then :meth:`run_filter` decides node by node)."""
        compiled = self._compile(pod, self.fit_mode)
        columns = self._columns()
        if not compiled.needs_work or columns is None:
            return None
        table = self._results.table("filter", compiled.signature)

        def per_node(name: str) -> tuple[bool, str, bool]:
            return self._per_node_verdict(compiled, name)

        answer = cached_filter(compiled, names, columns, table, per_node, self.small_refresh)
        if answer.incomplete:

            def step(fresh: ClusterColumns, budget: int) -> int:
                return warm_filter(compiled, fresh, table, per_node, budget)

            self._want_warming(("filter", compiled.signature), step)
        return answer

    def _want_warming(self, key: tuple[str, object], step: _WarmStep) -> None:
        with self._lock:
            self._warming[key] = step
            self._warming.move_to_end(key)
            while len(self._warming) > _WARM_SHAPES:
                self._warming.popitem(last=False)

    def warming_pending(self) -> bool:
        """Whether some shape table waits to be filled (see :meth:`warm`)."""
        return bool(self._warming)

    def warm(self, budget: int = WARM_ROWS) -> bool:
        """Recompute up to *budget* stale rows of the shape most recently found with many
        (a new shape's first requests fill only the rows they name, plus some), so that
        later requests naming other nodes find them ready. The server calls this while no
        request is in flight; returns whether more such work is left."""
        with self._lock:
            if not self._warming:
                return False
            key, step = next(reversed(self._warming.items()))
        columns = self._columns()
        left = 0 if columns is None else step(columns, budget)
        with self._lock:
            if left <= 0 and self._warming.get(key) is step:
                del self._warming[key]
                log.debug("idle time has filled the %s table of pod shape %s", *key)
            return bool(self._warming)

    def run_filter(self, pod: PodRequest, names: tuple[str, ...]) -> FilterOutcome:
        lookup = self.claim_lookup(pod)
        if lookup is not None:  # claim devices: node by node, uncached
            out = self.engine.filter(pod, names, lookup)
            return FilterOutcome(out.passed, out.failed, out.unresolvable)
        answer = self.filter_answer(pod, names)
        if answer is not None:
            return FilterOutcome(*answer.outcome())
        compiled = self._compile(pod, self.fit_mode)
        if not compiled.needs_work:
            return FilterOutcome(list(names), {}, {})
        passed: list[str] = []
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        for name in names:
            fits, message, unres = self._per_node_verdict(compiled, name)
            if fits:
                passed.append(name)
            else:
                (unresolvable if unres else failed)[name] = message
        return FilterOutcome(passed, failed, unresolvable)

    def filter(self, request: FilterRequest) -> ExtenderFilterResult:
        """The ``filter`` verb: survivors named the way the request named candidates."""
        pod = self.parse(request.pod)
        if self.on_filter is not None:
            self.on_filter(request.pod)
        outcome = self.run_filter(pod, request.names)
        return filter_result(request, outcome.passed, outcome.failed, outcome.unresolvable)

    def filter_json(self, request: FilterRequest) -> EncodedFilter:
        """The ``filter`` verb's reply as JSON bytes; a ``NodeNames`` reply is joined from
        cached per-node fragments."""
        pod = self.parse(request.pod)
        if self.on_filter is not None:
            self.on_filter(request.pod)
        if request.node_cache_capable and self.claim_lookup(pod) is None:
            answer = self.filter_answer(pod, request.names)
            if answer is not None:
                self._keep_survivors(pod, answer)
                failed = len(answer.reasons)
                unres = len(answer.rejected(True))
                return EncodedFilter(answer.encode(), len(request.names) - failed, failed - unres, unres)
        out = self.run_filter(pod, request.names)
        result = filter_result(request, out.passed, out.failed, out.unresolvable)
        body = json.dumps(result, separators=(",", ":")).encode()
        return EncodedFilter(body, len(out.passed), len(out.failed), len(out.unresolvable))

    def _keep_survivors(self, pod: PodRequest, answer: FilterAnswer) -> None:
        with self._lock:
            self._survivors[_pod_key(pod.namespace, pod.name, pod.uid)] = (
                tuple(answer.passed()),
                answer.passed_rows(),
            )
            while len(self._survivors) > _SURVIVORS:
                self._survivors.popitem(last=False)

    def _survivor_rows(self, pod: PodRequest, names: Sequence[str]) -> tuple[IntArray, int] | None:
        with self._lock:
            hit = self._survivors.get(_pod_key(pod.namespace, pod.name, pod.uid))
        if hit is None or len(hit[0]) != len(names) or hit[0] != tuple(names):
            return None
        return hit[1]

    def prioritize(self, request: FilterRequest) -> list[HostPriority]:
        """The ``prioritize`` verb: one integer 0..10 per candidate, in request order."""
        pod = self.parse(request.pod)
        scores = self.scores(pod, request.names)
        return [{"Host": n, "Score": s} for n, s in zip(request.names, scores, strict=True)]

    def prioritize_json(self, request: FilterRequest) -> bytes:
        """The ``prioritize`` verb's reply as JSON bytes, from pre-encoded entries."""
        pod = self.parse(request.pod)
        answer = self._score_answer(pod, request.names)
        if isinstance(answer, ScoreAnswer):
            return answer.encode(self._priorities.encode)
        return self._priorities.encode(request.names, answer)

    def scores(self, pod: PodRequest, names: Sequence[str]) -> list[int]:
        """Extender scores (0..10) of *pod* on *names*, in order."""
        answer = self._score_answer(pod, names)
        if isinstance(answer, ScoreAnswer):
            out: list[int] = answer.scores.tolist()
            return out
        return answer

    def _score_answer(self, pod: PodRequest, names: Sequence[str]) -> ScoreAnswer | list[int]:
        columns = self._columns()
        if not pod.guaranteed:
            top = to_extender_score(MAX_NODE_SCORE)
            return [top] * len(names) if columns is None else constant_scores(names, columns, top)
        no_nrt = to_extender_score(self.scorer.score(pod, None))
        if columns is None:
            return [self._per_node_score(pod, name, no_nrt) for name in names]
        signature = self._compile(pod, self.fit_mode).signature
        table = self._results.table("prioritize", signature)

        def compute(sub: list[str]) -> list[int]:
            if len(sub) <= self.small_refresh:
                return [self._per_node_score(pod, name, no_nrt) for name in sub]
            return self.engine.scores(pod, sub)

        known = self._survivor_rows(pod, names)
        answer = cached_scores(names, columns, table, no_nrt, compute, self.small_refresh, known)
        if answer.incomplete:

            def step(fresh: ClusterColumns, budget: int) -> int:
                return warm_scores(fresh, table, compute, budget)

            self._want_warming(("prioritize", signature), step)
        return answer

    def bind(self, request: BindRequest) -> ExtenderBindingResult:
        """The ``bind`` verb: refuse when this extender cannot bind or the pod is already
        bound; else re-check on current data, reserve, then create the Binding."""
        if self.bind_route is not None:
            return self.bind_route(request)
        key = _pod_key(request.pod_namespace, request.pod_name, request.pod_uid)
        where = f"pod {request.pod_namespace}/{request.pod_name} on node {request.node}"
        if self.binder is None:
            return {"Error": f"cannot bind {where}: {NO_BINDER}"}
        with self._lock:
            pod = self._pods.get(key) or self._pods.get(f"{request.pod_namespace}/{request.pod_name}")
            claims = self._pod_claims.get(key) or self._pod_claims.get(
                f"{request.pod_namespace}/{request.pod_name}"
            )
        if claims is not None:
            self.claims.refresh(claims)  # PreBind has just written the allocation
        hints = self.claims.hints(claims, request.node)
        with self._bind_lock:  # check, reserve and claim the pod at once; not the API call
            bound = self._bound.get(key)
            if bound is not None:
                return {"Error": f"cannot bind {where}: the pod is already bound to node {bound}"}
            view = self.cache.view(request.node)
            reserved = False
            if pod is not None and view is not None:
                verdict = self._bind_verdict(self._compile(pod, self.fit_mode), view, hints)
                if not verdict.fits:
                    return {
                        "Error": f"{where} no longer fits (resources reserved since filtering): "
                        f"{verdict.message}"
                    }
                placement = admit(self._compile(pod, "kubelet"), view, hints).placement
                self.cache.reserve(request.node, key, placement)
                reserved = True
            self._bound[key] = request.node  # a second bind of this pod is refused from here on
            while len(self._bound) > _POD_MEMORY:
                self._bound.popitem(last=False)
        try:  # outside the lock: binds of other pods go on while this one waits on the API server
            self.binder.bind(request.pod_namespace, request.pod_name, request.pod_uid, request.node)
        except BindError as err:
            with self._bind_lock:
                if self._bound.get(key) == request.node:
                    del self._bound[key]
                if reserved:
                    self.cache.release_pod(key)
            return {"Error": f"binding {where}: {err}"}
        return {"Error": ""}

    def _bind_verdict(self, compiled: CompiledPod, view: NodeView, hints: ClaimHints | None) -> FastVerdict:
        if hints is None or compiled.mode != "kubelet":
            return self.verdict(compiled, view)
        return claim_verdict(compiled, view, hints)

    def preempt(self, request: PreemptRequest) -> ExtenderPreemptionResult:
        """The ``preempt`` verb: keep the nodes where the pod fits once their victims'
        NUMA holdings are given back; nodes with no victims are dropped."""
        compiled = self._compile(self.parse(request.pod), self.fit_mode)
        kept: dict[str, NodeVictims] = {}
        for node, victims in request.victims.items():
            if not victims.uids:
                continue
            view = self.cache.view(node)
            if view is not None and compiled.needs_work:
                uids = set(victims.uids)
                freed = [r.amounts for r in self.cache.reservations(node) if r.pod_key in uids]
                if not self.verdict(compiled, released_view(view, freed)).fits:
                    continue
            kept[node] = victims
        return preemption_result(kept)

    def pod_seen(self, raw_pod: Mapping[str, Any], *, deleted: bool = False, listed: bool = False) -> None:
        """A pod watch event (any scheduler's pod): account what the NRT data cannot show yet.

        * deleted, or finished (``Succeeded``/``Failed``): its reservations end;
        * not bound yet: remembered as pending;
        * bound to a node while this extender holds it on another node: the reservation
          moves to the pod's real node;
        * bound, held nowhere, and either seen pending before (bound since this extender
          has been watching, by any scheduler) or created after the watch's first list
          (*listed* marks that list's pods; a later pod first seen bound was created with
          ``spec.nodeName``): reserved on its node where kubelet would place it, until
          that node's NRT object accounts for it (or the timeout passes).

        Pods already bound in the first list are taken as counted by their node's NRT data,
        and so are pods created in the same second as its newest (``creationTimestamp``
        has whole seconds).
        """
        meta = raw_pod.get("metadata") or {}
        spec = raw_pod.get("spec") or {}
        status = raw_pod.get("status") or {}
        namespace, name, uid = meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")
        key = _pod_key(namespace, name, uid)
        created = str(meta.get("creationTimestamp") or "")
        if listed:
            with self._lock:
                self._listed_until = max(self._listed_until, created)
        if deleted or status.get("phase") in ("Succeeded", "Failed"):
            self.forget_pod(namespace, name, uid)
            with self._lock:
                self._pending.pop(key, None)
            return
        node = spec.get("nodeName")
        if not node:
            with self._lock:
                self._pending[key] = None
                while len(self._pending) > _POD_MEMORY:
                    self._pending.popitem(last=False)
            return
        with self._lock:
            was_pending = self._pending.pop(key, "no") is None
            # RFC 3339 in UTC ("2026-12-06T04:51:19Z"): later times sort later as strings
            created_since = not listed and bool(created) and created > self._listed_until
        held = self.cache.holders(key)
        with self._bind_lock:
            ours = self._bound.get(key) == node
        if held == {node} or (not held and (ours or not (was_pending or created_since))):
            return  # held where it runs, or already counted (by its NRT data or the timeout)
        try:
            pod = parse_pod(raw_pod)
            hints = self.claims.hints(pod_claims(raw_pod), node)
        except SchedulerError as err:
            log.info("pod %s/%s: not accounted: %s", namespace, name, err)
            return
        view = self.cache.view(node)
        with self._bind_lock:
            self.cache.release_pod(key)
            if view is not None:
                placement = admit(self._compile(pod, "kubelet"), view, hints).placement
                self.cache.reserve(node, key, placement)
            self._bound[key] = node

    def forget_pod(self, namespace: str, name: str, uid: str) -> None:
        """A pod was deleted: drop its reservations and its remembered request."""
        key = _pod_key(namespace, name, uid)
        self.cache.release_pod(key)
        with self._bind_lock:
            self._bound.pop(key, None)
        with self._lock:
            for k in (key, f"{namespace}/{name}"):
                self._pods.pop(k, None)
                self._pod_claims.pop(k, None)
