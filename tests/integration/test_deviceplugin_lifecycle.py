"""The device plugin server's life with kubelet, over real unix sockets in temp dirs.

Kubelet is :mod:`tests.kubelet_standin`; the resources are real: the GPUs of the
``nvidiagpunumanodes`` hwloc snapshot (6 GPUs, NUMA 0 and 8) and exclusive CPUs over a
real CPU manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from deviceplugin.cpus import ExclusiveCPUResource
from deviceplugin.gpu import gpu_resources
from deviceplugin.resources import HealthEvent, HealthQueue
from deviceplugin.server import DevicePluginServer
from tests.kubelet_standin import KubeletStandin
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology
from topology.sysfs import discover

GPU = "nvidia.com/gpu"
CPUS = "topolet.io/exclusive-cpus"


class QueueHealth:
    """A health source that is just a queue: tests put events, the server reads them."""

    def __init__(self) -> None:
        self.queue = HealthQueue(16)
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def get(self, timeout: float) -> HealthEvent | None:
        return self.queue.get(timeout)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    # unix socket paths are limited to 107 bytes: keep the directory short
    return tmp_path


@pytest.fixture
def kubelet(plugin_dir: Path) -> Iterator[KubeletStandin]:
    k = KubeletStandin(plugin_dir)
    k.start()
    yield k
    k.stop()


@pytest.fixture
def gpu_server(
    hwloc_snapshot: Callable[[str], Path], plugin_dir: Path, kubelet: KubeletStandin
) -> Iterator[tuple[DevicePluginServer, QueueHealth]]:
    root = hwloc_snapshot("nvidiagpunumanodes")
    (resource,) = gpu_resources(discover(root), root=root)
    health = QueueHealth()
    server = DevicePluginServer(resource, health, plugin_dir=plugin_dir, socket_name="nvidia-gpu.sock")
    server.start()
    yield server, health
    server.stop()


def small_topology() -> Topology:
    nodes = [CPUSet.parse("0-3"), CPUSet.parse("4-7")]
    return Topology.build(
        packages=[Package(id=s, cpus=c, os_index=s) for s, c in enumerate(nodes)],
        numa_nodes=[NumaNode(id=s, cpus=c) for s, c in enumerate(nodes)],
        cores=[Core(id=c, core_id=c % 4, package=c // 4, cpus=CPUSet.of(c)) for c in range(8)],
    )


ALL_GPUS = {
    "0004:05:00.0": 0,
    "0004:06:00.0": 0,
    "0006:00:00.0": 0,
    "0007:00:00.0": 8,
    "0035:04:00.0": 8,
    "0035:05:00.0": 8,
}


def healthy_all() -> dict[str, tuple[str, tuple[int, ...]]]:
    return {gpu: ("Healthy", (node,)) for gpu, node in ALL_GPUS.items()}


def test_register_after_serving_with_file_name_endpoint(
    gpu_server: tuple[DevicePluginServer, QueueHealth], kubelet: KubeletStandin, plugin_dir: Path
) -> None:
    reg = kubelet.wait_registered(GPU)
    assert (reg.request.version, reg.request.endpoint, reg.request.resource_name) == (
        "v1beta1",
        "nvidia-gpu.sock",
        GPU,
    )
    assert reg.socket_path == plugin_dir / "nvidia-gpu.sock"
    assert reg.options.get_preferred_allocation_available
    assert reg.request.options == reg.options
    assert kubelet.rejections == []


def test_first_snapshot_is_immediate_and_full(
    gpu_server: tuple[DevicePluginServer, QueueHealth], kubelet: KubeletStandin
) -> None:
    reg = kubelet.wait_registered(GPU)
    kubelet.wait_snapshot(GPU, timeout=1.0)
    assert reg.snapshots[0] == healthy_all()
    assert kubelet.allocatable(GPU) == 6


def test_health_change_sends_full_snapshot_and_recovers(
    gpu_server: tuple[DevicePluginServer, QueueHealth], kubelet: KubeletStandin
) -> None:
    _, health = gpu_server
    kubelet.wait_snapshot(GPU)
    health.queue.put(HealthEvent("0007:00:00.0", False))
    sick = kubelet.wait_snapshot(GPU, lambda s: s["0007:00:00.0"][0] == "Unhealthy")
    assert sick == {**healthy_all(), "0007:00:00.0": ("Unhealthy", (8,))}
    assert kubelet.allocatable(GPU) == 5
    health.queue.put(HealthEvent("0007:00:00.0", True))
    assert kubelet.wait_snapshot(GPU, lambda s: s["0007:00:00.0"][0] == "Healthy") == healthy_all()
    assert kubelet.allocatable(GPU) == 6


def test_kubelet_restart_reregisters_within_a_second(
    gpu_server: tuple[DevicePluginServer, QueueHealth], kubelet: KubeletStandin
) -> None:
    server, _ = gpu_server
    kubelet.wait_snapshot(GPU)
    kubelet.restart()
    began = time.monotonic()
    reg = kubelet.wait_registered(GPU, count=2, timeout=2.0)
    assert reg.at - began <= 1.0
    assert kubelet.wait_snapshot(GPU, timeout=1.0) == healthy_all()
    assert GPU not in kubelet.stopped_resources
    assert server.registrations == 2
    assert kubelet.allocate(GPU, ["0004:05:00.0"]).envs["NVIDIA_VISIBLE_DEVICES"] == "0004:05:00.0"


def test_own_socket_removed_alone_is_served_again(
    gpu_server: tuple[DevicePluginServer, QueueHealth], kubelet: KubeletStandin, plugin_dir: Path
) -> None:
    kubelet.wait_snapshot(GPU)
    (plugin_dir / "nvidia-gpu.sock").unlink()
    kubelet.wait_registered(GPU, count=2, timeout=2.0)
    assert kubelet.wait_snapshot(GPU, timeout=1.0) == healthy_all()
    assert GPU not in kubelet.stopped_resources


def test_stop_removes_only_its_own_socket(
    hwloc_snapshot: Callable[[str], Path], plugin_dir: Path, kubelet: KubeletStandin
) -> None:
    root = hwloc_snapshot("nvidiagpunumanodes")
    (resource,) = gpu_resources(discover(root), root=root)
    foreign = plugin_dir / "other-vendor.sock"
    foreign.write_text("not ours")
    (plugin_dir / "kubelet_internal_checkpoint").write_text("{}")
    server = DevicePluginServer(resource, None, plugin_dir=plugin_dir, socket_name="nvidia-gpu.sock")
    server.start()
    kubelet.wait_snapshot(GPU)
    server.stop()
    server.stop()  # idempotent
    assert sorted(p.name for p in plugin_dir.iterdir()) == [
        "kubelet.sock",
        "kubelet_internal_checkpoint",
        "other-vendor.sock",
    ]

    def gpu_stream_ended() -> bool:
        registration = kubelet.endpoint(GPU)
        return registration is not None and registration.ended

    kubelet.wait_for(gpu_stream_ended)
    assert GPU in kubelet.stopped_resources  # kubelet sees the stream end and marks the devices


def test_plugin_started_before_kubelet_registers_when_it_comes(
    hwloc_snapshot: Callable[[str], Path], plugin_dir: Path
) -> None:
    root = hwloc_snapshot("nvidiagpunumanodes")
    (resource,) = gpu_resources(discover(root), root=root)
    server = DevicePluginServer(resource, None, plugin_dir=plugin_dir, socket_name="nvidia-gpu.sock")
    server.start()
    kubelet = KubeletStandin(plugin_dir)
    try:
        assert not server.registered
        kubelet.start()
        kubelet.wait_registered(GPU, timeout=2.0)
        assert kubelet.wait_snapshot(GPU) == healthy_all()
    finally:
        server.stop()
        kubelet.stop()


def test_cpu_pool_change_sends_new_snapshot(plugin_dir: Path, kubelet: KubeletStandin) -> None:
    topo = small_topology()
    manager = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1))
    manager.start()
    server = DevicePluginServer(ExclusiveCPUResource(manager), None, plugin_dir=plugin_dir)
    server.start()
    try:
        first = kubelet.wait_snapshot(CPUS)
        assert first == {f"cpu{c}": ("Healthy", (c // 4,)) for c in range(1, 8)}
        taken = manager.allocate("pod-a", "app", 2)  # the CPU manager's own path
        mine = list(CPUSet.parse("1-7") - taken)[-2:]
        kubelet.allocate(CPUS, [f"cpu{c}" for c in mine])  # the device plugin path
        later = kubelet.wait_snapshot(CPUS, lambda s: len(s) == 5)
        assert set(later) == {f"cpu{c}" for c in CPUSet.parse("1-7") - taken}
    finally:
        server.stop()
