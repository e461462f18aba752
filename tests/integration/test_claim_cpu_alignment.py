"""Exclusive CPUs beside the GPUs of a pod's DRA claims, on the node.

The node is the 8-GPU two-socket machine of :mod:`tests.dra_machine` (NUMA node 0: CPUs
0-7,16-23; node 1: 8-15,24-31; GPUs 0000:86:xx and 0000:b1:xx on node 1). A real
:class:`~deviceplugin.dra.plugin.DRAPlugin` prepares claims as kubelet asks it to; a real
:class:`~cpumanager.kube_source.KubePodSource` is fed pod events and gives them to a real
CPU manager, asking the plugin (through the node agent's ``claim_affinity``) where the
GPUs of the claims a container uses are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration

from cpumanager.cgroupfs import ContainerCgroup
from cpumanager.cpu_topology import CPUTopology
from cpumanager.kube_source import KubePodSource
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from deviceplugin.dra.claims import ClaimRef
from deviceplugin.dra.plugin import DRAPlugin
from deviceplugin.gpu import discover_gpus
from tests.apiserver_standin import ApiServerStandIn
from tests.dra_machine import write_machine
from tests.kubeconfig_file import write_kubeconfig
from topolet.dra_node import DRANode
from topolet.node_agent import NodeAgent
from topolet.node_config import NodeConfig
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.resourceslice import DRIVER, device_name
from topology.sysfs import discover

NODE = "worker-1"
NS = "default"
ON_NODE_1 = ("0000:86:00.0", "0000:b1:01.0")
ON_NODE_0 = "0000:17:00.0"


class Claims:
    """The ResourceClaims the API server holds (what ``get_claim`` reads)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Mapping[str, Any]] = {}

    def add(self, name: str, *addresses: str) -> ClaimRef:
        uid = f"{len(self.objects):08d}-0000-4000-8000-000000000001"
        results = [
            {"request": "gpu", "driver": DRIVER, "pool": NODE, "device": device_name(a)} for a in addresses
        ]
        self.objects[(NS, name)] = {
            "metadata": {"name": name, "namespace": NS, "uid": uid},
            "status": {"allocation": {"devices": {"results": results}}},
        }
        return ClaimRef(NS, uid, name)

    def get(self, namespace: str, name: str) -> Mapping[str, Any]:
        return self.objects[(namespace, name)]


class Node:
    """The machine, its DRA plugin and the node agent's claim lookup over it."""

    def __init__(self, tmp: Path, config: NodeConfig | None = None) -> None:
        self.root = write_machine(tmp / "root")
        self.topo: Topology = discover(self.root)
        self.claims = Claims()
        self.agent = NodeAgent(config or NodeConfig(node_name=NODE, nvml="false", watch_udev=False))
        self.agent.dra = DRANode(
            self.topo,
            node_name=NODE,
            api_client=ApiClient(Configuration()),
            root=self.root,
            cdi_dir=tmp / "cdi",
            registry_dir=tmp / "reg",
            plugin_dir=tmp / "plug",
        )
        self.plugin = self.agent.dra.plugin
        self.plugin.get_claim = self.claims.get

    def prepare(self, name: str, *addresses: str) -> ClaimRef:
        ref = self.claims.add(name, *addresses)
        assert self.plugin.prepare([ref])[ref.uid].error == ""
        return ref

    def source(self, policy: str = "none") -> KubePodSource:
        view = CPUTopology.from_topology(self.topo)
        mgr = CPUManager(
            self.topo,
            StaticPolicy(view, num_reserved_cpus=1, topology_manager_policy=policy),
            topology_manager_policy=policy,
        )
        mgr.start()
        api = ApiClient(Configuration())  # never called: events are applied directly
        return KubePodSource(api, NODE, mgr, claim_affinity=self.agent.claim_affinity)

    def cpus(self, source: KubePodSource, uid: str, container: str = "app") -> CPUSet | None:
        return source.manager.state.get_cpuset(uid, container)

    def numa_of(self, cpus: CPUSet | None) -> CPUSet:
        assert cpus is not None
        return self.topo.numa_nodes_of(cpus)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def container_id(pod_name: str, index: int) -> str:
    return (f"{index:02x}" + pod_name.encode().hex()).ljust(64, "0")[:64]


