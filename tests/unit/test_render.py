"""The tree and PNG renderings: awkward hand-built topologies, then every hwloc snapshot.

The renderers must never crash, must show every core, NUMA node and notable device
exactly once, and must put each object under the smallest object containing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.snapshots import snapshot_names
from topolet.render_png import Box, box_layout, render_png
from topolet.render_tree import notable_devices, tree_text
from topology.cpuset import CPUSet
from topology.export import topology_to_dict, topology_to_dot
from topology.model import CacheGroup, Core, NumaNode, Package, PCIDevice, Topology
from topology.sysfs import discover

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIB = 1024**3


def cs(text: str) -> CPUSet:
    return CPUSet.parse(text)


def cores(cpus: str) -> list[Core]:
    """One single-thread core per CPU."""
    return [Core(c, c, None, CPUSet.of(c)) for c in cs(cpus)]


def gpu(address: str, numa: int | None) -> PCIDevice:
    return PCIDevice(address, 0x10DE, 0x20B0, 0x030200, "nvidia", numa, None, CPUSet())


@dataclass(frozen=True)
class TreeCase:
    """A topology and, as (child, parent) label prefixes, where things must hang."""

    description: str
    topo: Topology
    placed: tuple[tuple[str, str], ...] = ()
    contains: tuple[str, ...] = ()


CASES = [
    TreeCase(
        "no packages, no cores, no L3",
        Topology.build(packages=[], numa_nodes=[NumaNode(0, cs("0-3"))], cores=[]),
        placed=(("NUMA node 0 ", "Machine"), ("CPU 3", "NUMA node 0 ")),
    ),
    TreeCase(
        "CPU-less NUMA node hangs under the machine",
        Topology.build(
            packages=[Package(0, cs("0-3"), 0)],
            numa_nodes=[NumaNode(0, cs("0-3"), GIB), NumaNode(1, CPUSet(), 16 * GIB)],
            cores=cores("0-3"),
        ),
        placed=(("NUMA node 1 ", "Machine"), ("NUMA node 0 ", "Package 0 ")),
        contains=("NUMA node 1 · no CPUs · 16.0 GiB",),
    ),
    TreeCase(
        "nested NUMA localities nest",
        Topology.build(
            packages=[Package(0, cs("0-7"), 0)],
            numa_nodes=[NumaNode(0, cs("0-7")), NumaNode(1, cs("0-3")), NumaNode(2, cs("4-7"))],
            cores=cores("0-7"),
        ),
        placed=(
            ("NUMA node 1 ", "NUMA node 0 "),
            ("NUMA node 2 ", "NUMA node 0 "),
            ("Core 5 ", "NUMA node 2 "),
        ),
    ),
    TreeCase(
        "NUMA node spanning two packages holds them",
        Topology.build(
            packages=[Package(0, cs("0-3"), 0), Package(1, cs("4-7"), 1)],
            numa_nodes=[NumaNode(0, cs("0-7"))],
            cores=cores("0-7"),
        ),
        placed=(("Package 1 ", "NUMA node 0 "), ("Core 6 ", "Package 1 ")),
    ),
    TreeCase(
        "L3 spanning two NUMA nodes holds them",
        Topology.build(
            packages=[Package(0, cs("0-7"), 0)],
            numa_nodes=[NumaNode(0, cs("0-3")), NumaNode(1, cs("4-7"))],
            cores=cores("0-7"),
            l3_groups=[CacheGroup(0, 3, cs("0-7"))],
        ),
        placed=(("L3 0 ", "Package 0 "), ("NUMA node 1 ", "L3 0 "), ("Core 7 ", "NUMA node 1 ")),
    ),
    TreeCase(
        "equal localities are siblings",
        Topology.build(
            packages=[Package(0, cs("0-3"), 0)],
            numa_nodes=[NumaNode(0, cs("0-3")), NumaNode(1, cs("0-3"))],
            cores=cores("0-3"),
        ),
        placed=(("NUMA node 0 ", "Package 0 "), ("NUMA node 1 ", "Package 0 ")),
    ),
    TreeCase(
        "GPU without NUMA node under the machine, GPU with one under it",
        Topology.build(
            packages=[Package(5, cs("0-1"), 5)],
            numa_nodes=[NumaNode(8, cs("0-1"))],
            cores=cores("0-1"),
            pci_devices=[gpu("0000:3b:00.0", None), gpu("0000:af:00.0", 8)],
        ),
        placed=(("GPU 0000:3b:00.0", "Machine"), ("GPU 0000:af:00.0", "NUMA node 8 ")),
    ),
    TreeCase(
        "isolated, offline and disallowed CPUs are marked",
        Topology.build(
            packages=[Package(0, cs("0-3"), 0)],
            numa_nodes=[NumaNode(0, cs("0-3"))],
            cores=[Core(0, 0, 0, cs("0,2")), Core(1, 1, 0, cs("1,3"))],
            offline_cpus=cs("4-7"),
            disallowed_cpus=cs("8"),
            isolated_cpus=cs("2-3"),
        ),
        contains=(
            "Core 0 · threads 0 2 (isolated)",
            "Offline CPUs: 4-7",
            "Isolated CPUs (isolcpus): 2-3",
            "not allowed by the cpuset: 8",
        ),
    ),
    TreeCase(
        "package without CPUs",
        Topology.build(
            packages=[Package(0, cs("0-1"), 0), Package(1, CPUSet(), 1)],
            numa_nodes=[NumaNode(0, cs("0-1")), NumaNode(1, CPUSet())],
            cores=cores("0-1"),
        ),
        placed=(("Package 1 ", "Machine"),),
        contains=("Package 1 · CPUs -",),
    ),
]


def parent_of(text: str, prefix: str) -> str:
    """The label of the tree line above *prefix*'s line at one indent level less."""
    lines = text.splitlines()
    starts = [next((i for i, ch in enumerate(line) if ch.isalnum()), 0) for line in lines]
    (row,) = [i for i, line in enumerate(lines) if line[starts[i] :].startswith(prefix)]
    for i in range(row - 1, -1, -1):
        if starts[i] < starts[row] and not lines[i][starts[i] :].startswith(
            ("Offline", "Isolated", "CPUs not")
        ):
            return lines[i][starts[i] :]
    raise AssertionError(f"{prefix!r} has no parent")


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.description)
def test_tree_placement(c: TreeCase) -> None:
    text = tree_text(c.topo)
    for child, parent in c.placed:
        assert parent_of(text, child).startswith(parent), text
    for fragment in c.contains:
        assert fragment in text, text


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.description)
def test_tree_shows_every_object_once(c: TreeCase) -> None:
    text = tree_text(c.topo)
    for core in c.topo.cores.values():
        assert text.count(f"Core {core.id} ·") == 1
    for node in c.topo.numa_nodes:
        assert text.count(f"NUMA node {node} ·") == 1
    for kind, dev in notable_devices(c.topo):
        assert text.count(f"{kind} {dev.address}") == 1


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.description)
def test_png_of_awkward_topologies(c: TreeCase, tmp_path: Path) -> None:
    path = render_png(c.topo, tmp_path / "t.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def _walk(box: Box) -> list[Box]:
    return [box, *(b for c in box.children for b in _walk(c))]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.description)
