"""Alignment with the pod's devices on a node: the node agent (Kubernetes pod source, the
API-server stand-in) asks kubelet's podresources API (the stand-in, on a real unix
socket) where a container's GPU is, and takes its exclusive CPUs and hugepages there.

The node is a named fake topology: ``dual_socket_no_ht`` (2 sockets, 4 cores each, NUMA
node 0 = CPUs 0-3, node 1 = CPUs 4-7) with 2 MiB hugepages and one NVIDIA GPU on NUMA
node 1. Cgroups are written under a temporary cgroup-v2-shaped directory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpumanager.cgroupfs import ContainerCgroup
from deviceplugin.api.podresources.v1 import api_pb2 as pr_pb2
from tests.fakesysfs import FakePCI, dual_socket_no_ht, write_fake_sysfs
from tests.kubeconfig_file import write_kubeconfig
from tests.kubelet_standin import PodResourcesStandin
from tests.nrt_standin import NRTApiServerStandIn
from topolet.node_agent import NodeAgent
from topolet.node_config import NodeConfig
from topology.cpuset import CPUSet

GPU_ADDR = "0000:86:00.0"
NODE = dataclasses.replace(
    dual_socket_no_ht,
    hugepages_2m=64,
    pci=(FakePCI(GPU_ADDR, 0x10DE, 0x1DB4, 0x030200, numa_node=1, driver="nvidia"),),
)


def wait_for(check: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def gpu_listing(pods: list[tuple[str, str]]) -> Any:
    return pr_pb2.ListPodResourcesResponse(
        pod_resources=[
            pr_pb2.PodResources(
                name=name,
                namespace="default",
                containers=[
                    pr_pb2.ContainerResources(
                        name="app",
                        devices=[
                            pr_pb2.ContainerDevices(
                                resource_name="nvidia.com/gpu",
                                device_ids=[gpu],
                                topology=pr_pb2.TopologyInfo(nodes=[pr_pb2.NUMANode(ID=1)]),
                            )
                        ],
                    )
                ],
            )
            for name, gpu in pods
        ]
    )


def pod(name: str, uid: str, cid: str, cpus: str) -> dict[str, Any]:
    limits = {"cpu": cpus, "memory": "1Gi", "hugepages-2Mi": "16Mi", "nvidia.com/gpu": "1"}
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "app", "resources": {"requests": limits, "limits": limits}}],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "containerID": f"containerd://{cid}", "state": {"running": {}}}
            ],
        },
    }


@pytest.mark.parametrize("policy", ["best-effort", "single-numa-node"])
def test_pod_cpus_and_hugepages_follow_its_gpu_to_numa_node_1(tmp_path: Path, policy: str) -> None:
    api = NRTApiServerStandIn().start()
    assert isinstance(api, NRTApiServerStandIn)
    (tmp_path / "cg").mkdir()
    config = NodeConfig(
        node_name="n1",
        pod_source="kubernetes",
        kubeconfig=str(write_kubeconfig(tmp_path / "kubeconfig", api.url)),
        state_dir=tmp_path / "state",
        sysfs_root=write_fake_sysfs(tmp_path / "sysfs", NODE),
        cgroup_root=tmp_path / "cg",
        cgroup_version="v2",
        device_plugin_dir=tmp_path / "dp",
        pod_resources_socket=tmp_path / "pr.sock",
        watch_udev=False,
        nvml="false",
        metrics_bind_address="127.0.0.1:0",
        exclusive_cpu_resource_name="",
        topology_manager_policy=policy,
    )
    with PodResourcesStandin(tmp_path / "pr.sock") as kubelet_pods:
        a = NodeAgent(config)
        a.start()
        try:
            assert a.manager is not None and a.manager.writer is not None and a.topology is not None
            node1 = a.topology.cpus_in_numa_nodes(1)
            uid, cid = "6a1b2c3d-0000-4000-8000-00000000beef", "ab" * 32
            ref = ContainerCgroup(pod_uid=uid, container_id=cid, qos="guaranteed", runtime="cri-containerd")
            cgroup = a.manager.writer.path_for(ref)
            cgroup.mkdir(parents=True)
            for name, text in (("cpuset.cpus", "0-7"), ("cpuset.mems", "0-1")):
                (cgroup / name).write_text(text)
            kubelet_pods.list_response = gpu_listing([("train", GPU_ADDR)])
            api.put_pod(pod("train", uid, cid, "2"))
            wait_for(lambda: a.manager.state.get_cpuset(uid, "app") is not None, what="pod admitted")  # type: ignore[union-attr]
            held = a.manager.state.get_cpuset(uid, "app")
            assert held is not None and len(held) == 2 and held <= node1, held
            wait_for(lambda: CPUSet.parse((cgroup / "cpuset.cpus").read_text()) == held, what="cgroup pinned")
            assert (cgroup / "cpuset.mems").read_text().strip() == "1"
            assert a.manager.hugepages.nodes_of((uid, "app")) == {1}
            owner = a.manager.owners[(uid, "app")]
            assert owner.kind == "pod" and owner.identity == "default/train/app"
            assert "devices on NUMA node(s) 1" in owner.why

            # A second GPU pod asking for more CPUs than node 1 has left (4 - 2 = 2 < 3).
            uid2, cid2 = "6a1b2c3d-0000-4000-8000-00000000cafe", "cd" * 32
            ref2 = ContainerCgroup(
                pod_uid=uid2, container_id=cid2, qos="guaranteed", runtime="cri-containerd"
            )
            cgroup2 = a.manager.writer.path_for(ref2)
            cgroup2.mkdir(parents=True)
            for name, text in (("cpuset.cpus", "0-7"), ("cpuset.mems", "0-1")):
                (cgroup2 / name).write_text(text)
            kubelet_pods.list_response = gpu_listing([("train", GPU_ADDR), ("big", GPU_ADDR)])
            api.put_pod(pod("big", uid2, cid2, "3"))
            if policy == "single-numa-node":
                time.sleep(1.0)
                a.sweep()
                assert a.manager.state.get_cpuset(uid2, "app") is None  # refused: 3 > 2 on node 1
            else:
                wait_for(lambda: a.manager.state.get_cpuset(uid2, "app") is not None, what="second pod")  # type: ignore[union-attr]
                big = a.manager.state.get_cpuset(uid2, "app")
                assert big is not None and len(big) == 3 and len(big & node1) == 2  # prefers node 1
        finally:
            a.stop()
            api.stop()
