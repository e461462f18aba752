"""The Kubernetes pod source against the API-server stand-in, driving a real CPU manager
that writes cpusets into a cgroup tree in a temp directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from cpumanager.cgroupfs import CgroupV1Cpuset, ContainerCgroup
from cpumanager.cpu_topology import CPUTopology
from cpumanager.kube_source import KubePodSource
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from tests.apiserver_standin import ApiServerStandIn
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology

NODE = "node-a"


def four_cpus() -> Topology:
    cpus = CPUSet.range(0, 3)
    return Topology.build(
        packages=[Package(0, cpus, 0)],
        numa_nodes=[NumaNode(0, cpus)],
        cores=[Core(id=c, core_id=c, package=0, cpus=CPUSet.of(c)) for c in range(4)],
    )


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def pod(
    name: str, uid: str, *, cpu: str, node: str = NODE, cid: str | None = None, state: str = "running"
) -> dict[str, Any]:
    res = {"requests": {"cpu": cpu, "memory": "64Mi"}, "limits": {"cpu": cpu, "memory": "64Mi"}}
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"nodeName": node, "containers": [{"name": "app", "resources": res}]},
        "status": {"phase": "Pending"},
    }
    if cid is not None:
        obj["status"] = {
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "containerID": f"containerd://{cid}", "state": {state: {}}}
            ],
        }
    return obj


@pytest.fixture
def apiserver() -> Iterator[ApiServerStandIn]:
    server = ApiServerStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def api(apiserver: ApiServerStandIn) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = apiserver.url
    return client.ApiClient(cfg)


@pytest.fixture
def node(tmp_path: Path) -> tuple[CPUManager, CgroupV1Cpuset]:
    topo = four_cpus()
    writer = CgroupV1Cpuset(tmp_path)
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1), writer=writer)
    mgr.start()
    return mgr, writer


def make_cgroup(writer: CgroupV1Cpuset, uid: str, cid: str) -> Path:
    """What the runtime does before the container id shows up in pod status."""
    path = writer.path_for(ContainerCgroup(pod_uid=uid, container_id=cid))
    path.mkdir(parents=True)
    (path / "cpuset.cpus").write_text("0-3")
    (path / "cpuset.mems").write_text("0")
    return path


def test_guaranteed_pod_is_pinned_then_released(
    apiserver: ApiServerStandIn,
    api: client.ApiClient,
    node: tuple[CPUManager, CgroupV1Cpuset],
) -> None:
    mgr, writer = node
    source = KubePodSource(api, NODE, mgr, watch_timeout_s=1).start()
    try:
        assert source.synced.wait(2)
        apiserver.put_pod(pod("db", "uid-db", cpu="2"))  # scheduled, not started
        apiserver.put_pod(pod("other", "uid-o", cpu="2", node="node-b", cid="ccc"))  # another node
        path = make_cgroup(writer, "uid-db", "abc123")
        apiserver.put_pod(pod("db", "uid-db", cpu="2", cid="abc123"))  # container id appears
        assert wait_for(lambda: (path / "cpuset.cpus").read_text() != "0-3")
        pinned = CPUSet.parse((path / "cpuset.cpus").read_text())
        assert len(pinned) == 2 and mgr.exclusive_cpus() == pinned
        assert [i.key for i in source.running()] == [("uid-db", "app")]
        apiserver.delete_pod("default", "db")
        assert wait_for(lambda: mgr.exclusive_cpus() == CPUSet())
        assert mgr.shared_pool() == CPUSet.range(0, 3) and source.running() == []
    finally:
        source.stop()


def test_terminated_container_releases_its_cpus(
    apiserver: ApiServerStandIn,
    api: client.ApiClient,
    node: tuple[CPUManager, CgroupV1Cpuset],
) -> None:
    mgr, writer = node
    make_cgroup(writer, "uid-j", "job1")
    apiserver.put_pod(pod("job", "uid-j", cpu="1", cid="job1"))
    source = KubePodSource(api, NODE, mgr, watch_timeout_s=1).start()
    try:
        assert wait_for(lambda: len(mgr.exclusive_cpus()) == 1)  # from the initial list
        apiserver.put_pod(pod("job", "uid-j", cpu="1", cid="job1", state="terminated"))
        assert wait_for(lambda: mgr.exclusive_cpus() == CPUSet())
    finally:
        source.stop()


def test_pod_moved_off_the_node_by_selector_is_a_delete(
    apiserver: ApiServerStandIn,
    api: client.ApiClient,
    node: tuple[CPUManager, CgroupV1Cpuset],
) -> None:
    mgr, writer = node
    make_cgroup(writer, "uid-m", "m1")
    source = KubePodSource(api, NODE, mgr, watch_timeout_s=1).start()
    try:
        assert source.synced.wait(2)
        apiserver.put_pod(pod("m", "uid-m", cpu="1", cid="m1"))
        assert wait_for(lambda: len(mgr.exclusive_cpus()) == 1)
        apiserver.put_pod(pod("m", "uid-m", cpu="1", cid="m1", node="node-b"))  # filtered watch: DELETED
        assert wait_for(lambda: mgr.exclusive_cpus() == CPUSet())
    finally:
        source.stop()


def test_relist_after_410_gone_forgets_deleted_pods(
    apiserver: ApiServerStandIn,
    api: client.ApiClient,
    node: tuple[CPUManager, CgroupV1Cpuset],
) -> None:
    mgr, writer = node
    make_cgroup(writer, "uid-g", "g1")
    apiserver.put_pod(pod("g", "uid-g", cpu="1", cid="g1"))
    source = KubePodSource(api, NODE, mgr, watch_timeout_s=1).start()
    assert wait_for(lambda: len(mgr.exclusive_cpus()) == 1)
    source.stop()
    old_rv = source.resource_version
    apiserver.delete_pod("default", "g")  # missed while not watching
    apiserver.compact()  # ... and out of the watch history
    source.start()
    try:
        assert wait_for(lambda: mgr.exclusive_cpus() == CPUSet())
        assert int(source.resource_version) > int(old_rv)
    finally:
        source.stop()


def test_unreachable_api_server_backs_off_and_stops_promptly(
    node: tuple[CPUManager, CgroupV1Cpuset],
) -> None:
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: connection refused
    source = KubePodSource(client.ApiClient(cfg), NODE, node[0], watch_timeout_s=1, backoff_s=0.05).start()
    time.sleep(0.3)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 1.0
    assert not source.synced.is_set()
