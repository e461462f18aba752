"""topolet's GPUs through the real DRA path: kube-apiserver, kube-scheduler's DynamicResources
plugin (v1.34, ``resource.k8s.io/v1``), topolet's extender, then topolet's kubelet plugin.

Two fake nodes ``gpu-a`` and ``gpu-b`` (Node objects, no kubelet) are the 8-GPU two-socket
machine of :mod:`tests.dra_machine`: node 0 holds 0000:17 (2 x 40 GiB) and 0000:3a
(2 x 80 GiB), node 1 holds 0000:86 (40 GiB) and 0000:b1 (80 GiB), two GPUs per PCIe root.
Their ResourceSlices are topolet's own; the DeviceClass and the claim templates are the
shipped ``deploy/dra`` files; the real kube-controller-manager's resourceclaim controller
makes the claims from the templates (and removes them with their pods). The real
kube-scheduler allocates every device checked here.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client

from bench.kube_stack import filter_probe
from deviceplugin.api.dra.v1 import api_pb2 as v1
from deviceplugin.api.dra.v1 import api_pb2_grpc as v1_grpc
from deviceplugin.dra.plugin import DRAPlugin
from deviceplugin.dra.server import DRAPluginServer
from deviceplugin.gpu import discover_gpus
from kube.client import api_client
from scheduler.cache import NRTCache
from scheduler.claim_index import ClaimIndex
from scheduler.claim_objects import pod_claims
from scheduler.sources import KubernetesSource
from tests.dra_machine import GPUS
from tests.e2e.cluster import E2ECluster, sa_user
from tests.e2e.dra_cluster import CONTROLLERS, Claims, example_pod, gpu_machine, publish
from tests.e2e.polling import delete_pods, events_of, node_of, wait_for
from topolet.dra_node import kube_claim_getter
from topology.model import Topology
from topology.resourceslice import DRIVER, device_name

NODES = ["gpu-a", "gpu-b"]
NS = "default"
BY_NAME = {device_name(g.address): g for g in GPUS}
GiB = 2**30
_ids = itertools.count()


@dataclass
class DRACluster:
    cluster: E2ECluster
    root: Path
    topo: Topology
    claims: Claims
    slices: list[dict[str, Any]]


@pytest.fixture(scope="module")
def dra(e2e_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DRACluster]:
    base = tmp_path_factory.mktemp("e2e-dra")
    root, topo = gpu_machine(base / "machine")
    cluster = E2ECluster(base / "cluster", dict.fromkeys(NODES, root), bin_dir=e2e_bin)
    try:
        cluster.up()
        cluster.cp.start_controller_manager(CONTROLLERS)
        slices = publish(cluster.api, topo, NODES)
    except Exception:
        cluster.down()
        raise
    yield DRACluster(cluster, root, topo, Claims(cluster.api), slices)
    cluster.down()


class Pods:
    """Names pods uniquely; after the test deletes them and the claims it made, and waits
    until every claim of theirs is gone (kube-controller-manager deletes the generated
    ones and deallocates; an allocated claim holds its devices until then)."""

    def __init__(self, dra: DRACluster) -> None:
        self.dra, self.names, self.claims = dra, list[str](), list[str]()

    def from_example(self, example: str, prefix: str, *, narrow: str = "", **changes: Any) -> str:
        name = f"{prefix}-{next(_ids)}"
        body = example_pod(example, name, **changes)
        if narrow:
            self.claims += self.dra.claims.narrowed(body, narrow)
        return self.create(body)

    def create(self, body: dict[str, Any]) -> str:
        self.names.append(body["metadata"]["name"])
        self.dra.claims.core.create_namespaced_pod(NS, body)
        return str(body["metadata"]["name"])

    def cleanup(self) -> None:
        resource = self.dra.claims.resource
        left = {n for n in map(self._claim_name, self.names) if n} | set(self.claims)
        delete_pods(self.dra.cluster.core, self.names)
        for name in self.claims:
            try:
                resource.delete_namespaced_resource_claim(name, NS)
            except client.exceptions.ApiException as err:
                if err.status != 404:
                    raise

        def gone() -> bool:
            left.intersection_update(
                c.metadata.name for c in resource.list_namespaced_resource_claim(NS).items
            )
            return not left

        wait_for(f"claims {sorted(left)} deleted", gone, 60.0)

    def _claim_name(self, pod: str) -> str | None:
        try:
            return self.dra.claims.claim_name(pod)
        except client.exceptions.ApiException as err:
            if err.status == 404:
                return None
            raise


@pytest.fixture
def pods(dra: DRACluster) -> Iterator[Pods]:
    p = Pods(dra)
    yield p
    p.cleanup()
    if dra.cluster.extender is not None:
        dra.cluster.wait_released()


def allocated(dra: DRACluster, name: str) -> tuple[str, dict[str, Any]]:
    """Wait until *name* is bound; its node and its claim (allocated by kube-scheduler)."""
    node = wait_for(f"{name} bound", lambda: node_of(dra.cluster.core, name), 60.0)
    claim = dra.claims.claim_of(name)
    allocation = claim["status"]["allocation"]
    terms = allocation["nodeSelector"]["nodeSelectorTerms"]
    assert [f["values"] for t in terms for f in t["matchFields"]] == [[node]], terms
    pod_uid = dra.claims.core.read_namespaced_pod(name, NS).metadata.uid
    assert {"resource": "pods", "name": name, "uid": pod_uid} in claim["status"]["reservedFor"]
    for r in allocation["devices"]["results"]:
        assert (r["driver"], r["pool"]) == (DRIVER, node), r  # topolet's driver, the node's pool
        assert r["device"] in BY_NAME, r
    return node, claim


def devices(claim: dict[str, Any]) -> list[str]:
    return [r["device"] for r in claim["status"]["allocation"]["devices"]["results"]]


def test_the_slices_are_topolets_and_the_api_server_took_them(dra: DRACluster) -> None:
    resource: Any = client.ResourceV1Api(dra.cluster.api)
    listed = resource.list_resource_slice(field_selector=f"spec.driver={DRIVER}")
    assert sorted(s.spec.node_name for s in listed.items) == NODES
    for s in listed.items:
        assert sorted(d.name for d in s.spec.devices) == sorted(BY_NAME)
        assert s.spec.pool.name == s.spec.node_name
    assert len(dra.slices) == len(NODES)


def test_a_40gi_claim_gets_one_gpu_with_at_least_40gi(dra: DRACluster, pods: Pods) -> None:
    name = pods.from_example("gpu-40gi", "g40")
    _, claim = allocated(dra, name)
    (device,) = devices(claim)
    assert BY_NAME[device].memory >= 40 * GiB


def test_a_product_claim_gets_only_that_product(dra: DRACluster, pods: Pods) -> None:
    names = [pods.from_example("gpu-product", "g80") for _ in range(5)]
    got = []
    for name in names:
        node, claim = allocated(dra, name)
        (device,) = devices(claim)
        assert BY_NAME[device].product == "NVIDIA A100-SXM4-80GB", device
        got.append((node, device))
    assert len(set(got)) == 5, got  # never one GPU twice


def test_two_gpus_with_matching_pcie_root(dra: DRACluster, pods: Pods) -> None:
    names = [pods.from_example("two-gpus-same-pcie-root", "pair") for _ in range(3)]
    seen: set[tuple[str, str]] = set()
    for name in names:
        node, claim = allocated(dra, name)
        pair = devices(claim)
        assert len(set(pair)) == 2, pair
        assert len({BY_NAME[d].root for d in pair}) == 1, pair
        seen |= {(node, d) for d in pair}
    assert len(seen) == 6


def test_a_claim_nothing_satisfies_stays_pending_with_the_schedulers_reason(
    dra: DRACluster, pods: Pods
) -> None:
    memory = 'device.capacity["gpu.topolet.io"].memory.compareTo(quantity("96Gi")) >= 0'
    name = pods.from_example("gpu-40gi", "g96", narrow=memory)

    def unschedulable() -> str | None:
        pod = dra.claims.core.read_namespaced_pod(name, NS)
        for c in pod.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return str(c.message)
        return None

    message = wait_for(f"{name} PodScheduled=False", unschedulable, 60.0)
    assert "0/2 nodes are available" in message and "cannot allocate all claims" in message, message
    assert any("cannot allocate all claims" in e for e in events_of(dra.cluster.core, name))
    assert node_of(dra.cluster.core, name) is None
    assert "allocation" not in (dra.claims.claim_of(name).get("status") or {})


# ---------------------------------------------------------------- the extender
def _zones(dra: DRACluster, node: str) -> str:
    """The extender's free CPUs per NUMA zone of *node*, from its refusal of a 17-CPU probe."""
    reply = dra.cluster.extender_call("filter", filter_probe(17, [node]))
    message: str = reply["FailedNodes"][node]
    return message[message.index("(") :]


