"""Topology model: ``Topology.build`` and the kubelet-named queries on hand-built machines
with sparse ids, the networkx view, GPU classification and hugepage resource names."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import networkx as nx
import pytest

from topology.cpuset import CPUSet
from topology.model import CacheGroup, Core, HugePages, NumaNode, Package, PCIDevice, Topology

P = CPUSet.parse

# --------------------------------------------------------------------------- fixtures


def sparse_dual_socket_ht() -> Topology:
    """Two sockets with ids 0 and 3, NUMA nodes 0 and 8, CPUs 2..17 (none below 2).

    socket 0 / node 0: cores {2,10} {3,11} {4,12} {5,13}; L3 cache id 100
    socket 3 / node 8: cores {6,14} {7,15} {8,16} {9,17}; L3 cache id 200
    A GPU on node 8, a NIC local to socket 0 only, an unplaced audio function.
    """
    s0, s3 = P("2-5,10-13"), P("6-9,14-17")
    cores = [Core(id=c, core_id=c - 2, package=0, cpus=CPUSet.of(c, c + 8)) for c in range(2, 6)]
    cores += [Core(id=c, core_id=c - 6, package=3, cpus=CPUSet.of(c, c + 8)) for c in range(6, 10)]
    return Topology.build(
        packages=[Package(0, s0, 0), Package(3, s3, 3)],
        numa_nodes=[
            NumaNode(0, s0, 64 << 30, MappingProxyType({2048: HugePages(2048, 16, 8)}), {0: 10, 8: 21}),
            NumaNode(8, s3, 64 << 30, MappingProxyType({}), {0: 21, 8: 10}),
        ],
        cores=cores,
        l3_groups=[CacheGroup(100, 3, s0, 32 << 20), CacheGroup(200, 3, s3, 32 << 20)],
        pci_devices=[
            PCIDevice("0000:c1:00.0", 0x10DE, 0x2330, 0x030200, "nvidia", 8, 3, s3),
            PCIDevice("0000:c1:00.1", 0x10DE, 0x22A3, 0x040300, None, None, None),
            PCIDevice("0000:17:00.0", 0x15B3, 0x101B, 0x020000, "mlx5_core", None, 0, s0),
        ],
        isolated_cpus=P("5,13"),
        offline_cpus=P("18-19"),
        arch="x86_64",
    )


def kubelet_dual_socket_ht() -> Topology:
    """kubelet's topoDualSocketHT: sockets interleave even/odd CPUs; core k = {k, k+6}."""
    s0, s1 = P("0,2,4,6,8,10"), P("1,3,5,7,9,11")
    cores = [Core(id=k, core_id=k // 2, package=k % 2, cpus=CPUSet.of(k, k + 6)) for k in range(6)]
    return Topology.build(
        packages=[Package(0, s0, 0), Package(1, s1, 1)],
        numa_nodes=[NumaNode(0, s0), NumaNode(1, s1)],
        cores=cores,
    )


def multi_numa_with_memory_node() -> Topology:
    """One socket (id 1) with two NUMA nodes of CPUs (2 and 5) plus a CPU-less memory
    node 7 and no SMT; a CPU (11) listed online but in no node and no core."""
    return Topology.build(
        packages=[Package(1, P("4-11"), 1)],
        numa_nodes=[NumaNode(2, P("4-7")), NumaNode(5, P("8-10")), NumaNode(7, CPUSet(), 1 << 30)],
        cores=[Core(c, c, 1, CPUSet.of(c)) for c in range(4, 11)],
        online=P("4-11"),
    )


def nested_numa() -> Topology:
    """A node whose CPUs contain another's: each CPU belongs to its tightest node."""
    return Topology.build(
        packages=[Package(0, P("0-3"), 0)],
        numa_nodes=[NumaNode(0, P("0-3")), NumaNode(1, P("2-3"))],
        cores=[Core(c, c, 0, CPUSet.of(c)) for c in range(4)],
    )


FIXTURES: dict[str, Callable[[], Topology]] = {
    "sparse": sparse_dual_socket_ht,
    "kubelet-ht": kubelet_dual_socket_ht,
    "memnode": multi_numa_with_memory_node,
    "nested": nested_numa,
}

Query = Callable[[Topology], object]

# --------------------------------------------------------------------------- queries


QUERIES: list[tuple[str, str, Query, object]] = [
    ("sparse", "socket-ids", lambda t: t.socket_ids(), [0, 3]),
    ("sparse", "numa-ids", lambda t: t.numa_node_ids(), [0, 8]),
    ("sparse", "core-ids", lambda t: t.core_ids(), list(range(2, 10))),
    ("sparse", "online", lambda t: str(t.online_cpus), "2-17"),
    ("sparse", "num-cpus", lambda t: t.num_cpus, 16),
    ("sparse", "num-cores", lambda t: t.num_cores, 8),
    ("sparse", "num-sockets", lambda t: t.num_sockets, 2),
    ("sparse", "num-numa", lambda t: t.num_numa_nodes, 2),
    ("sparse", "threads-per-core", lambda t: t.threads_per_core(), 2),
    ("sparse", "cpus-per-core", lambda t: t.cpus_per_core(), 2),
    ("sparse", "cpus-per-socket", lambda t: t.cpus_per_socket(), 8),
    ("sparse", "cpus-in-socket-3", lambda t: str(t.cpus_in_sockets(3)), "6-9,14-17"),
    ("sparse", "cpus-in-both-sockets", lambda t: str(t.cpus_in_sockets(0, 3)), "2-17"),
    ("sparse", "cpus-in-absent-socket", lambda t: str(t.cpus_in_sockets(1)), ""),
    ("sparse", "cpus-in-node-8", lambda t: str(t.cpus_in_numa_nodes(8)), "6-9,14-17"),
    ("sparse", "cpus-in-cores", lambda t: str(t.cpus_in_cores(2, 9)), "2,9-10,17"),
    ("sparse", "cores-in-socket-3", lambda t: str(t.cores_in_sockets(3)), "6-9"),
    ("sparse", "cores-in-node-0", lambda t: str(t.cores_in_numa_nodes(0)), "2-5"),
    ("sparse", "nodes-in-socket-3", lambda t: str(t.numa_nodes_in_sockets(3)), "8"),
    ("sparse", "nodes-in-socket-0", lambda t: str(t.numa_nodes_in_socket(0)), "0"),
    ("sparse", "sockets-in-node-8", lambda t: str(t.sockets_in_numa_nodes(8)), "3"),
    ("sparse", "nodes-of-cpus", lambda t: str(t.numa_nodes_of(P("3,14"))), "0,8"),
    ("sparse", "sockets-of-cpus", lambda t: str(t.sockets_of(P("14-15,0-1"))), "3"),
    ("sparse", "whole-cores-of-cpus", lambda t: str(t.cpus_of_cores_containing(P("3,16"))), "3,8,11,16"),
    ("sparse", "cpus-in-l3", lambda t: str(t.cpus_in_l3_groups(200)), "6-9,14-17"),
    ("sparse", "cores-in-l3", lambda t: str(t.cores_in_l3_groups(100)), "2-5"),
    ("sparse", "distance-0-8", lambda t: t.numa_distance(0, 8), 21),
    ("sparse", "distance-local", lambda t: t.numa_distance(8, 8), 10),
    ("sparse", "distance-no-node", lambda t: t.numa_distance(1, 8), None),
    ("sparse", "gpus-exclude-audio-and-nic", lambda t: [d.address for d in t.gpus()], ["0000:c1:00.0"]),
    (
        "sparse",
        "pci-sorted-by-address",
        lambda t: [d.address for d in t.pci_devices],
        ["0000:17:00.0", "0000:c1:00.0", "0000:c1:00.1"],
    ),
    ("sparse", "isolated", lambda t: str(t.isolated_cpus), "5,13"),
    ("sparse", "offline", lambda t: str(t.offline_cpus), "18-19"),
    ("sparse", "node-hugepages", lambda t: t.numa_nodes[0].hugepages[2048].resource_name, "hugepages-2Mi"),
    ("kubelet-ht", "socket-1", lambda t: str(t.cpus_in_sockets(1)), "1,3,5,7,9,11"),
    ("kubelet-ht", "cores-socket-0", lambda t: str(t.cores_in_sockets(0)), "0,2,4"),
    ("kubelet-ht", "core-1-siblings", lambda t: str(t.cpus_in_cores(1)), "1,7"),
    ("kubelet-ht", "cores-node-1", lambda t: str(t.cores_in_numa_nodes(1)), "1,3,5"),
    ("kubelet-ht", "cpus-per-socket", lambda t: t.cpus_per_socket(), 6),
    ("kubelet-ht", "cpu-7-core", lambda t: t.cpus[7].core, 1),
    ("kubelet-ht", "cpu-7-socket", lambda t: t.cpus[7].socket, 1),
    ("kubelet-ht", "no-l3", lambda t: t.cpus[7].l3, None),
    ("memnode", "node-ids", lambda t: t.numa_node_ids(), [2, 5, 7]),
    ("memnode", "cpu-less", lambda t: str(t.cpus_in_numa_nodes(7)), ""),
    ("memnode", "nodes-in-socket", lambda t: str(t.numa_nodes_in_sockets(1)), "2,5"),
    ("memnode", "no-smt", lambda t: t.threads_per_core(), 1),
    ("memnode", "unplaced-cpu-lowest-node", lambda t: t.cpus[11].numa, 2),
    ("memnode", "unplaced-cpu-own-core", lambda t: t.cpus[11].core, 11),
    ("memnode", "cores-node-5", lambda t: str(t.cores_in_numa_nodes(5)), "8-10"),
    ("nested", "cpu-in-tightest-node", lambda t: t.cpus[2].numa, 1),
    ("nested", "cpu-outside-inner-node", lambda t: t.cpus[0].numa, 0),
]


@pytest.mark.parametrize(
    ("fixture", "query", "expected"),
    [pytest.param(fx, q, exp, id=f"{fx}/{name}") for fx, name, q, exp in QUERIES],
)
def test_query(fixture: str, query: Query, expected: object) -> None:
    assert query(FIXTURES[fixture]()) == expected


@pytest.mark.parametrize("fixture", list(FIXTURES))
def test_every_cpu_is_indexed_consistently(fixture: str) -> None:
    topo = FIXTURES[fixture]()
    for cpu, info in topo.cpus.items():
        assert info.cpu == cpu
        if info.socket is not None:
            assert cpu in topo.packages[info.socket].cpus
        assert info.numa in topo.numa_nodes
        if info.core in topo.cores:
            assert cpu in topo.cores[info.core].cpus


def test_sparse_cpu_info() -> None:
    info = sparse_dual_socket_ht().cpus[14]
    assert (info.cpu, info.core, info.socket, info.numa, info.l3) == (14, 6, 3, 8, 200)


def test_build_needs_a_numa_node() -> None:
    with pytest.raises(ValueError, match="at least one NUMA node"):
        Topology.build(packages=[], numa_nodes=[], cores=[])


def test_topology_is_frozen() -> None:
    topo = kubelet_dual_socket_ht()
    with pytest.raises(AttributeError):
        topo.arch = "arm64"  # type: ignore[misc]
    with pytest.raises(TypeError):
        topo.cpus[99] = topo.cpus[0]  # type: ignore[index]


# --------------------------------------------------------------------------- graph view


def _contains_path(g: nx.Graph, target: tuple[str, object]) -> list[tuple[str, object]]:
    contains = nx.subgraph_view(g, filter_edge=lambda a, b: g.edges[a, b]["kind"] != "distance")
    return list(nx.shortest_path(contains, ("machine", 0), target))


@pytest.mark.parametrize(
    ("fixture", "target", "path"),
    [
        pytest.param(
            "sparse",
            ("cpu", 14),
            [("machine", 0), ("package", 3), ("numa", 8), ("l3", 200), ("core", 6), ("cpu", 14)],
            id="sparse/cpu-14",
        ),
        pytest.param(
            "sparse",
            ("pci", "0000:c1:00.0"),
            [("machine", 0), ("package", 3), ("numa", 8), ("pci", "0000:c1:00.0")],
            id="sparse/gpu-on-node-8",
        ),
        pytest.param(
            "sparse",
            ("pci", "0000:17:00.0"),
            [("machine", 0), ("package", 0), ("pci", "0000:17:00.0")],
            id="sparse/nic-on-package-0",
        ),
        pytest.param(
            "sparse",
            ("pci", "0000:c1:00.1"),
            [("machine", 0), ("pci", "0000:c1:00.1")],
            id="sparse/unplaced-on-machine",
        ),
        pytest.param(
            "kubelet-ht",
            ("cpu", 7),
            [("machine", 0), ("package", 1), ("numa", 1), ("core", 1), ("cpu", 7)],
            id="kubelet/cpu-7-no-l3",
        ),
        pytest.param("memnode", ("numa", 7), [("machine", 0), ("numa", 7)], id="memnode/cpu-less-on-machine"),
    ],
)
def test_graph_containment(fixture: str, target: tuple[str, object], path: list[tuple[str, object]]) -> None:
    assert _contains_path(FIXTURES[fixture]().graph(), target) == path


def test_graph_distance_and_kinds() -> None:
    g = sparse_dual_socket_ht().graph()
    edge = g.edges[("numa", 0), ("numa", 8)]
    assert (edge["kind"], edge["weight"]) == ("distance", 21)
    assert g.nodes[("pci", "0000:c1:00.0")]["gpu"] is True
    assert g.nodes[("pci", "0000:c1:00.1")]["gpu"] is False
    kinds = {
        k: sum(1 for _, d in g.nodes(data=True) if d["kind"] == k) for k in ("package", "numa", "core", "cpu")
    }
    assert kinds == {"package": 2, "numa": 2, "core": 8, "cpu": 16}
    assert nx.is_tree(nx.subgraph_view(g, filter_edge=lambda a, b: g.edges[a, b]["kind"] != "distance"))


# --------------------------------------------------------------------------- PCI and hugepages


@pytest.mark.parametrize(
    ("vendor", "class_code", "is_gpu"),
    [
        pytest.param(0x10DE, 0x030000, True, id="nvidia-vga"),
        pytest.param(0x10DE, 0x030200, True, id="nvidia-3d-controller"),
        pytest.param(0x10DE, 0x040300, False, id="nvidia-hd-audio"),
        pytest.param(0x10DE, 0x068000, False, id="nvidia-nvswitch-bridge"),
        pytest.param(0x1002, 0x038000, True, id="amd-other-display"),
        pytest.param(0x1002, 0x120000, True, id="amd-mi300-accelerator"),
        pytest.param(0x8086, 0x120000, True, id="intel-accelerator"),
        pytest.param(0x8086, 0x030000, True, id="intel-vga"),
        pytest.param(0x1AF4, 0x030000, False, id="unknown-vendor-vga"),
        pytest.param(0x1234, 0x030000, False, id="qemu-stdvga"),
        pytest.param(0x1022, 0x120000, False, id="amd-cpu-vendor-id-accelerator"),
        pytest.param(0x8086, 0x060000, False, id="intel-host-bridge"),
    ],
)
def test_pci_is_gpu(vendor: int, class_code: int, is_gpu: bool) -> None:
    dev = PCIDevice(address="0000:01:00.0", vendor=vendor, device=0x1, class_code=class_code)
    assert dev.is_gpu is is_gpu


def test_pci_class_id_and_vendor_name() -> None:
    dev = PCIDevice(address="0000:01:00.0", vendor=0x10DE, device=0x2330, class_code=0x030200)
    assert (dev.class_id, dev.vendor_name) == (0x0302, "nvidia")
    assert PCIDevice("0000:00:01.0", 0x1AF4, 0x1041, 0x020000).vendor_name is None


@pytest.mark.parametrize(
    ("size_kb", "name"),
    [
        pytest.param(2048, "hugepages-2Mi", id="2M"),
        pytest.param(1048576, "hugepages-1Gi", id="1G"),
        pytest.param(64, "hugepages-64Ki", id="64K-arm"),
        pytest.param(16384, "hugepages-16Mi", id="16M-ppc"),
        pytest.param(524288, "hugepages-512Mi", id="512M-arm64"),
        pytest.param(16777216, "hugepages-16Gi", id="16G-ppc"),
        pytest.param(1536, "hugepages-1536Ki", id="not-a-whole-MiB"),
    ],
)
def test_hugepages_resource_name(size_kb: int, name: str) -> None:
    assert HugePages(size_kb=size_kb, total=1).resource_name == name
