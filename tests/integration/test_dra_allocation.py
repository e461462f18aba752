"""topolet's ResourceSlices, DeviceClass and example claims through kube-scheduler's own DRA
allocator (k8s.io/dynamic-resource-allocation v0.34.4, the code the DynamicResources plugin
runs in Filter, built from the Go modules by tests/dra_allocator).

Two named nodes are 8-GPU two-socket machines (tests.dra_machine: four 40 GiB and four
80 GiB A100s, two per PCIe root); their attributes come from the sysfs fixture and the NVML
stand-in (no GPU here). Each case checks that the allocator picks exactly devices that
satisfy the claim's selectors and constraints, and leaves a claim nothing satisfies
unallocated (the pod would stay pending on that node).
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from deviceplugin.nvml_info import with_nvml_attributes
from tests.dra_go import allocate, require
from tests.dra_machine import GPUS, NVMLInfoStandIn, write_machine
from topology.model import Topology
from topology.resourceslice import DRIVER, PCIE_ROOT, address_of, build_resource_slices, device_name
from topology.sysfs import discover

DRA = Path(__file__).resolve().parents[2] / "deploy" / "dra"
G80 = {device_name(g.address) for g in GPUS if g.memory == 80 * 2**30}
ROOT_OF = {device_name(g.address): g.root for g in GPUS}
NUMA_OF = {device_name(g.address): g.numa for g in GPUS}


@pytest.fixture(scope="module")
def allocator() -> Path:
    return require("dra_allocator")


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    root = write_machine(tmp_path_factory.mktemp("dra") / "root")
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    return with_nvml_attributes(discover(root), nvml)


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DRA / name).read_text()) if d]


CLASSES = load("deviceclass.yaml")


def claim(template: str, **changes: Any) -> dict[str, Any]:
    """A ResourceClaim made from an example template, as the resourceclaim controller does."""
    (t,) = [d for d in load(f"examples/{template}.yaml") if d["kind"] == "ResourceClaimTemplate"]
    spec = copy.deepcopy(t["spec"]["spec"])
    for request in spec["devices"]["requests"]:
        request["exactly"].update(changes)
    meta = {"name": f"{template}-x", "namespace": "default", "uid": str(uuid.uuid4())}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": meta, "spec": spec}


def devices(out: dict[str, Any]) -> list[str]:
    assert out["error"] == ""
    assert out["results"] is not None, "the allocator found no allocation"
    (result,) = out["results"]
    for r in result["devices"]["results"]:
        assert (r["driver"], r["pool"]) == (DRIVER, "worker-1")
    return [r["device"] for r in result["devices"]["results"]]


def run(binary: Path, topo: Topology, claims: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    slices = build_resource_slices(topo, node_name="worker-1") + build_resource_slices(
        topo, node_name="worker-2"
    )
    return allocate(binary, node="worker-1", slices=slices, classes=CLASSES, claims=claims, **kw)


def test_memory_40gi_any_gpu_and_all_of_them(allocator: Path, machine: Topology) -> None:
    (one,) = devices(run(allocator, machine, [claim("gpu-40gi")]))
    assert address_of(one) in {g.address for g in GPUS}
    every = devices(run(allocator, machine, [claim("gpu-40gi", allocationMode="All")]))
    assert sorted(every) == sorted(device_name(g.address) for g in GPUS)


def test_memory_selector_skips_gpus_of_unknown_memory(allocator: Path, machine: Topology) -> None:
    unknown = dataclasses.replace(
        machine, pci_devices=tuple(dataclasses.replace(d, memory_bytes=None) for d in machine.pci_devices)
    )
    out = run(allocator, unknown, [claim("gpu-40gi")])
    assert out == {"results": None, "error": ""}, "no device qualifies, and the guard keeps CEL from failing"


def test_product_selects_exactly_the_80gb_gpus(allocator: Path, machine: Topology) -> None:
    (one,) = devices(run(allocator, machine, [claim("gpu-product")]))
    assert one in G80
    assert set(devices(run(allocator, machine, [claim("gpu-product", allocationMode="All")]))) == G80


def test_two_gpus_share_a_pcie_root(allocator: Path, machine: Topology) -> None:
    pair = devices(run(allocator, machine, [claim("two-gpus-same-pcie-root")]))
    assert len(pair) == 2 and ROOT_OF[pair[0]] == ROOT_OF[pair[1]]
    # One GPU already taken on the first root: the pair moves to another root.
    taken = [(DRIVER, "worker-1", device_name("0000:17:00.0"))]
    pair = devices(run(allocator, machine, [claim("two-gpus-same-pcie-root")], allocated=taken))
    assert ROOT_OF[pair[0]] == ROOT_OF[pair[1]] != "pci0000:17"


def test_no_root_with_two_free_gpus_leaves_the_claim_pending(allocator: Path, machine: Topology) -> None:
    taken = [(DRIVER, "worker-1", device_name(g.address)) for g in GPUS if g.address.endswith("00.0")]
    out = run(allocator, machine, [claim("two-gpus-same-pcie-root")], allocated=taken)
    assert out == {"results": None, "error": ""}
    single = devices(run(allocator, machine, [claim("gpu-40gi")], allocated=taken))
    assert single[0] not in {t[2] for t in taken}, "single GPUs are still there"


def test_gpu_with_cpus_gets_a_gpu_with_a_numa_node(allocator: Path, machine: Topology) -> None:
    (gpu,) = devices(run(allocator, machine, [claim("gpu-with-exclusive-cpus")]))
    assert NUMA_OF[gpu] in (0, 1)
    no_numa = dataclasses.replace(
        machine,
        pci_devices=tuple(
            dataclasses.replace(d, kernel_numa_node=None, numa_node=None) for d in machine.pci_devices
        ),
    )
    assert run(allocator, no_numa, [claim("gpu-with-exclusive-cpus")])["results"] is None


def test_a_product_nobody_has_is_left_pending(allocator: Path, machine: Topology) -> None:
    c = claim("gpu-product")
    sel = c["spec"]["devices"]["requests"][0]["exactly"]["selectors"][0]["cel"]
    sel["expression"] = sel["expression"].replace("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")
    assert run(allocator, machine, [c]) == {"results": None, "error": ""}


def test_unhealthy_gpus_are_not_allocated(allocator: Path, machine: Topology) -> None:
    bad = {g.address for g in GPUS if device_name(g.address) in G80}
    slices = build_resource_slices(machine, node_name="worker-1", unhealthy=bad)
    out = allocate(allocator, node="worker-1", slices=slices, classes=CLASSES, claims=[claim("gpu-product")])
    assert out == {"results": None, "error": ""}


def test_pcie_root_attribute_is_the_standard_one(machine: Topology) -> None:
    (s,) = build_resource_slices(machine, node_name="worker-1")
    assert all(PCIE_ROOT in d["attributes"] for d in s["spec"]["devices"])
