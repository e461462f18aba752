"""topolet's device plugins against kubelet's own device manager (tests/devicemanager).

kubelet's ``pkg/kubelet/cm/devicemanager`` (k8s.io/kubernetes v1.34.4) runs as a library in
a Go process: its registration server listens on ``<dir>/kubelet.sock``; topolet's real
plugin servers (:class:`deviceplugin.server.DevicePluginServer`) register there, kubelet
dials them back, reads ListAndWatch, and its ``Allocate`` for a pod's container calls
``GetPreferredAllocation`` and ``Allocate`` on them. A second manager instance on the same
folder plays the kubelet restart.

The machine is :mod:`tests.dra_machine`: two NUMA nodes (0 and 1), 32 CPUs, eight NVIDIA
GPUs, four per node, interleaved here by address order, with the NVML stand-in for XID
health. Expected NUMA nodes come from the machine's description (``GPUS``, ``SPEC``), not
from topolet's discovery, so a plugin that reported a wrong node would fail here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cpumanager.checkpoint import CheckpointStore
from cpumanager.checkpoint_format import CPUManagerCheckpoint
from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import CPUManager
from cpumanager.owners import DEVICE_PLUGIN
from cpumanager.policy_static import StaticPolicy
from deviceplugin.cpus import CPU_RESOURCE_NAME, ExclusiveCPUResource, placeholder_owner
from deviceplugin.gpu import GPU_ANNOTATION, GPUResource, gpu_resources
from deviceplugin.nvml import NVMLXidHealth
from deviceplugin.resources import ContainerAllocation
from deviceplugin.server import DevicePluginServer
from tests.devicemanager_go import DeviceManagerHarness, require
from tests.dra_machine import GPUS, SPEC, NVMLInfoStandIn, write_machine
from topology.cpuset import CPUSet
from topology.sysfs import discover

GPU = "nvidia.com/gpu"
CPUS = CPU_RESOURCE_NAME
RESERVED = 2  # CPUs the static policy keeps for the system (one whole core)
#: The truth: NUMA node of every GPU and CPU, from the machine's description.
GPU_NUMA = {g.address: g.numa for g in GPUS}
CPU_NUMA = {c.cpu: c.node for c in SPEC.layout()}
CPU_CORE = {c.cpu: c.core_index for c in SPEC.layout()}
MINOR = {g.address: g.minor for g in GPUS}
#: A cold build of the harness (``go mod vendor`` + compiling kubelet's packages) took 8
#: minutes on a shared 2-core machine, within the first test's setup when CI has not
#: built it beforehand; the tests themselves take about a second each.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def binary() -> Path:
    return require()


@dataclass
class Recorder:
    """What kubelet asked of one topolet resource, and what the resource answered."""

    preferred: list[tuple[list[str], list[str], int, list[str]]] = field(default_factory=list)
    allocated: list[tuple[list[str], ContainerAllocation]] = field(default_factory=list)


def record_gpu(resource: GPUResource, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    preferred, allocate = resource.preferred_allocation, resource.allocate

    def spy_preferred(available: Sequence[str], must_include: Sequence[str], size: int) -> list[str]:
        out = preferred(available, must_include, size)
        rec.preferred.append((sorted(available), sorted(must_include), size, sorted(out)))
        return out

    def spy_allocate(device_ids: Sequence[str]) -> ContainerAllocation:
        out = allocate(device_ids)
        rec.allocated.append((sorted(device_ids), out))
        return out

    monkeypatch.setattr(resource, "preferred_allocation", spy_preferred)
    monkeypatch.setattr(resource, "allocate", spy_allocate)
    return rec


@dataclass
class Node:
    kubelet: DeviceManagerHarness
    gpu: GPUResource
    gpu_server: DevicePluginServer
    gpu_calls: Recorder
    nvml: NVMLInfoStandIn
    cpu_manager: CPUManager
    cpu_server: DevicePluginServer
    cpu_checkpoint: Path
    socket_dir: Path


def wait_for(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def node(
    binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Node]:
    """kubelet's device manager, then topolet's two plugins in its folder; with the
    indirect parameter ``"plugins first"``, the plugins start before kubelet."""
    plugins_first = getattr(request, "param", "") == "plugins first"
    # unix socket paths are limited to 107 bytes: a short folder of its own
    socket_dir = Path(tempfile.mkdtemp(prefix="dm-", dir="/tmp"))
    root = write_machine(tmp_path / "root")
    topo = discover(root)
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    (gpu,) = gpu_resources(topo, root=root)
    calls = record_gpu(gpu, monkeypatch)
    health = NVMLXidHealth([g.address for g in GPUS], nvml, wait_ms=50)
    gpu_server = DevicePluginServer(gpu, health, plugin_dir=socket_dir, poll_interval=0.05)
    cpu_checkpoint = tmp_path / "state" / "cpu_manager_state"
    manager = CPUManager(
        topo,
        StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=RESERVED),
        store=CheckpointStore(cpu_checkpoint, policy_name="static"),
    )
    manager.start()
    cpu_server = DevicePluginServer(
        ExclusiveCPUResource(manager), None, plugin_dir=socket_dir, poll_interval=0.05
    )
    if plugins_first:
        gpu_server.start()
        cpu_server.start()
    kubelet = DeviceManagerHarness(binary, socket_dir, (0, 1), tmp_path / "devicemanager.log")
    try:
        wait_for(lambda: (socket_dir / "kubelet.sock").exists(), what="kubelet.sock")
        gpu_server.start()
        cpu_server.start()
        yield Node(kubelet, gpu, gpu_server, calls, nvml, manager, cpu_server, cpu_checkpoint, socket_dir)
    finally:
        kubelet.close()
        gpu_server.stop()
        cpu_server.stop()
        manager.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


def pod(name: str, limits: dict[str, int], init: dict[str, int] | None = None) -> dict[str, Any]:
    """A Guaranteed pod with one container ``app`` asking for *limits* (and an init
    container ``init`` asking for *init*)."""

    def container(name: str, limits: dict[str, int]) -> dict[str, Any]:
        values = {k: str(v) for k, v in limits.items()}
        return {"name": name, "resources": {"limits": values, "requests": values}}

    spec: dict[str, Any] = {"containers": [container("app", limits)]}
    if init is not None:
        spec["initContainers"] = [container("init", init)]
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())}, "spec": spec}


def wait_resource(node: Node, resource: str, **counts: int) -> dict[str, Any]:
    out = node.kubelet.call("wait_resource", resource=resource, timeout_s=15, **counts)
    assert out["error"] == "", out
    return out


def allocate(
    node: Node, p: dict[str, Any], affinity: list[int] | None = None, container: str = "app"
) -> dict[str, Any]:
    return node.kubelet.call("allocate", pod=p, container=container, affinity=affinity)


def env(out: dict[str, Any]) -> dict[str, str]:
    return {e["Name"]: e["Value"] for e in out["options"]["Envs"] or []}


def run_annotations(out: dict[str, Any]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in out["options"]["Annotations"] or []}


def cpu_claims(path: Path) -> dict[tuple[str, str], tuple[CPUSet, str]]:
    """The CPU manager's checkpoint on disk: (pod, container) → (CPUs, owner kind)."""
    state = CheckpointStore(path, policy_name="static").load_state(repair=False)
    assert isinstance(state.checkpoint, CPUManagerCheckpoint)
    return {
        (p, c): (cpus, state.owners[(p, c)].kind)
        for p, containers in state.checkpoint.entries.items()
        for c, cpus in containers.items()
    }