def _sharing_pod(name: str, claim: str, cpus: int) -> dict[str, Any]:
    res = {"cpu": str(cpus), "memory": "1Gi"}
    container = {
        "name": "app",
        "image": "pause",
        "resources": {"requests": res, "limits": res, "claims": [{"name": "gpu"}]},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": "topolet-scheduler",
            "resourceClaims": [{"name": "gpu", "resourceClaimName": claim}],
            "containers": [container],
        },
    }


def test_the_extender_places_exclusive_cpus_on_the_claim_gpus_numa_node(dra: DRACluster, pods: Pods) -> None:
    # The example pod (4 exclusive CPUs, topolet-scheduler) with its claim narrowed to a GPU
    # on NUMA node 1, where the lowest-id default (node 0) would not put its CPUs.
    on_node1 = 'device.attributes["gpu.topolet.io"].numaNode == 1'
    first = pods.from_example("gpu-with-exclusive-cpus", "xcpu", narrow=on_node1)
    node, claim = allocated(dra, first)
    (device,) = devices(claim)
    assert BY_NAME[device].numa == 1
    # at /bind, PreBind had written the allocation: the reservation is on NUMA node 1
    assert _zones(dra, node) == "(node-0: 16, node-1: 12)"

    # A pod sharing the now-allocated claim is filtered with its hint: 14 CPUs fit node 0
    # of that node, not node 1, so the extender refuses the node and says why.
    shared = claim["metadata"]["name"]
    big = pods.create(_sharing_pod(f"xshare14-{next(_ids)}", shared, 14))

    def refused() -> list[str]:
        return [e for e in events_of(dra.cluster.core, big) if "devices of its claims on node-1" in e]

    message = wait_for(f"{big}'s FailedScheduling naming the claim's NUMA node", refused, 60.0)[-1]
    assert "TopologyAffinityError under single-numa-node" in message, message
    assert node_of(dra.cluster.core, big) is None

    # 12 CPUs fit NUMA node 1 exactly: bound there, and reserved there.
    fits = pods.create(_sharing_pod(f"xshare12-{next(_ids)}", shared, 12))
    assert wait_for(f"{fits} bound", lambda: node_of(dra.cluster.core, fits), 60.0) == node
    assert _zones(dra, node) == "(node-0: 16, node-1: 0)"


