"""The fit engine's two implementations agree: scalar reference == vectorised (hypothesis).

Random clusters (every Topology Manager policy and scope, 1-10 zones with random
distances, NUMA ids in and out of order, so some nodes fall outside the columns) and
random pods (Guaranteed, Burstable, BestEffort; init containers; fractional CPUs;
devices and hugepages) go through :class:`ScalarEngine` (kubelet's Topology Manager or
NodeResourceTopologyMatch's fit, node by node, and :class:`Scorer`) and
:class:`VectorEngine` (numpy columns). The survivors and every score must be equal, in
both rule sets and all four scoring strategies: 8 x 250 = 2,000 cluster/pod pairs per run.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.cache import NRTCache
from scheduler.engine import ScalarEngine, VectorEngine
from scheduler.pod import PodRequest, parse_pod
from scheduler.score import SCORING_STRATEGIES, Scorer
from topology.nrt import NodeResourceTopology

RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "hugepages-2Mi", "example.com/nic")
POLICIES = ("single-numa-node", "single-numa-node", "restricted", "best-effort", "none")
EXAMPLES_PER_CASE = 250
_amount = st.integers(min_value=0, max_value=8)


@st.composite
def nodes(draw: st.DrawFn, name: str) -> dict[str, Any]:
    ids = draw(
        st.lists(st.integers(0, 11), min_size=1, max_size=draw(st.sampled_from((4, 4, 4, 10))), unique=True)
    )
    zones = []
    for numa in ids:
        names = draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=len(RESOURCES)))
        resources = []
        for res in names:
            alloc = draw(_amount)
            avail = draw(st.integers(0, alloc))
            # cpu sometimes in millicores ("3000m"), the same amount as "3"
            text = f"{avail * 1000}m" if res == "cpu" and draw(st.booleans()) else str(avail)
            resources.append({"name": res, "capacity": alloc, "allocatable": alloc, "available": text})
        costs = [
            {"name": f"node-{o}", "value": 10 if o == numa else draw(st.sampled_from((11, 20, 21, 32)))}
            for o in ids
            if draw(st.integers(0, 9)) > 0
        ]
        zones.append({"name": f"node-{numa}", "type": "Node", "resources": resources, "costs": costs})
    return {
        "metadata": {"name": name},
        "attributes": [
            {"name": "topologyManagerPolicy", "value": draw(st.sampled_from(POLICIES))},
            {"name": "topologyManagerScope", "value": draw(st.sampled_from(["pod", "container"]))},
        ],
        "zones": zones,
    }


@st.composite
def containers(draw: st.DrawFn, prefix: str, qos: str) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        res = {n: str(draw(_amount)) for n in draw(st.lists(st.sampled_from(RESOURCES), unique=True))}
        if "cpu" in res and draw(st.booleans()):
            res["cpu"] = f"{draw(st.integers(0, 5))}500m"
        if qos == "guaranteed":
            res.setdefault("cpu", "1")
            res.setdefault("memory", "1")
            body = {"requests": res, "limits": res}
        elif qos == "burstable":
            body = {"requests": res}
        else:
            body = {"requests": {k: v for k, v in res.items() if "/" in k}}
        out.append({"name": f"{prefix}{i}", "resources": body})
    return out


@st.composite
def pods(draw: st.DrawFn) -> PodRequest:
    qos = draw(st.sampled_from(("guaranteed", "guaranteed", "burstable", "besteffort")))
    spec: dict[str, Any] = {"containers": draw(containers("c", qos))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers("i", qos))
    return parse_pod({"metadata": {"name": "p"}, "spec": spec})


@st.composite
def clusters(draw: st.DrawFn) -> list[NodeResourceTopology]:
    return [NodeResourceTopology.from_dict(draw(nodes(f"w{i}"))) for i in range(draw(st.integers(1, 6)))]


@pytest.mark.parametrize("strategy", sorted(SCORING_STRATEGIES))
@pytest.mark.parametrize("mode", ["kubelet", "nrt-match"])
@settings(max_examples=EXAMPLES_PER_CASE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), pod=pods())
def test_vectorised_engine_equals_scalar_reference(
    mode: str, strategy: str, cluster: list[NodeResourceTopology], pod: PodRequest
) -> None:
    cache = NRTCache(clock=lambda: 0.0)
    for nrt in cluster:
        cache.upsert(nrt)
    scorer = Scorer(strategy)
    scalar = ScalarEngine(cache, mode=mode, scorer=scorer)
    vector = VectorEngine(cache, mode=mode, scorer=scorer)
    names = (*[n.name for n in cluster], "no-nrt")
    want = scalar.filter(pod, names)
    got = vector.filter(pod, names)
    assert got.passed == want.passed, (got, want)
    assert set(got.failed) | set(got.unresolvable) == set(want.failed) | set(want.unresolvable)
    assert all(got.failed.values()) and all(got.unresolvable.values())  # every rejection says why
    assert vector.scores(pod, names) == scalar.scores(pod, names)