def test_boxes_nest_and_siblings_do_not_overlap(c: TreeCase) -> None:
    machine = box_layout(c.topo)
    for box in _walk(machine):
        for child in box.children:
            assert box.x <= child.x and child.x + child.w <= box.x + box.w + 1e-6
            assert box.y <= child.y and child.y + child.h <= box.y + box.h + 1e-6
        for i, a in enumerate(box.children):
            for other in box.children[i + 1 :]:
                apart = (
                    a.x + a.w <= other.x
                    or other.x + other.w <= a.x
                    or a.y + a.h <= other.y
                    or other.y + other.h <= a.y
                )
                assert apart, f"{a.label} overlaps {other.label}"
    pus = sorted(cpu for box in _walk(machine) for cpu in box.pus)
    assert pus == sorted(c.topo.online_cpus)


# ------------------------------------------------------------- every snapshot


@pytest.mark.parametrize("name", snapshot_names())
def test_every_snapshot_renders(name: str, hwloc_snapshot: Callable[[str], Path]) -> None:
    topo = discover(hwloc_snapshot(name))
    text = tree_text(topo)
    assert text.count("Core ") == topo.num_cores
    assert "distances" not in text.split("NUMA distances")[0]
    machine = box_layout(topo)
    assert machine.w <= 1900, "packages wrap into rows no wider than a screen"
    assert sorted(cpu for box in _walk(machine) for cpu in box.pus) == sorted(topo.online_cpus)
    assert json.loads(json.dumps(topology_to_dict(topo)))["summary"]["cpus"] == topo.num_cpus
    assert topology_to_dot(topo).count('"cpu:') >= topo.num_cpus
