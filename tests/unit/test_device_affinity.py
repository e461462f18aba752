"""Device affinity: a container holding a device on NUMA node N gets its CPUs on node N.

kubelet's CPU manager alone takes the first free whole cores (socket 0 here), far from a
GPU on socket 1; with the device's NUMA node passed along, the same request lands beside it.
"""

from __future__ import annotations

import pytest

from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, PCIDevice, Topology


def dual_socket_ht_with_gpu() -> Topology:
    """2 sockets x 4 cores x 2 threads; socket s = NUMA node s; a GPU on node 1."""
    cores, nodes, pkgs = [], [], []
    for s in range(2):
        cpus = CPUSet()
        for c in range(4):
            core = s * 4 + c
            threads = CPUSet.of(core, core + 8)
            cores.append(Core(id=core, core_id=c, package=s, cpus=threads))
            cpus |= threads
        nodes.append(NumaNode(id=s, cpus=cpus))
        pkgs.append(Package(id=s, cpus=cpus, os_index=s))
    gpu = PCIDevice(
        address="0000:81:00.0",
        vendor=0x10DE,
        device=0x20B0,
        class_code=0x030200,
        numa_node=1,
        package=1,
        kernel_numa_node=1,
    )
    return Topology.build(packages=pkgs, numa_nodes=nodes, cores=cores, pci_devices=[gpu])


@pytest.mark.parametrize(
    ("holds_gpu", "expect_node"),
    [(False, 0), (True, 1)],
    ids=["no-device/kubelet-choice-socket-0", "gpu-on-node-1/expect-cpus-on-node-1"],
)
def test_cpus_follow_the_device(holds_gpu: bool, expect_node: int) -> None:
    topo = dual_socket_ht_with_gpu()
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1))
    mgr.start()
    gpu_nodes = frozenset(g.kernel_numa_node for g in topo.gpus() if g.kernel_numa_node is not None)
    info = ContainerInfo(
        pod_uid="p",
        container_name="train",
        cgroup=None,
        exclusive_cpus=4,
        numa_affinity=gpu_nodes if holds_gpu else None,
    )
    mgr.add_container(info)
    got = mgr.state.get_cpuset("p", "train")
    assert got is not None and len(got) == 4
    assert topo.numa_nodes_of(got) == CPUSet.of(expect_node)
    assert got == topo.cpus_of_cores_containing(got)  # whole cores either way


def test_affinity_overflows_to_other_nodes_when_the_device_node_is_full() -> None:
    topo = dual_socket_ht_with_gpu()
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1))
    mgr.start()
    mgr.add_container(ContainerInfo("p", "big", None, exclusive_cpus=10, numa_affinity=frozenset({1})))
    got = mgr.state.get_cpuset("p", "big")
    assert got is not None and topo.cpus_in_numa_nodes(1) <= got and len(got) == 10
