"""The vectorised batch path gives exactly the per-node answers, node by node (hypothesis).

Random clusters (every policy and scope, 1-5 zones with random costs, ids in and out
of order) and random pods go through :class:`ExtenderCore` twice: once over the NRT
cache's numpy columns, once with a cache that has none (the per-node path, itself
checked against the reference fit and the full Topology Manager in
``test_extender_fastpath.py``). Verdicts, messages and scores must be equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.batch import least_numa_plugin
from scheduler.cache import NRTCache, Reservation
from scheduler.pod import PodRequest, parse_pod
from scheduler.score import Scorer
from scheduler.service import ExtenderCore
from scheduler.views import NodeView
from topology.nrt import NodeResourceTopology

RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "hugepages-2Mi", "example.com/nic")
POLICIES = ("single-numa-node", "restricted", "best-effort", "none")
_amount = st.integers(min_value=0, max_value=6)


class PerNodeCache:
    """The same cache seen without its columns: every request takes the per-node path."""

    def __init__(self, cache: NRTCache) -> None:
        self._cache = cache

    def view(self, node: str) -> NodeView | None:
        return self._cache.view(node)

    def views(self) -> Mapping[str, NodeView]:
        return self._cache.views()

    def fresh_columns(self) -> None:
        return None

    def reservations(self, node: str | None = None) -> list[Reservation]:
        return self._cache.reservations(node)


@st.composite
def nodes(draw: st.DrawFn, name: str) -> NodeResourceTopology:
    ids = draw(st.lists(st.integers(0, 7), min_size=1, max_size=5, unique=True))
    zones = []
    for numa in ids:
        names = draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=len(RESOURCES)))
        resources = []
        for res in names:
            alloc = draw(_amount)
            avail = draw(st.integers(0, alloc))
            resources.append({"name": res, "capacity": alloc, "allocatable": alloc, "available": avail})
        costs = [
            {"name": f"node-{o}", "value": 10 if o == numa else draw(st.sampled_from((11, 20, 21, 32)))}
            for o in ids
        ]
        zones.append({"name": f"node-{numa}", "type": "Node", "resources": resources, "costs": costs})
    return NodeResourceTopology.from_dict(
        {
            "metadata": {"name": name},
            "attributes": [
                {"name": "topologyManagerPolicy", "value": draw(st.sampled_from(POLICIES))},
                {"name": "topologyManagerScope", "value": draw(st.sampled_from(["pod", "container"]))},
            ],
            "zones": zones,
        }
    )


@st.composite
def clusters(draw: st.DrawFn) -> list[NodeResourceTopology]:
    return [draw(nodes(f"w{i}")) for i in range(draw(st.integers(1, 6)))]


@st.composite
def containers(draw: st.DrawFn, prefix: str, guaranteed: bool) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        res = {n: str(draw(_amount)) for n in draw(st.lists(st.sampled_from(RESOURCES), unique=True))}
        if "cpu" in res and draw(st.booleans()):
            res["cpu"] = f"{draw(st.integers(1, 5))}500m"
        if guaranteed:
            res.setdefault("cpu", "1")
            res.setdefault("memory", "1")
        body = {"requests": res, "limits": res} if guaranteed else {"requests": res}
        out.append({"name": f"{prefix}{i}", "resources": body})
    return out


@st.composite
def pods(draw: st.DrawFn) -> PodRequest:
    guaranteed = draw(st.booleans())
    spec: dict[str, Any] = {"containers": draw(containers("c", guaranteed))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers("i", guaranteed))
    return parse_pod({"metadata": {"name": "p"}, "spec": spec})


def _cores(cluster: list[NodeResourceTopology], mode: str) -> tuple[ExtenderCore, ExtenderCore]:
    cache = NRTCache(clock=lambda: 0.0)
    for nrt in cluster:
        cache.upsert(nrt)
    # small_refresh=0: every stale row goes through the vectorised pass, never node by node.
    batch = ExtenderCore(cache, fit_mode=mode, small_refresh=0)
    return batch, ExtenderCore(PerNodeCache(cache), fit_mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["kubelet", "nrt-match"])
@settings(max_examples=60, deadline=None)
@given(cluster=clusters(), pod=pods())
def test_batch_filter_equals_per_node(
    mode: str, cluster: list[NodeResourceTopology], pod: PodRequest
) -> None:
    batch, per_node = _cores(cluster, mode)
    names = (*[n.name for n in cluster], "no-nrt")
    got = batch.run_filter(pod, names)
    want = per_node.run_filter(pod, names)
    assert got == want


@settings(max_examples=80, deadline=None)
@given(cluster=clusters(), pod=pods())
def test_batch_least_numa_score_equals_per_node(cluster: list[NodeResourceTopology], pod: PodRequest) -> None:
    batch, per_node = _cores(cluster, "kubelet")
    names = (*[n.name for n in cluster], "no-nrt")
    assert batch.scores(pod, names) == per_node.scores(pod, names)


@settings(max_examples=80, deadline=None)
@given(cluster=clusters(), pod=pods())
def test_batch_least_numa_plugin_score_equals_scorer(
    cluster: list[NodeResourceTopology], pod: PodRequest
) -> None:
    if not pod.guaranteed:
        return
    cache = NRTCache(clock=lambda: 0.0)
    for nrt in cluster:
        cache.upsert(nrt)
    names = [n.name for n in cluster]
    rows = cache.columns.rows_of(names)
    eligible = cache.columns.meta(rows)[0] >= 0
    got = least_numa_plugin(pod, rows[eligible], cache.columns).tolist()
    scorer = Scorer("least-numa-nodes")
    want = [scorer.score(pod, n) for n, keep in zip(cluster, eligible.tolist(), strict=True) if keep]
    assert got == want


def test_columns_follow_reservations_and_deletes() -> None:
    obj = {
        "metadata": {"name": "w1"},
        "attributes": [{"name": "topologyManagerPolicy", "value": "single-numa-node"}],
        "zones": [
            {
                "name": f"node-{n}",
                "type": "Node",
                "resources": [{"name": "cpu", "capacity": 4, "allocatable": 4, "available": 4}],
            }
            for n in (0, 1)
        ],
    }
    cache = NRTCache(clock=lambda: 0.0)
    cache.upsert(NodeResourceTopology.from_dict(obj))
    core = ExtenderCore(cache)
    pod = parse_pod(
        {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "3", "memory": "1"}}}]}}
    )
    assert core.run_filter(pod, ("w1",)).passed == ["w1"]
    cache.reserve("w1", "x", {0: {"cpu": 2000}, 1: {"cpu": 2000}})
    outcome = core.run_filter(pod, ("w1",))
    assert outcome.failed == {
        "w1": "cannot align container: container 'a': no single NUMA node has cpu 3 (node-0: 2, node-1: 2)"
    }
    cache.delete("w1")
    assert core.run_filter(pod, ("w1",)).passed == ["w1"]
