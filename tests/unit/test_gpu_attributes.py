"""GPU attributes: from the NVIDIA driver's procfs files, from amdgpu's sysfs files, from
NVML (stand-in), and what is reported when no source knows (None, never a BAR size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deviceplugin.nvml_info import with_nvml_attributes
from tests.dra_machine import DRIVER_VERSION, GPUS, NVMLInfoStandIn, write_machine
from tests.fakesysfs import FakePCI, FakeSpec, write_fake_sysfs
from topolet.cli import main
from topology.model import Topology
from topology.sysfs import discover

GiB = 2**30


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_machine(tmp_path_factory.mktemp("dra") / "root")


def by_address(topo: Topology) -> dict[str, object]:
    return {d.address: d for d in topo.pci_devices}


def test_sysfs_reads_product_uuid_driver_and_root_but_not_memory(machine: Path) -> None:
    topo = discover(machine)
    gpus = {g.address: g for g in topo.gpus()}
    assert sorted(gpus) == [g.address for g in GPUS]
    for want in GPUS:
        got = gpus[want.address]
        assert (got.product_name, got.uuid, got.driver_version) == (want.product, want.uuid, DRIVER_VERSION)
        assert got.pcie_root == want.root
        assert got.kernel_numa_node == want.numa
        assert got.memory_bytes is None, "the NVIDIA driver's files do not say the memory size"
        assert got.compute_capability is None
        assert got.attributes_source == "sysfs"


def test_pcie_root_is_set_for_every_function_and_nic_has_no_gpu_attributes(machine: Path) -> None:
    nic = next(d for d in discover(machine).pci_devices if d.address == "0000:18:00.0")
    assert nic.pcie_root == "pci0000:18"
    assert (nic.product_name, nic.uuid, nic.attributes_source) == (None, None, None)


def test_without_driver_files_everything_is_unknown(tmp_path: Path) -> None:
    root = write_machine(tmp_path / "r", with_driver_files=False)
    # A large BAR must not be mistaken for memory.
    (root / "sys/devices/pci0000:17/0000:17:00.0/resource0").write_bytes(b"\0" * 16)
    gpu = next(g for g in discover(root).gpus() if g.address == "0000:17:00.0")
    assert (gpu.product_name, gpu.uuid, gpu.driver_version, gpu.memory_bytes) == (None, None, None, None)
    assert gpu.pcie_root == "pci0000:17"


def test_module_version_wins_over_proc_version(tmp_path: Path) -> None:
    root = write_machine(tmp_path / "r")
    (root / "sys/module/nvidia").mkdir(parents=True)
    (root / "sys/module/nvidia/version").write_text("550.54.15\n")
    assert {g.driver_version for g in discover(root).gpus()} == {"550.54.15"}


def test_amdgpu_vram_product_and_unique_id(tmp_path: Path) -> None:
    spec = FakeSpec(pci=(FakePCI("0000:41:00.0", 0x1002, 0x74A1, 0x120000, numa_node=0, driver="amdgpu"),))
    root = write_fake_sysfs(tmp_path / "r", spec)
    d = root / "sys/devices/pci0000:41/0000:41:00.0"
    (d / "mem_info_vram_total").write_text(f"{192 * GiB}\n")
    (d / "product_name").write_text("AMD Instinct MI300X\n")
    (d / "unique_id").write_text("a1b2c3d4e5f60718\n")
    (gpu,) = discover(root).gpus()
    assert (gpu.product_name, gpu.memory_bytes, gpu.uuid) == (
        "AMD Instinct MI300X",
        192 * GiB,
        "a1b2c3d4e5f60718",
    )


@pytest.mark.parametrize(
    "model",
    [pytest.param("x" * 65, id="too-long"), pytest.param("bad\x01name", id="control-char")],
)
def test_garbled_values_are_unknown(tmp_path: Path, model: str) -> None:
    root = write_machine(tmp_path / "r")
    info = root / "proc/driver/nvidia/gpus/0000:17:00.0/information"
    info.write_text(info.read_text().replace(GPUS[0].product, model))
    gpu = next(g for g in discover(root).gpus() if g.address == "0000:17:00.0")
    assert gpu.product_name is None
    assert gpu.uuid == GPUS[0].uuid


def test_nvml_fills_memory_and_compute_capability(machine: Path) -> None:
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    topo = with_nvml_attributes(discover(machine), nvml)
    gpus = {g.address: g for g in topo.gpus()}
    for want in GPUS:
        got = gpus[want.address]
        assert got.memory_bytes == want.memory
        assert got.compute_capability == "8.0"
        assert (got.product_name, got.uuid, got.driver_version) == (want.product, want.uuid, DRIVER_VERSION)
        assert got.attributes_source == "nvml"
    assert {g.memory_bytes for g in topo.gpus()} == {40 * GiB, 80 * GiB}


def test_nvml_not_supported_keeps_sysfs_values(machine: Path) -> None:
    nvml = NVMLInfoStandIn(unsupported=frozenset({"memory", "cc", "name"}))
    nvml.nvmlInit()
    gpu = with_nvml_attributes(discover(machine), nvml).gpus()[0]
    assert gpu.memory_bytes is None and gpu.compute_capability is None
    assert gpu.product_name == GPUS[0].product  # from the driver's information file


def test_a_gpu_nvml_does_not_know_is_left_alone(machine: Path) -> None:
    nvml = NVMLInfoStandIn(GPUS[:1])
    nvml.nvmlInit()
    gpus = with_nvml_attributes(discover(machine), nvml).gpus()
    assert gpus[0].memory_bytes == GPUS[0].memory
    assert gpus[1].memory_bytes is None and gpus[1].attributes_source == "sysfs"


def test_discover_json_and_tree_show_the_attributes(
    machine: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["discover", "--root", str(machine), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    gpu = next(d for d in doc["pci_devices"] if d["address"] == "0000:3a:01.0")
    assert gpu["product_name"] == "NVIDIA A100-SXM4-80GB"
    assert gpu["pcie_root"] == "pci0000:3a"
    assert gpu["memory_bytes"] is None
    out = tmp_path / "tree.txt"
    assert main(["discover", "--root", str(machine), "--output", str(out)]) == 0
    tree = out.read_text()
    assert "product=NVIDIA A100-SXM4-80GB memory=unknown" in tree
    assert f"uuid={GPUS[3].uuid}" in tree
