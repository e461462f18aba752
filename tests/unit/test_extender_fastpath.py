"""The extender's fast single-numa-node check agrees with the reference decisions.

``nrt-match`` must give exactly :func:`scheduler.filter.fit`'s verdict, and ``kubelet``
exactly the full Topology Manager run of :func:`scheduler.admission.admit`, on random
zones and pods (hypothesis).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.admission import admit
from scheduler.filter import fit
from scheduler.pod import is_host_level_resource, parse_pod
from scheduler.views import NodeView, compile_pod, fast_restricted_fit, fast_single_numa_fit
from topology.nrt import NodeResourceTopology

RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "hugepages-2Mi", "example.com/nic")
_amount = st.integers(min_value=0, max_value=6)


@st.composite
def nodes(draw: st.DrawFn) -> NodeResourceTopology:
    ids = draw(st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True))
    zones = []
    for numa in ids:
        names = draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=len(RESOURCES)))
        resources = []
        for name in names:
            alloc = draw(_amount)
            avail = draw(st.integers(0, alloc))
            resources.append({"name": name, "capacity": alloc, "allocatable": alloc, "available": avail})
        zones.append({"name": f"node-{numa}", "type": "Node", "resources": resources})
    scope = draw(st.sampled_from(["pod", "container"]))
    return NodeResourceTopology.from_dict(
        {
            "metadata": {"name": "n"},
            "attributes": [
                {"name": "topologyManagerPolicy", "value": "single-numa-node"},
                {"name": "topologyManagerScope", "value": scope},
            ],
            "zones": zones,
        }
    )


@st.composite
def containers(draw: st.DrawFn, prefix: str) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        res = {n: str(draw(_amount)) for n in draw(st.lists(st.sampled_from(RESOURCES), unique=True))}
        if "cpu" in res and draw(st.booleans()):
            res["cpu"] = f"{draw(st.integers(1, 5))}500m"
        guaranteed = draw(st.booleans())
        body = {"requests": res, "limits": res} if guaranteed else {"requests": res}
        out.append({"name": f"{prefix}{i}", "resources": body})
    return out


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": draw(containers("c"))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers("i"))
    return {"metadata": {"name": "p"}, "spec": spec}


@settings(max_examples=150, deadline=None)
@given(nrt=nodes(), raw=pods())
def test_nrt_match_fast_path_equals_reference_fit(nrt: NodeResourceTopology, raw: dict[str, Any]) -> None:
    pod = parse_pod(raw)
    view = NodeView.build(nrt, 1)
    # The extender knows a node's resources from its zones; host-level ones are assumed
    # present (kube-scheduler's own NodeResourcesFit has checked them).
    host_level = {n for c in pod.all_containers() for n in c.requests if is_host_level_resource(n)}
    expected = fit(pod, nrt, view.reported | host_level)
    compiled = compile_pod(pod, "nrt-match")
    got = fast_single_numa_fit(compiled, view) if compiled.needs_work else None
    assert (got is None or got.fits) == expected.fits, (got, expected)


@settings(max_examples=150, deadline=None)
@given(nrt=nodes(), raw=pods())
def test_kubelet_fast_path_equals_topology_manager(nrt: NodeResourceTopology, raw: dict[str, Any]) -> None:
    pod = parse_pod(raw)
    view = NodeView.build(nrt, 1)
    compiled = compile_pod(pod, "kubelet")
    expected = admit(compiled, view)
    got = fast_single_numa_fit(compiled, view) if compiled.needs_work else None
    assert (got is None or got.fits) == expected.fits, (got, expected)


@settings(max_examples=150, deadline=None)
@given(nrt=nodes(), raw=pods())
def test_kubelet_restricted_fast_path_equals_topology_manager(
    nrt: NodeResourceTopology, raw: dict[str, Any]
) -> None:
    obj = nrt.to_dict()
    obj["attributes"][0]["value"] = "restricted"
    restricted = NodeResourceTopology.from_dict(obj)
    view = NodeView.build(restricted, 1)
    compiled = compile_pod(parse_pod(raw), "kubelet")
    expected = admit(compiled, view)
    got = fast_restricted_fit(compiled, view) if compiled.needs_work else None
    assert (got is None or got.fits) == expected.fits, (got, expected)