def ids(cpus: CPUSet) -> list[str]:
    return sorted(f"cpu{c}" for c in cpus)


def cpus_of(device_ids: Sequence[str]) -> CPUSet:
    return CPUSet.of(*(int(i.removeprefix("cpu")) for i in device_ids))


# --------------------------------------------------------------------------- tests


def test_both_plugins_register_and_kubelet_sees_their_numa_topology(node: Node) -> None:
    gpus = wait_resource(node, GPU, capacity=8, allocatable=8)
    assert {d["id"]: d["numa"] for d in gpus["devices"]} == {a: [n] for a, n in GPU_NUMA.items()}
    assert {d["health"] for d in gpus["devices"]} == {"Healthy"}

    free = node.cpu_manager.assignable_cpus()
    assert len(free) == len(CPU_NUMA) - RESERVED
    cpus = wait_resource(node, CPUS, capacity=len(free), allocatable=len(free))
    assert {d["id"]: d["numa"] for d in cpus["devices"]} == {f"cpu{c}": [CPU_NUMA[c]] for c in free}
    assert node.gpu_server.registrations == 1 and node.cpu_server.registrations == 1

    # kubelet's topology hints, computed from what topolet's plugins reported
    out = allocate(node, pod("hints", {GPU: 2, CPUS: 4}))
    assert out["error"] == ""
    for resource in (GPU, CPUS):
        hints = {tuple(h["numa"]): h["preferred"] for h in out["hints"][resource]}
        assert hints == {(0,): True, (1,): True, (0, 1): False}, resource


