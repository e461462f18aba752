"""The exclusive-CPU resource over a real CPU manager and a real gRPC server.

The machine: 64 CPUs, 2 sockets of 16 cores, SMT-2, Linux numbering (core k of socket s
holds CPUs 16s+k and 32+16s+k), one NUMA node per socket; CPUs 0 and 32 are reserved.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from cpumanager.checkpoint import CheckpointStore
from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from deviceplugin.cpus import ExclusiveCPUResource, placeholder_owner
from deviceplugin.errors import InsufficientDevicesError, InvalidRequestError
from deviceplugin.podresources import ContainerDevices, ContainerResources, PodResources
from deviceplugin.server import DevicePluginServer
from tests.kubelet_standin import KubeletStandin
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology

RES = "topolet.io/exclusive-cpus"


def two_sockets_64() -> Topology:
    sockets = [CPUSet.range(0, 15) | CPUSet.range(32, 47), CPUSet.range(16, 31) | CPUSet.range(48, 63)]
    return Topology.build(
        packages=[Package(id=s, cpus=c, os_index=s) for s, c in enumerate(sockets)],
        numa_nodes=[NumaNode(id=s, cpus=c) for s, c in enumerate(sockets)],
        cores=[Core(id=k, core_id=k % 16, package=k // 16, cpus=CPUSet.of(k, k + 32)) for k in range(32)],
    )


TOPO = two_sockets_64()


def ids(text: str) -> list[str]:
    return [f"cpu{c}" for c in CPUSet.parse(text)]


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[CPUManager]:
    store = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static")
    mgr = CPUManager(TOPO, StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=2), store=store)
    mgr.start()
    yield mgr
    mgr.close()


def test_devices_are_assignable_cpus_with_numa(manager: CPUManager) -> None:
    devices = ExclusiveCPUResource(manager).devices()
    assert [d.id for d in devices] == ids("1-31,33-63")
    assert {d.id: d.numa_nodes for d in devices}["cpu40"] == (0,)
    assert {d.id: d.numa_nodes for d in devices}["cpu63"] == (1,)


@pytest.mark.parametrize(
    ("available", "must", "size", "expected"),
    [
        ("1-31,33-63", "", 2, "1,33"),
        ("1-31,33-63", "", 4, "1-2,33-34"),
        ("1-31,33-63", "40", 2, "8,40"),
        ("1-31,33-63", "40,57", 4, "8,25,40,57"),
        ("1-31,33-63", "20", 3, "16,20,52"),
        ("5,20,52", "", 2, "20,52"),
        ("1-63", "", 0, ""),
    ],
    ids=[
        "all-free/size2/one-whole-core",
        "all-free/size4/two-whole-cores",
        "must-cpu40/size2/its-sibling",
        "must-two-sockets/size4/their-siblings",
        "must-cpu20/size3/sibling-then-same-node",
        "few-free/size2/prefer-whole-core",
        "size0/empty",
    ],
)
def test_preferred_allocation(
    manager: CPUManager, available: str, must: str, size: int, expected: str
) -> None:
    resource = ExclusiveCPUResource(manager)
    assert sorted(resource.preferred_allocation(ids(available), ids(must), size)) == sorted(ids(expected))


@pytest.mark.parametrize(
    ("device_ids", "error", "text"),
    [
        (["cpu1", "gpu0"], InvalidRequestError, "'gpu0' is not of the form 'cpu<N>'"),
        (["cpu01"], InvalidRequestError, "'cpu01' is not of the form"),
        (["cpu0"], InsufficientDevicesError, 'cpus "0" are not free'),
    ],
    ids=["foreign-id", "leading-zero", "reserved-cpu"],
)
def test_allocate_rejects(
    manager: CPUManager, device_ids: list[str], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(")):
        ExclusiveCPUResource(manager).allocate(device_ids)
    assert manager.exclusive_cpus() == CPUSet()


def test_allocate_records_placeholder_and_refuses_a_second_time(manager: CPUManager) -> None:
    resource = ExclusiveCPUResource(manager)
    answer = resource.allocate(["cpu9", "cpu41"])
    assert dict(answer.envs) == {"TOPOLET_CPUS": "9,41"}
    assert manager.state.get_cpuset(*placeholder_owner(CPUSet.of(9, 41))) == CPUSet.of(9, 41)
    assert manager.shared_pool() == CPUSet.range(0, 63) - CPUSet.of(9, 41)
    with pytest.raises(InsufficientDevicesError, match='"9,41" are not free'):
        resource.allocate(["cpu41", "cpu9"])
    assert "cpu9" in [d.id for d in resource.devices()]  # handed out by us: still listed


def test_reassign_rekeys_placeholder_from_podresources(manager: CPUManager) -> None:
    resource = ExclusiveCPUResource(manager)
    resource.allocate(["cpu3", "cpu35"])
    pods = [
        PodResources(
            "web",
            "default",
            (
                ContainerResources(
                    "app",
                    (
                        ContainerDevices(RES, ("cpu35", "cpu3"), (0,)),
                        ContainerDevices("nvidia.com/gpu", ("x",)),
                    ),
                ),
            ),
        ),
        PodResources("other", "default", (ContainerResources("side"),)),
    ]
    uids = {("default", "web"): "uid-web"}
    assert resource.reassign(pods, lambda ns, name: uids.get((ns, name))) == 1
    assert manager.state.get_cpuset("uid-web", "app") == CPUSet.of(3, 35)
    assert manager.state.get_cpuset(*placeholder_owner(CPUSet.of(3, 35))) is None
    assert "cpu3" in [d.id for d in resource.devices()]
    assert resource.reassign(pods, lambda ns, name: uids.get((ns, name))) == 0  # already done
    assert manager.owners[("uid-web", "app")].kind == "device-plugin"
    assert manager.owners[("uid-web", "app")].identity == "default/web/app"
    fresh = ExclusiveCPUResource(manager)  # a new plugin instance: the owner record says whose
    assert "cpu3" in [d.id for d in fresh.devices()]


def test_thousand_concurrent_calls_never_hand_a_cpu_out_twice(manager: CPUManager, tmp_path: Path) -> None:
    kubelet = KubeletStandin(tmp_path)
    kubelet.start()
    server = DevicePluginServer(ExclusiveCPUResource(manager), None, plugin_dir=tmp_path, unary_workers=8)
    server.start()
    held: dict[str, CPUSet] = {}
    lock = threading.Lock()
    counts = {"ok": 0, "exhausted": 0, "preferred": 0}
    try:
        kubelet.wait_snapshot(RES)

        def one(i: int) -> None:
            rng = random.Random(i)
            free = [f"cpu{c}" for c in manager.assignable_cpus()]
            size = rng.randint(1, 3)
            if len(free) < size:
                free = [f"cpu{c}" for c in CPUSet.parse("1-31,33-63")]
            chosen = kubelet.preferred_allocation(RES, free, [], size)
            with lock:
                counts["preferred"] += 1
            try:
                answer = kubelet.allocate(RES, chosen)
            except grpc.RpcError as e:
                assert e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
                with lock:
                    counts["exhausted"] += 1
                return
            cpus = CPUSet.parse(answer.envs["TOPOLET_CPUS"])
            with lock:
                taken = CPUSet().union(*held.values())
                assert cpus.isdisjoint(taken), f"{cpus} handed out while {taken} held"
                owner = placeholder_owner(cpus)[0]
                held[owner] = cpus
                counts["ok"] += 1
                release = rng.random() < 0.5
                if release:
                    del held[owner]
            if release:
                manager.remove_container(*placeholder_owner(cpus))

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(500)))  # 500 GetPreferredAllocation + 500 Allocate
    finally:
        server.stop()
        kubelet.stop()
    assert counts["preferred"] == 500 and counts["ok"] + counts["exhausted"] == 500
    assert counts["ok"] > 30
    state = manager.state.assignments()
    owned = [c for cs in state.values() for c in cs.values()]
    assert {p: cs["exclusive-cpus"] for p, cs in state.items()} == held
    assert sum(len(c) for c in owned) == len(CPUSet().union(*owned))
    assert CPUSet().union(*owned).isdisjoint(manager.shared_pool())
    assert CPUSet().union(*owned) | manager.shared_pool() == CPUSet.range(0, 63)
    reloaded = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").load()
    assert reloaded is not None and reloaded.default_cpu_set == manager.shared_pool()
