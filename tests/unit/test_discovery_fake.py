"""Discovery (:func:`topology.sysfs.discover`) on fake sysfs trees written by
:mod:`tests.fakesysfs`: kubelet's named machines, sparse ids, isolated and offline CPUs,
GPUs, and every kind of bad tree, which must raise a DiscoveryError naming the file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakesysfs import SPECS, FakeSpec, dual_socket_ht, single_socket_ht, sparse_ids, write_fake_sysfs
from topology.errors import DiscoveryError
from topology.model import Topology
from topology.sysfs import discover

CPU = "sys/devices/system/cpu"
NODE = "sys/devices/system/node"


def _discover(tmp_path: Path, spec: FakeSpec) -> Topology:
    return discover(write_fake_sysfs(tmp_path / "root", spec))


@pytest.fixture(scope="module")
def named_topology(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Topology]:
    """Discovery of each named spec, its tree written once per module (read-only tests)."""
    cache: dict[str, Topology] = {}

    def get(name: str) -> Topology:
        if name not in cache:
            cache[name] = discover(write_fake_sysfs(tmp_path_factory.mktemp(name), SPECS[name]))
        return cache[name]

    return get


def _core_sets(topo: Topology) -> list[str]:
    return sorted(
        (str(c.cpus) for c in topo.cores.values()), key=lambda s: int(s.split(",")[0].split("-")[0])
    )


# --------------------------------------------------------------------------- named machines

# spec, cpus, sockets {id: cpus}, nodes {id: cpus}, cores, threads per core, L3 groups
NAMED = [
    ("single_socket_ht", "0-7", {0: "0-7"}, {0: "0-7"}, 4, 2, 1),
    (
        "dual_socket_ht",
        "0-11",
        {0: "0,2,4,6,8,10", 1: "1,3,5,7,9,11"},
        {0: "0,2,4,6,8,10", 1: "1,3,5,7,9,11"},
        6,
        2,
        2,
    ),
    ("dual_socket_no_ht", "0-7", {0: "0-3", 1: "4-7"}, {0: "0-3", 1: "4-7"}, 8, 1, 2),
    (
        "dual_socket_multi_numa_ht",
        "0-79",
        {0: "0-19,40-59", 1: "20-39,60-79"},
        {0: "0-9,40-49", 1: "10-19,50-59", 2: "20-29,60-69", 3: "30-39,70-79"},
        40,
        2,
        4,
    ),
    ("sparse_ids", "0-15", {0: "0-3,8-11", 2: "4-7,12-15"}, {0: "0-3,8-11", 4: "4-7,12-15"}, 8, 2, 2),
]


@pytest.mark.parametrize(
    ("name", "cpus", "sockets", "nodes", "cores", "threads", "l3"),
    [pytest.param(*row, id=row[0]) for row in NAMED],
)
def test_named_machine(
    named_topology: Callable[[str], Topology],
    name: str,
    cpus: str,
    sockets: dict[int, str],
    nodes: dict[int, str],
    cores: int,
    threads: int,
    l3: int,
) -> None:
    topo = named_topology(name)
    assert str(topo.online_cpus) == cpus
    assert {p.id: str(p.cpus) for p in topo.packages.values()} == sockets
    assert {n.id: str(n.cpus) for n in topo.numa_nodes.values()} == nodes
    assert topo.num_cores == cores
    assert topo.threads_per_core() == threads
    assert len(topo.l3_groups) == l3
    assert str(topo.offline_cpus) == ""
    assert str(topo.isolated_cpus) == ""


@pytest.mark.parametrize(
    ("name", "core_sets"),
    [
        pytest.param("single_socket_ht", ["0,4", "1,5", "2,6", "3,7"], id="single_socket_ht"),
        pytest.param("dual_socket_ht", ["0,6", "1,7", "2,8", "3,9", "4,10", "5,11"], id="dual_socket_ht"),
        pytest.param("dual_socket_no_ht", [str(c) for c in range(8)], id="dual_socket_no_ht"),
    ],
)
def test_thread_siblings(named_topology: Callable[[str], Topology], name: str, core_sets: list[str]) -> None:
    assert _core_sets(named_topology(name)) == core_sets


def test_sparse_ids(named_topology: Callable[[str], Topology]) -> None:
    topo = named_topology("sparse_ids")
    assert topo.socket_ids() == [0, 2]
    assert topo.numa_node_ids() == [0, 4]
    # sysfs core_id repeats across packages (0,1,8,9 in both); cores stay distinct
    assert sorted(c.core_id for c in topo.cores.values() if c.core_id is not None) == [0, 0, 1, 1, 8, 8, 9, 9]
    assert str(topo.cores_in_sockets(2)) == "4-7"
    assert {c.id: c.package for c in topo.cores.values()} == {0: 0, 1: 0, 2: 0, 3: 0, 4: 2, 5: 2, 6: 2, 7: 2}
    assert str(topo.cpus_in_numa_nodes(4)) == "4-7,12-15"
    assert topo.cpus[13].socket == 2 and topo.cpus[13].numa == 4 and topo.cpus[13].core == 5
    assert topo.numa_distance(0, 4) == 21 and topo.numa_distance(4, 4) == 10
    node4 = topo.numa_nodes[4]
    assert node4.memory_bytes == 16384 * 1024 * 1024
    assert {k: (h.total, h.free) for k, h in node4.hugepages.items()} == {2048: (512, 500), 1048576: (0, 0)}


@pytest.mark.parametrize(
    ("address", "is_gpu", "numa", "kernel_numa", "driver", "local"),
    [
        pytest.param("0000:c1:00.0", True, 4, 4, "nvidia", "4-7,12-15", id="nvidia-3d-on-node-4"),
        pytest.param("0000:c1:00.1", False, 4, 4, None, "4-7,12-15", id="nvidia-audio-not-gpu"),
        pytest.param("0000:41:00.0", True, 0, 0, "amdgpu", "0-3,8-11", id="amd-accelerator-on-node-0"),
        pytest.param("0000:03:00.0", False, None, None, "ast", "0-15", id="bmc-vga-minus-one-no-node"),
        pytest.param("0000:17:00.0", False, 0, 0, "mlx5_core", "0-3,8-11", id="nic-on-node-0"),
    ],
)
def test_pci_devices(
    named_topology: Callable[[str], Topology],
    address: str,
    is_gpu: bool,
    numa: int | None,
    kernel_numa: int | None,
    driver: str | None,
    local: str,
) -> None:
    topo = named_topology("sparse_ids")
    dev = {d.address: d for d in topo.pci_devices}[address]
    assert dev.is_gpu is is_gpu
    assert dev.numa_node == numa
    assert dev.kernel_numa_node == kernel_numa
    assert dev.driver == driver
    assert str(dev.local_cpus) == local


def test_gpus_of_sparse_machine(named_topology: Callable[[str], Topology]) -> None:
    gpus = named_topology("sparse_ids").gpus()
    assert [(g.address, g.numa_node) for g in gpus] == [("0000:41:00.0", 0), ("0000:c1:00.0", 4)]


# --------------------------------------------------------------------------- isolated / offline


@pytest.mark.parametrize(
    ("isolated_file", "cmdline", "expected"),
    [
        pytest.param("2-3,6", "ro quiet", "2-3,6", id="isolated-file"),
        pytest.param("", "ro isolcpus=managed_irq,domain,2-3 quiet", "2-3", id="cmdline-with-flags"),
        pytest.param("", "isolcpus=1,5", "1,5", id="cmdline-plain-list"),
        pytest.param(
            "", "ro isolcpus=nohz,domain,managed_irq,0-1,6-7", "0-1,6-7", id="cmdline-all-flags-and-ranges"
        ),
        pytest.param("1", "isolcpus=domain,4", "1,4", id="file-and-cmdline-union"),
        pytest.param("", "ro quiet nohz_full=2-3", "", id="no-isolcpus"),
    ],
)
def test_isolated_cpus(tmp_path: Path, isolated_file: str, cmdline: str, expected: str) -> None:
    topo = _discover(tmp_path, replace(single_socket_ht, isolated=isolated_file, cmdline=cmdline))
    assert str(topo.isolated_cpus) == expected


@pytest.mark.parametrize(
    ("offline", "online", "core_sets", "node0"),
    [
        pytest.param(
            "7", "0-6,8-11", ["0,6", "1", "2,8", "3,9", "4,10", "5,11"], "0,2,4,6,8,10", id="one-sibling"
        ),
        pytest.param(
            "0", "1-11", ["1,7", "2,8", "3,9", "4,10", "5,11", "6"], "2,4,6,8,10", id="cpu0-offline"
        ),
        pytest.param(
            "1,7",
            "0,2-6,8-11",
            ["0,6", "2,8", "3,9", "4,10", "5,11"],
            "0,2,4,6,8,10",
            id="whole-core-offline",
        ),
    ],
)
def test_offline_cpus(tmp_path: Path, offline: str, online: str, core_sets: list[str], node0: str) -> None:
    topo = _discover(tmp_path, replace(dual_socket_ht, offline=offline))
    assert str(topo.online_cpus) == online
    assert str(topo.offline_cpus) == offline
    assert _core_sets(topo) == core_sets
    assert str(topo.cpus_in_numa_nodes(0)) == node0
    assert all(c not in topo.cpus for c in topo.offline_cpus)


def test_cpu_list_files_alone_suffice(tmp_path: Path) -> None:
    """Kernels that only have the *_list twins (masks removed) give the same machine."""
    root = write_fake_sysfs(tmp_path / "root", dual_socket_ht)
    expected = discover(root)
    for mask in ("thread_siblings", "core_siblings", "core_cpus", "package_cpus", "die_cpus", "cpumap"):
        for f in root.rglob(mask):
            f.unlink()
    for f in root.rglob("shared_cpu_map"):
        f.unlink()
    topo = discover(root)
    assert _core_sets(topo) == _core_sets(expected)
    assert {p.id: p.cpus for p in topo.packages.values()} == {
        p.id: p.cpus for p in expected.packages.values()
    }
    assert {n.id: n.cpus for n in topo.numa_nodes.values()} == {
        n.id: n.cpus for n in expected.numa_nodes.values()
    }
    assert len(topo.l3_groups) == len(expected.l3_groups) == 2


# --------------------------------------------------------------------------- bad trees

Breaker = Callable[[Path], None]


def _write(rel: str, text: str) -> Breaker:
    def breaker(root: Path) -> None:
        (root / rel).write_text(text)

    return breaker


def _remove_topology_of_cpus(*cpus: int) -> Breaker:
    def breaker(root: Path) -> None:
        for c in cpus:
            shutil.rmtree(root / CPU / f"cpu{c}" / "topology")

    return breaker


def _remove(rel: str) -> Breaker:
    def breaker(root: Path) -> None:
        (root / rel).unlink()

    return breaker


def _both(*breakers: Breaker) -> Breaker:
    def breaker(root: Path) -> None:
        for b in breakers:
            b(root)

    return breaker


@pytest.mark.parametrize(
    ("breaker", "bad_file", "expected_words"),
    [
        pytest.param(
            _write(f"{CPU}/online", "0-x\n"), f"{CPU}/online", "cpu list", id="garbled-online-cpulist"
        ),
        pytest.param(
            _write(f"{CPU}/online", "5-3\n"), f"{CPU}/online", "cpu list", id="descending-online-range"
        ),
        pytest.param(
            _write(f"{NODE}/node1/cpumap", "zz,0f\n"),
            f"{NODE}/node1/cpumap",
            "mask",
            id="garbled-node-cpumap",
        ),
        pytest.param(
            _both(_remove(f"{NODE}/node0/cpumap"), _write(f"{NODE}/node0/cpulist", "0,,2\n")),
            f"{NODE}/node0/cpulist",
            "cpu list",
            id="garbled-node-cpulist-without-mask",
        ),
        pytest.param(
            _both(
                _remove(f"{CPU}/cpu3/topology/core_cpus"),
                _write(f"{CPU}/cpu3/topology/thread_siblings", "0x1g\n"),
            ),
            f"{CPU}/cpu3/topology/thread_siblings",
            "mask",
            id="garbled-thread-siblings-mask",
        ),
        pytest.param(
            _write(f"{CPU}/cpu2/topology/core_cpus", "not-a-mask\n"),
            f"{CPU}/cpu2/topology/core_cpus",
            "mask",
            id="garbled-core-cpus-mask",
        ),
        pytest.param(
            _write(f"{CPU}/cpu1/topology/physical_package_id", "one\n"),
            f"{CPU}/cpu1/topology/physical_package_id",
            "integer",
            id="garbled-package-id",
        ),
        pytest.param(
            _write(f"{CPU}/cpu0/cache/index3/shared_cpu_map", "fff,,\n"),
            f"{CPU}/cpu0/cache/index3/shared_cpu_map",
            "mask",
            id="garbled-cache-mask",
        ),
        pytest.param(
            _write(f"{CPU}/isolated", "2-a\n"), f"{CPU}/isolated", "cpu list", id="garbled-isolated"
        ),
        pytest.param(
            _write("proc/cmdline", "ro isolcpus=domain,3-1\n"),
            "proc/cmdline",
            "isolcpus",
            id="garbled-isolcpus",
        ),
        pytest.param(
            _write(f"{CPU}/cpu0/cache/index3/level", "three\n"),
            f"{CPU}/cpu0/cache/index3/level",
            "integer",
            id="garbled-cache-level",
        ),
        pytest.param(
            _remove_topology_of_cpus(4, 5, 6),
            f"{CPU}/cpu4/topology",
            "topology",
            id="half-written-cpu-dirs-without-topology",
        ),
    ],
)
def test_bad_tree_names_the_file(
    tmp_path: Path, breaker: Breaker, bad_file: str, expected_words: str
) -> None:
    root = write_fake_sysfs(tmp_path / "root", dual_socket_ht)
    breaker(root)
    with pytest.raises(DiscoveryError) as info:
        discover(root)
    err = info.value
    assert err.path == root / bad_file
    assert str(root / bad_file) in str(err)
    assert expected_words in err.expected.lower()


@pytest.mark.parametrize(
    ("breaker", "bad_file", "expected_words"),
    [
        pytest.param(
            _write("sys/bus/pci/devices/0000:c1:00.0/local_cpus", "xyz\n"),
            "sys/bus/pci/devices/0000:c1:00.0/local_cpus",
            "mask",
            id="garbled-pci-local-cpus",
        ),
        pytest.param(
            _write("sys/bus/pci/devices/0000:41:00.0/numa_node", "minus one\n"),
            "sys/bus/pci/devices/0000:41:00.0/numa_node",
            "integer",
            id="garbled-pci-numa-node",
        ),
        pytest.param(
            _write("sys/bus/pci/devices/0000:03:00.0/class", "VGA\n"),
            "sys/bus/pci/devices/0000:03:00.0/class",
            "integer",
            id="garbled-pci-class",
        ),
    ],
)
def test_bad_pci_file_names_the_file(
    tmp_path: Path, breaker: Breaker, bad_file: str, expected_words: str
) -> None:
    root = write_fake_sysfs(tmp_path / "root", sparse_ids)
    breaker(root)
    with pytest.raises(DiscoveryError) as info:
        discover(root)
    assert info.value.path == root / bad_file
    assert expected_words in info.value.expected.lower()


@pytest.mark.parametrize(
    ("make", "bad_path"),
    [
        pytest.param(lambda root: None, "sys", id="empty-root-dir"),
        pytest.param(lambda root: (root / CPU).mkdir(parents=True), CPU, id="sys-without-cpu-dirs"),
        pytest.param(lambda root: (root / "proc").mkdir(), "sys", id="only-proc"),
    ],
)
def test_empty_trees(tmp_path: Path, make: Callable[[Path], object], bad_path: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    make(root)
    with pytest.raises(DiscoveryError) as info:
        discover(root)
    assert info.value.path == root / bad_path
    assert str(root / bad_path) in str(info.value)


def test_missing_root_dir(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError) as info:
        discover(tmp_path / "does-not-exist")
    assert str(tmp_path / "does-not-exist") in str(info.value)