@pytest.mark.parametrize("node", ["plugins first"], indirect=True)
def test_plugins_started_before_kubelet_register_when_it_starts(node: Node) -> None:
    """kubelet's start removes every socket in its folder but its checkpoint (as on a node
    boot where the plugins came first): topolet's plugins serve again and register."""
    wait_resource(node, GPU, capacity=8, allocatable=8)
    wait_resource(node, CPUS, allocatable=len(node.cpu_manager.assignable_cpus()))
    assert node.gpu_server.registrations == 1 and node.cpu_server.registrations == 1
    assert node.gpu_server.socket_path.exists() and node.cpu_server.socket_path.exists()
    out = allocate(node, pod("after-boot", {GPU: 1, CPUS: 2}))
    assert out["error"] == "" and len(out["devices"][GPU]) == 1 and len(out["devices"][CPUS]) == 2


def test_kubelet_allocates_the_gpus_topolet_prefers(node: Node) -> None:
    wait_resource(node, GPU, allocatable=8)
    out = allocate(node, pod("two", {GPU: 2}))
    assert out["error"] == ""
    chosen = out["devices"][GPU]
    # kubelet asked topolet's plugin, over gRPC, for its preference among all 8, then
    # allocated exactly those and passed them to Allocate
    ((available, must, size, preferred),) = node.gpu_calls.preferred
    assert (available, must, size) == (sorted(GPU_NUMA), [], 2)
    assert chosen == preferred
    ((allocated, answer),) = node.gpu_calls.allocated
    assert allocated == chosen
    assert len({GPU_NUMA[g] for g in chosen}) == 1, "topolet prefers GPUs of one NUMA node"
    # the container's run options are what topolet's plugin answered
    assert env(out) == dict(answer.envs) == {"NVIDIA_VISIBLE_DEVICES": ",".join(chosen)}
    assert run_annotations(out) == {GPU_ANNOTATION: ",".join(chosen)}
    hosts = [d["PathOnHost"] for d in out["options"]["Devices"]]
    assert sorted(hosts) == sorted(
        [f"/dev/nvidia{MINOR[g]}" for g in chosen]
        + ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    )
    assert all(d["Permissions"] == "rw" for d in out["options"]["Devices"])

    # the topology manager put the next container on the other NUMA node: kubelet keeps
    # to the devices topolet reported there and lets topolet choose among them
    other = 1 - GPU_NUMA[chosen[0]]
    out = allocate(node, pod("other", {GPU: 2}), affinity=[other])
    assert out["error"] == ""
    there = sorted(a for a, n in GPU_NUMA.items() if n == other)
    assert node.gpu_calls.preferred[1][:3] == (there, [], 2)
    assert {GPU_NUMA[g] for g in out["devices"][GPU]} == {other}
    assert out["devices"][GPU] == node.gpu_calls.preferred[1][3]

    # more than is left: kubelet refuses before calling the plugin
    out = allocate(node, pod("too-many", {GPU: 5}))
    assert (
        "requested number of devices unavailable for nvidia.com/gpu. Requested: 5, Available: 4"
        in out["error"]
    )
    assert len(node.gpu_calls.allocated) == 2


