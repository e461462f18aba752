"""The extender's fit counts GPUs a pod holds through DRA claims: a Guaranteed pod whose
claim's GPU sits on NUMA node 1 needs its exclusive CPUs on node 1.

The slices are topolet's own (``build_resource_slices`` over the 8-GPU two-socket fixture
of ``tests/dra_machine.py``: GPUs 0000:17/3a on node 0, 0000:86/b1 on node 1); the NRT
objects give each node's free CPUs per NUMA zone."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from scheduler.cache import NRTCache
from scheduler.claim_index import ClaimIndex
from scheduler.claim_objects import (
    MAX_POD_CLAIMS,
    MAX_RESULTS,
    MAX_SLICE_DEVICES,
    ClaimObjectError,
    claim_allocation,
    pod_claims,
    slice_numa,
)
from scheduler.engine import ScalarEngine, VectorEngine
from scheduler.errors import PodSpecError
from scheduler.score import Scorer
from scheduler.service import ExtenderCore
from scheduler.wire import parse_binding_args, parse_extender_args
from tests.dra_machine import write_machine
from tests.extender_helpers import GU, MemoryBinder, args, nrt_obj, v1_pod
from topology.nrt import NodeResourceTopology
from topology.resourceslice import DRIVER, build_resource_slices
from topology.sysfs import discover

NODE1_GPU = "gpu-0000-b1-00-0"
NODE0_GPU = "gpu-0000-17-00-0"
FULL = {"cpu": "16", "memory": "64Gi"}


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    topo = discover(write_machine(Path(tmp_path_factory.mktemp("dra")) / "root"))
    out = []
    for node in ("short1", "roomy", "short0"):
        for i, s in enumerate(build_resource_slices(topo, node_name=node)):
            s = copy.deepcopy(s)
            s["metadata"]["name"] = f"{node}-{DRIVER}-{i}"
            out.append(s)
    return out


def _cache(policy: str = "single-numa-node", scope: str = "container") -> NRTCache:
    cache = NRTCache(clock=lambda: 0.0)
    alloc = {0: FULL, 1: FULL}
    zones = {
        "short1": {0: FULL, 1: {"cpu": "2", "memory": "64Gi"}},  # NUMA 1 has 2 free CPUs
        "roomy": {0: FULL, 1: FULL},
        "short0": {0: {"cpu": "2", "memory": "64Gi"}, 1: FULL},
    }
    for node, z in zones.items():
        cache.upsert(NodeResourceTopology.from_dict(nrt_obj(node, z, policy, scope, allocatable=alloc)))
    return cache


def claim(name: str, *devices: str, pool: str = "short1", allocated: bool = True) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}"},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": DRIVER}}]}},
        "status": {},
    }
    if allocated:
        results = [{"request": "gpu", "driver": DRIVER, "pool": pool, "device": d} for d in devices]
        obj["status"]["allocation"] = {"devices": {"results": results}}
    return obj


def pod_with_claim(name: str, cpus: int = 4, *, claim_name: str | None = "gpu-claim") -> dict[str, Any]:
    pod = v1_pod(name, ("app", GU, {"cpu": str(cpus), "memory": "1Gi"}))
    if claim_name is None:  # from a template: the name kube-controller-manager generated
        pod["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "tmpl"}]
        pod["status"]["resourceClaimStatuses"] = [{"name": "gpu", "resourceClaimName": "gpu-claim"}]
    else:
        pod["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimName": claim_name}]
    pod["spec"]["containers"][0]["resources"]["claims"] = [{"name": "gpu"}]
    return pod


def _core(
    slices: list[dict[str, Any]], *claims: dict[str, Any], cache: NRTCache | None = None
) -> ExtenderCore:
    core = ExtenderCore(cache or _cache(), binder=MemoryBinder())
    for s in slices:
        core.claims.apply_slice(s)
    for c in claims:
        core.claims.apply_claim(c)
    return core


NODES = ["short1", "roomy", "short0"]


@pytest.mark.parametrize("scope", ["container", "pod"])
@pytest.mark.parametrize("policy", ["single-numa-node", "restricted"])
@pytest.mark.parametrize("generated", [False, True], ids=["named-claim", "template-claim"])
def test_a_claim_gpu_on_numa_1_rejects_the_node_whose_numa_1_lacks_cpus(
    slices: list[dict[str, Any]], scope: str, policy: str, generated: bool
) -> None:
    core = _core(slices, claim("gpu-claim", NODE1_GPU), cache=_cache(policy, scope))
    pod = pod_with_claim("db", claim_name=None if generated else "gpu-claim")
    reply = core.filter(parse_extender_args(args(pod, NODES)))
    assert reply["NodeNames"] == ["roomy", "short0"]
    why = reply["FailedNodes"]["short1"]
    assert f"TopologyAffinityError under {policy}" in why, why
    assert f"{DRIVER} devices of its claims on node-1" in why, why
    # the same pod without the claim fits short1 (its NUMA 0 has 16 free CPUs)
    plain = v1_pod("db-plain", ("app", GU, {"cpu": "4", "memory": "1Gi"}))
    assert core.filter(parse_extender_args(args(plain, NODES)))["NodeNames"] == NODES


def test_both_engines_agree_and_the_gpus_numa_node_decides(slices: list[dict[str, Any]]) -> None:
    cache = _cache()
    core = _core(slices, claim("on1", NODE1_GPU), cache=cache)
    # the claim's devices are in short1's pool: only short1 is constrained (on the other nodes
    # kube-scheduler's own DynamicResources filter refuses a pod whose claim is allocated elsewhere)
    for gpu, expect in ((NODE1_GPU, ["roomy", "short0"]), (NODE0_GPU, NODES)):
        core.claims.apply_claim(claim("on1", gpu))
        raw = pod_with_claim(f"db-{gpu}", claim_name="on1")
        pod = core.parse(raw)
        lookup = core.claim_lookup(pod)
        assert lookup is not None
        scorer = Scorer("least-allocated")
        for engine in (
            ScalarEngine(cache, mode="kubelet", scorer=scorer),
            VectorEngine(cache, mode="kubelet", scorer=scorer),
        ):
            assert engine.filter(pod, NODES, lookup).passed == expect, (type(engine).__name__, gpu)


def test_a_claim_gpu_on_numa_1_fits_when_numa_1_has_room(slices: list[dict[str, Any]]) -> None:
    core = _core(slices, claim("gpu-claim", NODE1_GPU, pool="roomy"))
    reply = core.filter(parse_extender_args(args(pod_with_claim("db", 12), ["roomy"])))
    assert reply["NodeNames"] == ["roomy"]


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param([claim("gpu-claim", allocated=False)], id="unallocated"),
        pytest.param([], id="never-seen"),
        pytest.param([claim("gpu-claim", "gpu-0000-99-00-0")], id="device-not-in-any-slice"),
        pytest.param([claim("other", NODE1_GPU)], id="another-claim-allocated"),
    ],
)
def test_no_allocated_device_means_no_constraint(
    slices: list[dict[str, Any]], claims: list[dict[str, Any]]
) -> None:
    core = _core(slices, *claims)
    reply = core.filter(parse_extender_args(args(pod_with_claim("db"), NODES)))
    assert reply["NodeNames"] == NODES


def test_bind_reserves_the_cpus_on_the_gpus_numa_node_reading_the_fresh_allocation(
    slices: list[dict[str, Any]],
) -> None:
    cache = _cache()
    core = _core(slices, claim("gpu-claim", allocated=False), cache=cache)  # /filter: not allocated yet
    pod = pod_with_claim("db")
    assert core.filter(parse_extender_args(args(pod, ["roomy"])))["NodeNames"] == ["roomy"]
    # PreBind wrote the allocation; the watch has not delivered it: bind reads the claim
    api = {("default", "gpu-claim"): claim("gpu-claim", NODE1_GPU, pool="roomy")}
    core.claims.fetch = lambda ns, name: api.get((ns, name))
    meta = pod["metadata"]
    bind = {"PodName": meta["name"], "PodNamespace": "default", "PodUID": meta["uid"], "Node": "roomy"}
    assert core.bind(parse_binding_args(bind)) == {"Error": ""}
    view = cache.view("roomy")
    assert view is not None
    assert dict(view.zones)[0]["cpu"] == 16000  # untouched: without the claim it would be node 0
    assert dict(view.zones)[1]["cpu"] == 12000


def test_bind_refuses_a_node_where_the_fresh_gpus_numa_node_lacks_the_cpus(
    slices: list[dict[str, Any]],
) -> None:
    cache = _cache()
    core = _core(slices, claim("gpu-claim", allocated=False), cache=cache)
    pod = pod_with_claim("db")
    assert core.filter(parse_extender_args(args(pod, ["short1"])))["NodeNames"] == ["short1"]  # no hint yet
    core.claims.apply_claim(claim("gpu-claim", NODE1_GPU))  # PreBind allocated a GPU on NUMA node 1
    meta = pod["metadata"]
    bind = {"PodName": meta["name"], "PodNamespace": "default", "PodUID": meta["uid"], "Node": "short1"}
    error = core.bind(parse_binding_args(bind))["Error"]
    assert "no longer fits" in error and "devices of its claims on node-1" in error, error
    assert not cache.reservations("short1")
    assert isinstance(core.binder, MemoryBinder) and not core.binder.bound


def test_bind_without_claims_reserves_on_the_lowest_fitting_node(slices: list[dict[str, Any]]) -> None:
    cache = _cache()
    core = _core(slices, cache=cache)
    pod = v1_pod("db", ("app", GU, {"cpu": "4", "memory": "1Gi"}))
    core.parse(pod)
    meta = pod["metadata"]
    bind = {"PodName": meta["name"], "PodNamespace": "default", "PodUID": meta["uid"], "Node": "roomy"}
    assert core.bind(parse_binding_args(bind)) == {"Error": ""}
    view = cache.view("roomy")
    assert view is not None
    assert (dict(view.zones)[0]["cpu"], dict(view.zones)[1]["cpu"]) == (12000, 16000)


# ------------------------------------------------------------------ bounded inputs
def _one_line(err: BaseException, field: str) -> None:
    text = str(err)
    assert "\n" not in text and field in text and len(text) < 300, text


def test_a_pod_with_too_many_claims_is_refused_naming_the_field() -> None:
    pod = pod_with_claim("db")
    pod["spec"]["resourceClaims"] = [
        {"name": f"c{i}", "resourceClaimName": f"c{i}"} for i in range(MAX_POD_CLAIMS + 1)
    ]
    with pytest.raises(PodSpecError) as err:
        pod_claims(pod)
    _one_line(err.value, "spec.resourceClaims")
    core = ExtenderCore(_cache())
    with pytest.raises(PodSpecError):
        core.filter(parse_extender_args(args(pod, NODES)))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(
            lambda p: p["spec"].update(resourceClaims="gpu"), "spec.resourceClaims", id="not-a-list"
        ),
        pytest.param(
            lambda p: p["spec"]["resourceClaims"][0].update(resourceClaimName="x" * 300),
            "spec.resourceClaims[0].resourceClaimName",
            id="name-too-long",
        ),
        pytest.param(
            lambda p: p["status"].update(resourceClaimStatuses=[{"name": 7}]),
            "status.resourceClaimStatuses[0].name",
            id="status-name-not-a-string",
        ),
        pytest.param(
            lambda p: p["spec"]["containers"][0]["resources"].update(claims=[{"name": ""}]),
            "spec.containers[0].resources.claims[0].name",
            id="container-claim-empty",
        ),
    ],
)
def test_malformed_pod_claims_are_refused_naming_the_field(mutate: Any, field: str) -> None:
    pod = pod_with_claim("db")
    mutate(pod)
    with pytest.raises(PodSpecError) as err:
        pod_claims(pod)
    _one_line(err.value, field)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(
            lambda c: c["status"]["allocation"]["devices"].update(
                results=[{"driver": DRIVER, "pool": "p", "device": "d"}] * 10_000
            ),
            "status.allocation.devices.results",
            id="huge-results",
        ),
        pytest.param(
            lambda c: c["status"]["allocation"]["devices"].update(results={"a": 1}),
            "status.allocation.devices.results",
            id="results-not-a-list",
        ),
        pytest.param(
            lambda c: c["status"]["allocation"]["devices"]["results"][0].update(device="d" * 1000),
            "status.allocation.devices.results[0].device",
            id="device-name-too-long",
        ),
        pytest.param(
            lambda c: c["status"].update(allocation=[1]), "status.allocation", id="allocation-not-an-object"
        ),
    ],
)
def test_bad_claims_are_rejected_naming_the_field_and_give_no_hint(
    slices: list[dict[str, Any]], mutate: Any, field: str
) -> None:
    bad = claim("gpu-claim", NODE1_GPU)
    mutate(bad)
    with pytest.raises(ClaimObjectError) as err:
        claim_allocation(bad, DRIVER)
    _one_line(err.value, field)
    assert "resourceclaim default/gpu-claim" in str(err.value)
    # the index drops it: the earlier good allocation is forgotten, never half-read
    core = _core(slices, claim("gpu-claim", NODE1_GPU))
    core.claims.apply_claim(bad)
    assert core.filter(parse_extender_args(args(pod_with_claim("db"), NODES)))["NodeNames"] == NODES


def test_a_deleted_slice_takes_its_hint_with_it(slices: list[dict[str, Any]]) -> None:
    core = _core(slices, claim("gpu-claim", NODE1_GPU))
    pod = pod_with_claim("db")
    assert core.filter(parse_extender_args(args(pod, ["short1"])))["NodeNames"] == []
    for s in slices:
        if s["spec"]["nodeName"] == "short1":
            core.claims.apply_slice(s, deleted=True)
    assert core.filter(parse_extender_args(args(pod, ["short1"])))["NodeNames"] == ["short1"]


def test_a_claim_at_the_results_limit_is_read() -> None:
    full = claim("gpu-claim", *[NODE1_GPU] * MAX_RESULTS)
    assert len(claim_allocation(full, DRIVER) or ()) == MAX_RESULTS


def test_bad_slices_are_rejected_naming_the_field(slices: list[dict[str, Any]]) -> None:
    huge = copy.deepcopy(slices[0])
    huge["spec"]["devices"] = [{"name": f"gpu-{i}"} for i in range(MAX_SLICE_DEVICES + 1)]
    with pytest.raises(ClaimObjectError) as err:
        slice_numa(huge, DRIVER)
    _one_line(err.value, "spec.devices")
    odd = copy.deepcopy(slices[0])
    odd["spec"]["devices"][0]["attributes"]["numaNode"] = {"int": True}  # not an int: unknown node
    reduced = slice_numa(odd, DRIVER)
    assert reduced is not None and reduced.reduced["spec"]["devices"][0]["attributes"] == {}
    index = ClaimIndex()
    index.apply_slice(huge)
    assert index.hints(pod_claims(pod_with_claim("db")), "short1") is None
