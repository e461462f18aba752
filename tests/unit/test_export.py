"""The topolet.topology/v1 JSON document and the dot export, on hand-built topologies.

The main fixture has sparse ids everywhere (packages 0 and 3, NUMA nodes 0 and 8, core
ids that are not positions), a NUMA node with unknown memory, hugepage pools with an
unknown free count, offline/isolated/disallowed CPUs, a GPU local to no single NUMA node
and a NIC local to node 8.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from topology.cpuset import CPUSet
from topology.export import SCHEMA, topology_to_dict, topology_to_dot
from topology.model import CacheGroup, Core, Die, HugePages, NumaNode, Package, PCIDevice, Topology

DOC = Path(__file__).resolve().parents[2] / "docs" / "topology-json.md"
GIB = 1024**3


def cs(text: str) -> CPUSet:
    return CPUSet.parse(text)


def sparse_topology() -> Topology:
    return Topology.build(
        arch="x86_64",
        packages=[Package(0, cs("0-3"), 0), Package(3, cs("8-11"), 3)],
        dies=[Die(0, 0, cs("0-3")), Die(3, 1, cs("8-11"))],
        numa_nodes=[
            NumaNode(
                0,
                cs("0-3"),
                8 * GIB,
                {2048: HugePages(2048, 512, 500), 1048576: HugePages(1048576, 2, None)},
                {0: 10, 8: 21},
            ),
            NumaNode(8, cs("8-11"), None, {}, {0: 21, 8: 10}),
        ],
        cores=[
            Core(0, 0, 0, cs("0,2")),
            Core(1, 1, 0, cs("1,3")),
            Core(8, 0, 3, cs("8,10")),
            Core(9, 1, 3, cs("9,11")),
        ],
        l3_groups=[CacheGroup(0, 3, cs("0-3"), 32 * 1024**2), CacheGroup(8, 3, cs("8-11"), None)],
        pci_devices=[
            PCIDevice("0000:af:00.0", 0x15B3, 0x1017, 0x020000, "mlx5_core", 8, 3, cs("8-11")),
            PCIDevice(
                "0000:3b:00.0",
                0x10DE,
                0x20B0,
                0x030200,
                "nvidia",
                None,
                None,
                cs("0-3,8-11"),
                ("/dev/nvidia0",),
            ),
        ],
        online=cs("0-3,8-11"),
        offline_cpus=cs("4-7"),
        disallowed_cpus=cs("12"),
        isolated_cpus=cs("3"),
    )


def bare_topology() -> Topology:
    """No packages, no cores, no L3, no PCI: one NUMA node of three CPUs."""
    return Topology.build(packages=[], numa_nodes=[NumaNode(0, cs("0-2"))], cores=[])


DOC_TOP_KEYS = {
    "schema",
    "arch",
    "online",
    "offline",
    "disallowed",
    "isolated",
    "summary",
    "packages",
    "dies",
    "numa_nodes",
    "cores",
    "l3_groups",
    "cpus",
    "pci_devices",
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return dict(topology_to_dict(sparse_topology()))


def dig(d: Any, path: str) -> Any:
    """``"numa_nodes/8/memory_bytes"`` → d["numa_nodes"]["8"]["memory_bytes"]; ints index lists."""
    for part in path.split("/"):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


VALUES = [
    ("schema", SCHEMA),
    ("arch", "x86_64"),
    ("online", "0-3,8-11"),
    ("offline", "4-7"),
    ("disallowed", "12"),
    ("isolated", "3"),
    (
        "summary",
        {"packages": 2, "numa_nodes": 2, "cores": 4, "cpus": 8, "threads_per_core": 2, "l3_groups": 2},
    ),
    ("packages/3", {"id": 3, "os_index": 3, "cpus": "8-11"}),
    ("dies/1", {"package": 3, "die_id": 1, "cpus": "8-11"}),
    ("numa_nodes/0/memory_bytes", 8 * GIB),
    ("numa_nodes/8/memory_bytes", None),
    ("numa_nodes/8/id", 8),
    ("numa_nodes/8/hugepages", {}),
    (
        "numa_nodes/0/hugepages/2048kB",
        {"size_kb": 2048, "resource": "hugepages-2Mi", "total": 512, "free": 500},
    ),
    (
        "numa_nodes/0/hugepages/1048576kB",
        {"size_kb": 1048576, "resource": "hugepages-1Gi", "total": 2, "free": None},
    ),
    ("numa_nodes/8/distances", {"0": 21, "8": 10}),
    ("cores/8", {"id": 8, "core_id": 0, "package": 3, "cpus": "8,10"}),
    ("l3_groups/0", {"id": 0, "level": 3, "cpus": "0-3", "size_bytes": 32 * 1024**2}),
    ("l3_groups/8/size_bytes", None),
    ("cpus/10", {"cpu": 10, "core": 8, "socket": 3, "numa": 8, "die": 1, "l3": 8}),
    ("cpus/3/core", 1),
    ("pci_devices/0/address", "0000:3b:00.0"),
    ("pci_devices/0/vendor", "0x10de"),
    ("pci_devices/0/device", "0x20b0"),
    ("pci_devices/0/class", "0x030200"),
    ("pci_devices/0/numa_node", None),
    ("pci_devices/0/package", None),
    ("pci_devices/0/local_cpus", "0-3,8-11"),
    ("pci_devices/0/device_nodes", ["/dev/nvidia0"]),
    ("pci_devices/0/is_gpu", True),
    ("pci_devices/1/class", "0x020000"),
    ("pci_devices/1/numa_node", 8),
    ("pci_devices/1/driver", "mlx5_core"),
    ("pci_devices/1/is_gpu", False),
]


@pytest.mark.parametrize(("path", "expected"), VALUES, ids=[p for p, _ in VALUES])
def test_sparse_topology_values(doc: dict[str, Any], path: str, expected: Any) -> None:
    assert dig(doc, path) == expected


def test_top_level_keys_are_the_v1_schema(doc: dict[str, Any]) -> None:
    assert set(doc) == DOC_TOP_KEYS


KEY_ORDER = [
    ("packages", ["0", "3"]),
    ("numa_nodes", ["0", "8"]),
    ("cores", ["0", "1", "8", "9"]),
    ("cpus", ["0", "1", "2", "3", "8", "9", "10", "11"]),
]


@pytest.mark.parametrize(("section", "keys"), KEY_ORDER, ids=[s for s, _ in KEY_ORDER])
def test_id_keyed_sections_are_strings_in_numeric_order(
    doc: dict[str, Any], section: str, keys: list[str]
) -> None:
    assert list(doc[section]) == keys


@pytest.mark.parametrize("topo", [sparse_topology(), bare_topology()], ids=["sparse-ids", "bare"])
def test_document_survives_a_json_round_trip(topo: Topology) -> None:
    d = topology_to_dict(topo)
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize("section", ["packages", "numa_nodes", "cores", "l3_groups"])
def test_cpu_lists_parse_back_to_the_model(doc: dict[str, Any], section: str) -> None:
    model = getattr(sparse_topology(), section)
    assert {int(k): CPUSet.parse(v["cpus"]) for k, v in doc[section].items()} == {
        k: v.cpus for k, v in model.items()
    }


def test_bare_topology_summary_and_empty_sections() -> None:
    d = topology_to_dict(bare_topology())
    assert d["summary"] == {
        "packages": 0,
        "numa_nodes": 1,
        "cores": 0,
        "cpus": 3,
        "threads_per_core": 1,
        "l3_groups": 0,
    }
    assert (d["packages"], d["cores"], d["l3_groups"], d["pci_devices"], d["arch"]) == ({}, {}, {}, [], None)
    assert d["cpus"]["2"] == {"cpu": 2, "core": 2, "socket": None, "numa": 0, "die": None, "l3": None}


def _keys(value: Any) -> set[str]:
    """Every non-id key of the document, at any depth."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if not re.fullmatch(r"\d+(kB)?", k):
                out.add(k)
            out |= _keys(v)
    elif isinstance(value, list):
        for v in value:
            out |= _keys(v)
    return out