def test_app_container_reuses_init_gpus_and_topolet_keeps_them_together(node: Node) -> None:
    """kubelet gives an app container its init container's GPUs first and asks topolet for
    the rest with those as must-include: topolet must keep them and add a GPU of their
    NUMA node."""
    wait_resource(node, GPU, allocatable=8)
    p = pod("reuse", {GPU: 3}, init={GPU: 2})
    init = allocate(node, p, container="init")
    assert init["error"] == ""
    first = init["devices"][GPU]
    app = allocate(node, p)
    assert app["error"] == ""
    got = app["devices"][GPU]
    available, must, size, preferred = node.gpu_calls.preferred[1]
    assert (available, must, size) == (sorted(GPU_NUMA), first, 3)
    assert set(first) <= set(got) and got == preferred
    assert len({GPU_NUMA[g] for g in got}) == 1, "the added GPU is on the init GPUs' NUMA node"
    assert env(app) == {"NVIDIA_VISIBLE_DEVICES": ",".join(got)}


def test_exclusive_cpus_are_owned_by_topolet_and_never_handed_out_twice(node: Node) -> None:
    free = node.cpu_manager.assignable_cpus()
    reserved = CPUSet.of(*CPU_NUMA) - free
    wait_resource(node, CPUS, allocatable=len(free))
    first = allocate(node, pod("a", {CPUS: 4}))
    second = allocate(node, pod("b", {CPUS: 4}))
    assert first["error"] == "" and second["error"] == ""
    a, b = cpus_of(first["devices"][CPUS]), cpus_of(second["devices"][CPUS])
    assert len(a) == len(b) == 4 and not a & b
    for got, out in ((a, first), (b, second)):
        # whole cores of one NUMA node (topolet's preference through kubelet)
        assert len({CPU_NUMA[c] for c in got}) == 1 and len({CPU_CORE[c] for c in got}) == 2
        assert env(out) == {"TOPOLET_CPUS": str(got)}
        assert run_annotations(out) == {CPUS: str(got)}
    # topolet's CPU manager recorded exactly what kubelet handed out, as the device
    # plugin's (placeholder owners until the node agent re-keys them)
    claims = cpu_claims(node.cpu_checkpoint)
    assert claims == {placeholder_owner(a): (a, DEVICE_PLUGIN), placeholder_owner(b): (b, DEVICE_PLUGIN)}

    # the CPU manager's own path (a Guaranteed container pinned by topolet) takes 4 more:
    # they vanish from what kubelet may allocate, and kubelet's next container gets none
    # of them nor any of a, b
    direct = node.cpu_manager.allocate("pod-direct", "app", 4)
    wait_resource(node, CPUS, capacity=len(free) - 4, allocatable=len(free) - 4)
    third = allocate(node, pod("c", {CPUS: 4}))
    assert third["error"] == ""
    c = cpus_of(third["devices"][CPUS])
    assert len(c) == 4 and not c & (a | b | direct) and not c & reserved
    # the topology manager chose NUMA node 1: the CPUs come from there
    fourth = allocate(node, pod("d", {CPUS: 2}), affinity=[1])
    assert fourth["error"] == ""
    d = cpus_of(fourth["devices"][CPUS])
    assert {CPU_NUMA[x] for x in d} == {1} and len({CPU_CORE[x] for x in d}) == 1
    assert not d & (a | b | c | direct)
    claims = cpu_claims(node.cpu_checkpoint)
    assert claims[placeholder_owner(c)] == (c, DEVICE_PLUGIN)
    assert claims[placeholder_owner(d)] == (d, DEVICE_PLUGIN)
    held = [cpus for cpus, _ in claims.values()]
    assert sum(len(s) for s in held) == len(CPUSet().union(*held)), "no CPU recorded twice"