def test_the_extenders_watches_see_claims_and_slices_with_its_own_rbac(dra: DRACluster, pods: Pods) -> None:
    # A claim allocated by the default scheduler (the extender never binds it): only the
    # extender's claim and slice watches, as the shipped extender service account, tell it.
    on_node1 = 'device.attributes["gpu.topolet.io"].numaNode == 1'
    name = pods.from_example("gpu-40gi", "watched", narrow=on_node1)
    node, claim = allocated(dra, name)
    raw = client.ApiClient().sanitize_for_serialization(dra.claims.core.read_namespaced_pod(name, NS))
    index = ClaimIndex()
    api = api_client(str(dra.cluster.cp.kubeconfig(*sa_user("topolet-extender"))))
    source = KubernetesSource(api, NRTCache(), claims=index, watch_timeout_s=30)
    source.start()
    try:
        hints = wait_for("the claim hint from the watches", lambda: index.hints(pod_claims(raw), node), 30.0)
    finally:
        source.stop()
    (device,) = devices(claim)
    assert (
        hints.where
        == f"{DRIVER} devices of its claims on node-{BY_NAME[device].numa}"
        == (f"{DRIVER} devices of its claims on node-1")
    )
    other = next(n for n in NODES if n != node)
    assert index.hints(pod_claims(raw), other) is None  # another node's pool: no hint


# ---------------------------------------------------------------- the kubelet plugin
def test_the_kubelet_plugin_prepares_what_the_scheduler_allocated(dra: DRACluster, pods: Pods) -> None:
    name = pods.from_example("two-gpus-same-pcie-root", "kubelet")
    node, claim = allocated(dra, name)
    meta = claim["metadata"]
    base = Path(tempfile.mkdtemp(prefix="tdra", dir="/tmp"))  # unix socket paths are short
    gpus = discover_gpus(dra.topo, root=dra.root)
    plugin = DRAPlugin(
        gpus,
        node_name=node,
        get_claim=kube_claim_getter(dra.cluster.api),
        cdi_dir=base / "cdi",
        checkpoint_path=base / "plug" / "checkpoint.json",
        root=dra.root,
    )
    server = DRAPluginServer(plugin, registry_dir=base / "reg", plugin_dir=base / "plug")
    server.start()
    try:
        ref = v1.Claim(namespace=NS, uid=meta["uid"], name=meta["name"])
        with grpc.insecure_channel(f"unix://{base / 'plug' / 'dra.sock'}") as ch:
            stub = v1_grpc.DRAPluginStub(ch)
            got = stub.NodePrepareResources(v1.NodePrepareResourcesRequest(claims=[ref]), timeout=30).claims[
                meta["uid"]
            ]
            assert got.error == ""
            allocated_devices = sorted(devices(claim))
            assert sorted(d.device_name for d in got.devices) == allocated_devices
            assert {d.pool_name for d in got.devices} == {node}
            spec = json.loads((base / "cdi" / f"{DRIVER}-{meta['uid']}.json").read_text())
            assert spec["kind"] == "k8s.gpu.topolet.io/claim"
            visible = "NVIDIA_VISIBLE_DEVICES=" + ",".join(BY_NAME[d].uuid for d in allocated_devices)
            for entry, device in zip(spec["devices"], allocated_devices, strict=True):
                assert entry["name"] == f"{meta['uid']}-{device}"
                paths = [n["path"] for n in entry["containerEdits"]["deviceNodes"]]
                assert paths[0] == f"/dev/nvidia{BY_NAME[device].minor}"
                assert entry["containerEdits"]["env"] == [visible]
            done = stub.NodeUnprepareResources(v1.NodeUnprepareResourcesRequest(claims=[ref]), timeout=30)
            assert done.claims[meta["uid"]].error == ""
        assert os.listdir(base / "cdi") == []
        assert json.loads((base / "plug" / "checkpoint.json").read_text())["claims"] == {}
    finally:
        server.stop()
