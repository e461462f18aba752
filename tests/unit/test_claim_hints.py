"""A claim's GPU steers exclusive CPUs: its NUMA node, read from topolet's ResourceSlice,
is one more hint provider merged with the CPU hints by the same topology-manager merge the
node and the extender use (8-GPU two-socket machine: node 0 = CPUs 0-7,16-23, node 1 =
CPUs 8-15,24-31; GPUs 0000:86/b1 on node 1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dra_machine import write_machine
from topology.claim_hints import allocated_device_hints, claim_device_numa, claim_provider_hints
from topology.cpuset import CPUSet
from topology.hint_generators import cpu_topology_hints
from topology.hint_types import NUMAInfo, TopologyHint
from topology.hints import merge_hints
from topology.model import Topology
from topology.resourceslice import DRIVER, build_resource_slices
from topology.sysfs import discover


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return discover(write_machine(tmp_path_factory.mktemp("dra") / "root"))


def result(device: str, pool: str = "w1", driver: str = DRIVER) -> dict[str, Any]:
    return {"request": "gpu", "driver": driver, "pool": pool, "device": device}


def test_numa_of_allocated_devices_comes_from_the_slice(topo: Topology) -> None:
    slices = build_resource_slices(topo, node_name="w1")
    results = [
        result("gpu-0000-86-00-0"),
        result("gpu-0000-17-01-0"),
        result("gpu-0000-99-00-0"),  # not in the slice
        result("gpu-0000-86-00-0", pool="w2"),  # another node's pool
        result("gpu-0000-86-00-0", driver="gpu.example.com"),  # another driver: ignored
    ]
    assert claim_device_numa(results, slices, driver=DRIVER) == [1, 0, None, None]


@pytest.mark.parametrize(
    ("numa", "hints"),
    [
        pytest.param([1], [TopologyHint.on([1], preferred=True)], id="one-gpu-node1"),
        pytest.param([0, 1, None], [TopologyHint.on([0, 1], preferred=True)], id="spread"),
        pytest.param([None], None, id="no-numa-no-preference"),
        pytest.param([], None, id="no-devices"),
    ],
)
def test_allocated_device_hints(numa: list[int | None], hints: list[TopologyHint] | None) -> None:
    assert allocated_device_hints(numa) == hints


@pytest.mark.parametrize(
    ("free", "want", "admit", "affinity"),
    [
        pytest.param("0-31", 4, True, {1}, id="cpus-free-on-the-gpus-node/aligned-there"),
        pytest.param("0-7,16-23,8-9", 4, False, None, id="node1-has-2-free/rejected"),
        pytest.param("8-15", 4, True, {1}, id="only-node1-free/fits"),
    ],
)
def test_a_claim_gpu_on_node_1_needs_its_cpus_there(
    topo: Topology, free: str, want: int, admit: bool, affinity: set[int] | None
) -> None:
    slices = build_resource_slices(topo, node_name="w1")
    gpu = claim_provider_hints([result("gpu-0000-b1-00-0")], slices, driver=DRIVER)
    cpus = {"cpu": cpu_topology_hints(topo, CPUSet.parse(free), CPUSet(), want)}
    best, ok = merge_hints([cpus, gpu], NUMAInfo.from_topology(topo), "single-numa-node")
    assert ok is admit
    if affinity is not None:
        assert best.numa_affinity == frozenset(affinity)