def test_unhealthy_gpu_leaves_kubelets_allocatable_set(node: Node) -> None:
    wait_resource(node, GPU, allocatable=8)
    sick = GPUS[5].address
    node.nvml.inject_xid(sick, 79)  # GPU fell off the bus
    out = wait_resource(node, GPU, capacity=8, allocatable=7)
    assert sick not in {d["id"] for d in out["devices"]}
    got = allocate(node, pod("seven", {GPU: 7}))
    assert got["error"] == "" and sick not in got["devices"][GPU]
    assert sick not in node.gpu_calls.preferred[0][0], "kubelet did not offer it to the plugin"
    assert "Available: 0" in allocate(node, pod("one-more", {GPU: 1}))["error"]


def test_kubelet_restart_restores_allocations_and_plugins_reregister(node: Node) -> None:
    wait_resource(node, GPU, allocatable=8)
    wait_resource(node, CPUS, allocatable=30)
    gpu_pod, cpu_pod = pod("g", {GPU: 2}), pod("c", {CPUS: 4})
    gpus = allocate(node, gpu_pod)["devices"][GPU]
    cpus = allocate(node, cpu_pod)["devices"][CPUS]
    entries = json.loads(node.kubelet.checkpoint.read_text())["Data"]["PodDeviceEntries"]
    assert {(e["PodUID"], e["ResourceName"]) for e in entries} == {
        (gpu_pod["metadata"]["uid"], GPU),
        (cpu_pod["metadata"]["uid"], CPUS),
    }
    kubelet_sock = node.socket_dir / "kubelet.sock"
    before = kubelet_sock.stat()

    assert node.kubelet.call("restart")["error"] == ""
    after = kubelet_sock.stat()  # a new socket (the inode number alone may be reused)
    assert (after.st_ino, after.st_ctime_ns) != (before.st_ino, before.st_ctime_ns)
    # the new manager knows the allocations from its checkpoint alone
    restored = node.kubelet.call("devices", uid=gpu_pod["metadata"]["uid"], container="app")["devices"]
    assert restored == {GPU: gpus}
    restored = node.kubelet.call("devices", uid=cpu_pod["metadata"]["uid"], container="app")["devices"]
    assert restored == {CPUS: cpus}
    # topolet's plugins saw kubelet.sock re-created (and their sockets cleaned up) and
    # registered again; ListAndWatch feeds the new manager
    wait_for(
        lambda: node.gpu_server.registrations == 2 and node.cpu_server.registrations == 2,
        what="re-registration",
    )
    wait_resource(node, GPU, capacity=8, allocatable=8)
    wait_resource(node, CPUS, capacity=30, allocatable=30)

    # the same container again: nothing new is allocated, the plugin is not called
    calls = len(node.gpu_calls.allocated)
    again = allocate(node, gpu_pod)
    assert again["error"] == "" and again["devices"][GPU] == gpus and len(node.gpu_calls.allocated) == calls
    # the restored allocations are respected: 6 GPUs left, none of the pod's
    assert "Available: 6" in allocate(node, pod("seven", {GPU: 7}))["error"]
    six = allocate(node, pod("six", {GPU: 6}))
    assert six["error"] == "" and not set(six["devices"][GPU]) & set(gpus)
    more = allocate(node, pod("d", {CPUS: 4}))
    assert more["error"] == "" and not cpus_of(more["devices"][CPUS]) & cpus_of(cpus)
    # and once the pod is gone kubelet frees its GPUs
    assert node.kubelet.call("remove_pod", uid=gpu_pod["metadata"]["uid"])["error"] == ""
    two = allocate(node, pod("two", {GPU: 2}))
    assert two["error"] == "" and two["devices"][GPU] == gpus
