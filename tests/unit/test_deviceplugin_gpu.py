"""GPU resources from hwloc snapshots and small node trees; udev health; the health queue;
the podresources client against its stand-in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deviceplugin.api.podresources.v1 import api_pb2 as pr
from deviceplugin.gpu import GPUResource, UdevGPUHealth, discover_gpus, gpu_resources, nvidia_minor
from deviceplugin.podresources import (
    AllocatableResources,
    ContainerDevices,
    ContainerResources,
    PodResources,
    PodResourcesClient,
)
from deviceplugin.resources import DeviceSpec, HealthEvent, HealthQueue
from tests.kubelet_standin import PodResourcesStandin
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, PCIDevice, Topology
from topology.sysfs import discover


@pytest.mark.parametrize(
    ("snapshot", "display_any_vendor", "expected"),
    [
        (
            "nvidiagpunumanodes",
            False,
            {
                "0004:05:00.0": (0,),
                "0004:06:00.0": (0,),
                "0006:00:00.0": (0,),
                "0007:00:00.0": (8,),
                "0035:04:00.0": (8,),
                "0035:05:00.0": (8,),
            },
        ),
        ("2pa-pcidomain32bits", False, {}),
        ("2pa-pcidomain32bits", True, {"0000:00:02.0": (0,)}),
    ],
    ids=[
        "nvidiagpunumanodes/6-gpus-numa-0-and-8",
        "2pa-pcidomain32bits/cirrus-vga-is-no-gpu",
        "2pa-pcidomain32bits/any-display-function/one-vga",
    ],
)
def test_gpus_from_snapshots(
    hwloc_snapshot: Callable[[str], Path],
    snapshot: str,
    display_any_vendor: bool,
    expected: dict[str, tuple[int, ...]],
) -> None:
    root = hwloc_snapshot(snapshot)
    gpus = discover_gpus(
        discover(root),
        root=root,
        predicate=(lambda d: d.class_id == 0x0300) if display_any_vendor else None,
        default_vendor="vga" if display_any_vendor else None,
    )
    names = {"vga": "example.com/vga"}
    resources = gpu_resources(discover(root), root=root, resource_names=names, gpus=gpus)
    devices = {d.id: d.numa_nodes for r in resources for d in r.devices()}
    assert devices == expected
    assert [r.resource_name for r in resources] == (
        ["nvidia.com/gpu"] if snapshot == "nvidiagpunumanodes" else ["example.com/vga"] if expected else []
    )


def _pci(
    addr: str, vendor: int, numa: int | None, kernel: int | None, nodes: tuple[str, ...] = ()
) -> PCIDevice:
    return PCIDevice(addr, vendor, 0x1234, 0x030200, "drv", numa, None, CPUSet(), nodes, kernel)


def _machine(*devices: PCIDevice) -> Topology:
    return Topology.build(
        packages=[Package(0, CPUSet.range(0, 3), 0)],
        numa_nodes=[NumaNode(0, CPUSet.range(0, 1)), NumaNode(1, CPUSet.range(2, 3))],
        cores=[Core(c, c, 0, CPUSet.of(c)) for c in range(4)],
        pci_devices=devices,
    )


def _nvidia_tree(root: Path, minors: dict[str, int], present: tuple[str, ...]) -> None:
    for addr, minor in minors.items():
        info = root / "proc/driver/nvidia/gpus" / addr / "information"
        info.parent.mkdir(parents=True)
        info.write_text(
            f"Model: \t\t Tesla V100\nIRQ:   \t\t 42\nDevice Minor: \t {minor}\nBus Type: \t PCIe\n"
        )
    (root / "dev").mkdir()
    for name in present:
        (root / "dev" / name).write_text("")


def test_nvidia_allocate_uses_driver_minors_and_present_control_nodes(tmp_path: Path) -> None:
    _nvidia_tree(tmp_path, {"0000:3b:00.0": 2, "0000:86:00.0": 0}, ("nvidiactl", "nvidia-uvm"))
    topo = _machine(_pci("0000:86:00.0", 0x10DE, 1, None), _pci("0000:3b:00.0", 0x10DE, 1, 0))
    (res,) = gpu_resources(topo, root=tmp_path)
    assert {d.id: d.numa_nodes for d in res.devices()} == {"0000:3b:00.0": (0,), "0000:86:00.0": (1,)}
    answer = res.allocate(["0000:86:00.0", "0000:3b:00.0"])
    assert answer.devices == (
        DeviceSpec("/dev/nvidia2", "/dev/nvidia2"),
        DeviceSpec("/dev/nvidia0", "/dev/nvidia0"),
        DeviceSpec("/dev/nvidiactl", "/dev/nvidiactl"),
        DeviceSpec("/dev/nvidia-uvm", "/dev/nvidia-uvm"),
    )
    assert dict(answer.envs) == {"NVIDIA_VISIBLE_DEVICES": "0000:3b:00.0,0000:86:00.0"}
    assert dict(answer.annotations) == {"topolet.io/gpus": "0000:3b:00.0,0000:86:00.0"}


@pytest.mark.parametrize(
    ("text", "minor"),
    [("Device Minor: \t 7\n", 7), ("Model: x\n", None), (None, None)],
    ids=["minor-7", "no-minor-line", "no-file"],
)
def test_nvidia_minor(tmp_path: Path, text: str | None, minor: int | None) -> None:
    if text is not None:
        (tmp_path / "proc/driver/nvidia/gpus/0000:01:00.0").mkdir(parents=True)
        (tmp_path / "proc/driver/nvidia/gpus/0000:01:00.0/information").write_text(text)
    assert nvidia_minor(tmp_path, "0000:01:00.0") == minor


def test_amd_and_intel_get_render_nodes_and_their_own_names(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kfd").write_text("")
    topo = _machine(
        _pci("0000:03:00.0", 0x1002, 0, 0, ("/dev/dri/card1", "/dev/dri/renderD129")),
        _pci("0000:00:02.0", 0x8086, None, None, ("/dev/dri/card0",)),
    )
    amd, intel = gpu_resources(topo, root=tmp_path)
    assert (amd.resource_name, intel.resource_name) == ("amd.com/gpu", "gpu.intel.com/i915")
    assert [d.host_path for d in amd.allocate(["0000:03:00.0"]).devices] == [
        "/dev/dri/renderD129",
        "/dev/kfd",
    ]
    assert dict(amd.allocate(["0000:03:00.0"]).envs) == {"TOPOLET_VISIBLE_DEVICES": "0000:03:00.0"}
    assert intel.devices()[0].numa_nodes == ()  # NUMA unknown: no TopologyInfo
    assert [d.host_path for d in intel.allocate(["0000:00:02.0"]).devices] == ["/dev/dri/card0"]


def test_preferred_allocation_packs_one_numa_node(hwloc_snapshot: Callable[[str], Path]) -> None:
    root = hwloc_snapshot("nvidiagpunumanodes")
    res: GPUResource = gpu_resources(discover(root), root=root)[0]
    available = ["0004:05:00.0", "0007:00:00.0", "0035:04:00.0", "0006:00:00.0"]
    # two GPUs on NUMA 0 and two on NUMA 8 are offered: a pair never straddles the nodes
    assert res.preferred_allocation(available, [], 2) == ["0004:05:00.0", "0006:00:00.0"]
    assert res.preferred_allocation(available, ["0035:04:00.0"], 2) == ["0007:00:00.0", "0035:04:00.0"]
    assert len(res.preferred_allocation(available, [], 3)) == 3


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([("remove", "0000:3b:00.0")], [HealthEvent("0000:3b:00.0", False)]),
        ([("remove", "0000:3b:00.0"), ("add", "0000:3b:00.0")], [HealthEvent("0000:3b:00.0", True)]),
        ([("unbind", "0000:3b:00.0"), ("remove", "0000:99:00.0")], [HealthEvent("0000:3b:00.0", False)]),
        ([("change", "0000:3b:00.0")], []),
    ],
    ids=[
        "remove/unhealthy",
        "remove-then-add/recovers",
        "unbind/unhealthy-foreign-ignored",
        "change/ignored",
    ],
)
def test_udev_health(events: list[tuple[str, str]], expected: list[HealthEvent]) -> None:
    health = UdevGPUHealth(["0000:3b:00.0"])
    for action, addr in events:
        health.on_udev_event(action, _pci(addr, 0x10DE, 0, 0) if action == "add" else addr)
    got = []
    while (event := health.get(timeout=0)) is not None:
        got.append(event)
    assert got == expected


def test_health_queue_is_bounded_and_keeps_latest_per_device() -> None:
    q = HealthQueue(maxsize=2)
    for dev, ok in [("a", False), ("b", False), ("a", True), ("c", False)]:
        q.put(HealthEvent(dev, ok))
    assert len(q) == 2
    assert [q.get(0), q.get(0), q.get(0)] == [HealthEvent("a", True), HealthEvent("c", False), None]


def test_podresources_client_reads_list_and_allocatable(tmp_path: Path) -> None:
    topo = pr.TopologyInfo(nodes=[pr.NUMANode(ID=1)])
    listing = pr.ListPodResourcesResponse(
        pod_resources=[
            pr.PodResources(
                name="web",
                namespace="default",
                containers=[
                    pr.ContainerResources(
                        name="app",
                        cpu_ids=[3, 35],
                        devices=[
                            pr.ContainerDevices(
                                resource_name="nvidia.com/gpu", device_ids=["0000:3b:00.0"], topology=topo
                            )
                        ],
                    )
                ],
            )
        ]
    )
    alloc = pr.AllocatableResourcesResponse(
        cpu_ids=[1, 2, 3],
        devices=[pr.ContainerDevices(resource_name="topolet.io/exclusive-cpus", device_ids=["cpu1"])],
    )
    with (
        PodResourcesStandin(tmp_path / "pr" / "kubelet.sock", listing, alloc),
        PodResourcesClient(tmp_path / "pr" / "kubelet.sock") as client,
    ):
        assert client.list() == [
            PodResources(
                "web",
                "default",
                (
                    ContainerResources(
                        "app",
                        (ContainerDevices("nvidia.com/gpu", ("0000:3b:00.0",), (1,)),),
                        CPUSet.of(3, 35),
                    ),
                ),
            )
        ]
        assert client.allocatable() == AllocatableResources(
            (ContainerDevices("topolet.io/exclusive-cpus", ("cpu1",)),), CPUSet.parse("1-3")
        )