def test_every_key_is_documented(doc: dict[str, Any]) -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = sorted(k for k in _keys(doc) if f"`{k}`" not in text)
    assert missing == []


# --------------------------------------------------------------------------- dot

NODE_RE = re.compile(r'^  "([^"]+)" \[label=')
EDGE_RE = re.compile(r'^  "([^"]+)" -- "([^"]+)" \[(.*)\];$')


@pytest.mark.parametrize("topo", [sparse_topology(), bare_topology()], ids=["sparse-ids", "bare"])
def test_dot_has_every_graph_node_and_edge(topo: Topology) -> None:
    text = topology_to_dot(topo)
    lines = text.splitlines()
    g = topo.graph()
    nodes = [m.group(1) for line in lines if (m := NODE_RE.match(line))]
    edges = [m.groups()[:2] for line in lines if (m := EDGE_RE.match(line))]
    assert (lines[0], lines[-1]) == ("graph topology {", "}")
    assert sorted(nodes) == sorted(f"{k}:{i}" for k, i in g.nodes)
    assert len(edges) == g.number_of_edges()
    assert {e for edge in edges for e in edge} <= set(nodes)


def test_dot_distance_edges_are_labelled_and_do_not_rank() -> None:
    lines = topology_to_dot(sparse_topology()).splitlines()
    distance = [line for line in lines if "style=dotted" in line]
    assert distance == ['  "numa:0" -- "numa:8" [style=dotted, constraint=false, label="21"];']


def test_dot_escapes_quotes_and_backslashes() -> None:
    odd = PCIDevice('0000:00:01.0"x\\', 0x8086, 0x1, 0x020000, numa_node=0)
    topo = Topology.build(packages=[], numa_nodes=[NumaNode(0, cs("0"))], cores=[], pci_devices=[odd])
    text = topology_to_dot(topo)
    assert '"pci:0000:00:01.0\\"x\\\\"' in text
    for line in text.splitlines():
        assert len(re.findall(r'(?<!\\)"', line.replace("\\\\", ""))) % 2 == 0, line