def pod(
    name: str,
    *,
    cpu: int = 4,
    uses: Mapping[str, tuple[str, ...]] | None = None,
    claims: Any = None,
    generated: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A running Guaranteed pod; *uses* maps each container to the claim entries it uses,
    *claims* is ``spec.resourceClaims``, *generated* the claims made from templates."""
    uses = uses if uses is not None else {"app": ("gpu",)}
    res = {"cpu": str(cpu), "memory": "64Mi"}
    containers = [
        {"name": c, "resources": {"requests": res, "limits": res, "claims": [{"name": e} for e in entries]}}
        for c, entries in uses.items()
    ]
    uid = f"uid-{name}"
    status: dict[str, Any] = {
        "phase": "Running",
        "containerStatuses": [
            {"name": c, "containerID": f"containerd://{container_id(name, i)}", "state": {"running": {}}}
            for i, c in enumerate(uses)
        ],
    }
    if generated:
        status["resourceClaimStatuses"] = [{"name": e, "resourceClaimName": n} for e, n in generated.items()]
    spec: dict[str, Any] = {"nodeName": NODE, "containers": containers}
    spec["resourceClaims"] = (
        claims if claims is not None else [{"name": "gpu", "resourceClaimName": "gpu-claim"}]
    )
    return {"metadata": {"name": name, "namespace": NS, "uid": uid}, "spec": spec, "status": status}


def added(source: KubePodSource, obj: dict[str, Any]) -> None:
    source.apply({"type": "ADDED", "object": obj})


# ------------------------------------------------------------------ the plugin
def test_plugin_answers_the_numa_nodes_of_a_prepared_claim(node: Node, tmp_path: Path) -> None:
    assert node.plugin.claim_numa_nodes(NS, "gpu-claim") is None  # not prepared
    ref = node.prepare("gpu-claim", *ON_NODE_1)
    both = node.prepare("both", ON_NODE_0, ON_NODE_1[0])
    assert node.plugin.claim_numa_nodes(NS, "gpu-claim") == frozenset({1})
    assert node.plugin.claim_numa_nodes(NS, "both") == frozenset({0, 1})
    assert node.plugin.claim_numa_nodes("other", "gpu-claim") is None
    # after a restart, from the checkpoint alone
    again = DRAPlugin(
        discover_gpus(node.topo, root=node.root),
        node_name=NODE,
        get_claim=node.claims.get,
        cdi_dir=tmp_path / "cdi",
        checkpoint_path=tmp_path / "plug" / "checkpoint.json",
        root=node.root,
    )
    assert again.claim_numa_nodes(NS, "gpu-claim") == frozenset({1})
    node.plugin.unprepare([ref])
    assert node.plugin.claim_numa_nodes(NS, "gpu-claim") is None
    assert node.agent.claim_affinity(NS, frozenset({"gpu-claim", "both", "unknown"})) == frozenset({0, 1})
    node.plugin.unprepare([both])
    assert node.agent.claim_affinity(NS, frozenset({"gpu-claim", "both"})) is None


def test_without_the_dra_driver_claims_place_nothing(tmp_path: Path) -> None:
    agent = NodeAgent(NodeConfig(node_name=NODE, nvml="false", watch_udev=False))
    assert agent.dra is None and agent.claim_affinity(NS, frozenset({"gpu-claim"})) is None


# ------------------------------------------------------------------ the pod source
@pytest.mark.parametrize("how", ["direct", "from-template"])
def test_exclusive_cpus_go_to_the_numa_node_of_the_claims_gpus(node: Node, how: str) -> None:
    node.prepare("gpu-claim", *ON_NODE_1)
    source = node.source()
    if how == "direct":
        added(source, pod("train"))
    else:
        added(source, pod("train", claims=[{"name": "gpu", "resourceClaimTemplateName": "t"}],
                          generated={"gpu": "gpu-claim"}))  # fmt: skip
    got = node.cpus(source, "uid-train")
    assert got is not None and len(got) == 4
    assert node.numa_of(got) == CPUSet.of(1)
    assert got <= CPUSet.parse("8-15,24-31")
    assert [i.numa_affinity for i in source.running()] == [frozenset({1})]


def test_a_container_not_using_the_claim_is_not_constrained(node: Node) -> None:
    node.prepare("gpu-claim", *ON_NODE_1)
    source = node.source()
    added(source, pod("train", uses={"side": (), "app": ("gpu",)}))
    by_name = {i.container_name: i for i in source.running()}
    assert by_name["side"].numa_affinity is None and by_name["app"].numa_affinity == frozenset({1})
    assert node.numa_of(node.cpus(source, "uid-train", "side")) == CPUSet.of(0)  # kubelet's own choice
    assert node.numa_of(node.cpus(source, "uid-train", "app")) == CPUSet.of(1)


@pytest.mark.parametrize("claim", ["unprepared-claim", "not-generated-yet"])
def test_an_unknown_or_unprepared_claim_places_nothing(node: Node, claim: str) -> None:
    node.claims.add("unprepared-claim", *ON_NODE_1)  # allocated, never prepared here
    source = node.source("single-numa-node")
    entries = (
        [{"name": "gpu", "resourceClaimName": claim}]
        if claim != "not-generated-yet"
        else [{"name": "gpu", "resourceClaimTemplateName": "t"}]
    )
    added(source, pod("train", claims=entries))
    assert [i.numa_affinity for i in source.running()] == [None]
    assert node.numa_of(node.cpus(source, "uid-train")) == CPUSet.of(0)


def test_single_numa_node_refuses_when_the_gpus_node_is_full(node: Node, caplog: Any) -> None:
    node.prepare("gpu-claim", *ON_NODE_1)
    source = node.source("single-numa-node")
    added(source, pod("filler", cpu=14))  # the same claim: 14 of node 1's 16 CPUs
    assert node.numa_of(node.cpus(source, "uid-filler")) == CPUSet.of(1)
    with caplog.at_level(logging.ERROR, logger="cpumanager.kube_source"):
        added(source, pod("train"))
    assert node.cpus(source, "uid-train") is None
    assert any("default/train container app not admitted" in r.getMessage() for r in caplog.records)
    free0 = source.manager.assignable_cpus() & node.topo.cpus_in_numa_nodes(0)
    assert len(free0) >= 4  # node 0 had room: the claim's GPU node decided


def test_malformed_claims_are_logged_and_the_container_runs_unconstrained(node: Node, caplog: Any) -> None:
    node.prepare("gpu-claim", *ON_NODE_1)
    source = node.source("single-numa-node")
    with caplog.at_level(logging.ERROR, logger="cpumanager.kube_source"):
        added(source, pod("train", claims=[{"name": "gpu", "resourceClaimName": "x" * 300}]))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "default/train" in lines[0], lines
    assert "spec.resourceClaims[0].resourceClaimName" in lines[0], lines
    assert [i.numa_affinity for i in source.running()] == [None]
    assert node.numa_of(node.cpus(source, "uid-train")) == CPUSet.of(0)


# ------------------------------------------------------------------ the node agent
def test_the_agents_pod_source_places_cpus_by_the_claims_it_watches(tmp_path: Path) -> None:
    """The pod source the node agent builds (watching the API server) asks the agent's DRA
    driver, and the container's cgroup gets CPUs of NUMA node 1 only."""
    api = ApiServerStandIn().start()
    (tmp_path / "cg").mkdir()
    config = NodeConfig(
        node_name=NODE,
        pod_source="kubernetes",
        kubeconfig=str(write_kubeconfig(tmp_path / "kubeconfig", api.url)),
        state_dir=tmp_path / "state",
        sysfs_root=tmp_path / "root",
        cgroup_root=tmp_path / "cg",
        cgroup_version="v2",
        nvml="false",
        watch_udev=False,
        exclusive_cpu_resource_name="",
        topology_manager_policy="single-numa-node",
    )
    node = Node(tmp_path, config)
    node.prepare("gpu-claim", *ON_NODE_1)
    agent = node.agent
    agent.topology = node.topo
    mgr = agent.manager = agent._start_manager(node.topo)
    assert mgr.writer is not None
    ref = ContainerCgroup(pod_uid="uid-train", container_id=container_id("train", 0), qos="guaranteed")
    cgroup = mgr.writer.path_for(ref)
    cgroup.mkdir(parents=True)
    for name, text in (("cpuset.cpus", "0-31"), ("cpuset.mems", "0-1")):
        (cgroup / name).write_text(text)
    source = agent._pod_source()
    try:
        assert source.synced.wait(5)
        api.put_pod(pod("train"))

        # The state records the CPUs before the transaction writes the cgroup and the owner
        # entry, so wait for all three: the pod source applies them on its own thread.
        def applied() -> bool:
            got = mgr.state.get_cpuset("uid-train", "app")
            return (
                got is not None
                and CPUSet.parse((cgroup / "cpuset.cpus").read_text()) == got
                and ("uid-train", "app") in mgr.owners
            )

        deadline = time.monotonic() + 10
        while not applied() and time.monotonic() < deadline:
            time.sleep(0.02)
        got = mgr.state.get_cpuset("uid-train", "app")
        assert got is not None and len(got) == 4 and node.numa_of(got) == CPUSet.of(1)
        assert CPUSet.parse((cgroup / "cpuset.cpus").read_text()) == got
        assert "devices on NUMA node(s) 1" in mgr.owners[("uid-train", "app")].why
    finally:
        source.stop()
        api.stop()
