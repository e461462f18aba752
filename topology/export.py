"""Stable, versioned exports of a :class:`~topology.model.Topology`: JSON-ready dicts and dot text.

``topology_to_dict`` is the machine-readable face of ``topolet discover --format json``
and of the demo report; other tools parse it, so its shape is a contract. The schema
is named by the ``"schema"`` key (``topolet.topology/v1``) and documented key by key in
``docs/topology-json.md``. Within v1, keys are only ever added, never renamed, removed
or re-typed; anything else is a new schema version.

Conventions (the same everywhere in the document):

* CPU sets are canonical Linux cpu-list strings (``"0-3,8"``; ``""`` is the empty set).
* Collections of objects that have an integer id are JSON objects keyed by that id as a
  string (JSON keys must be strings), ordered by id; the id is repeated as an int inside.
* Dies (keyed by package and die) and PCI devices are lists, in a documented order.
* Unknown values are ``null``, never left out.

``topology_to_dot`` writes Graphviz dot text of :func:`topology.graph.topology_graph` by
hand, so no pydot/graphviz dependency is needed to produce it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from topology.model import CacheGroup, Core, CPUInfo, Die, HugePages, NumaNode, Package, PCIDevice

if TYPE_CHECKING:
    from topology.model import Topology

__all__ = ["SCHEMA", "topology_to_dict", "topology_to_dot"]

#: Name and version of the JSON document produced by :func:`topology_to_dict`.
SCHEMA = "topolet.topology/v1"


class SummaryDict(TypedDict):
    packages: int
    numa_nodes: int
    cores: int
    cpus: int
    threads_per_core: int
    l3_groups: int


class PackageDict(TypedDict):
    id: int
    os_index: int | None
    cpus: str


class DieDict(TypedDict):
    package: int
    die_id: int
    cpus: str


class HugePagesDict(TypedDict):
    size_kb: int
    resource: str
    total: int
    free: int | None


class NumaNodeDict(TypedDict):
    id: int
    cpus: str
    memory_bytes: int | None
    hugepages: dict[str, HugePagesDict]
    distances: dict[str, int]


class CoreDict(TypedDict):
    id: int
    core_id: int | None
    package: int | None
    cpus: str


class CacheGroupDict(TypedDict):
    id: int
    level: int
    cpus: str
    size_bytes: int | None


class CPUDict(TypedDict):
    cpu: int
    core: int
    socket: int | None
    numa: int
    die: int | None
    l3: int | None


# "class" is a Python keyword, hence the functional form.
PCIDeviceDict = TypedDict(
    "PCIDeviceDict",
    {
        "address": str,
        "vendor": str,
        "device": str,
        "class": str,
        "driver": str | None,
        "numa_node": int | None,
        "kernel_numa_node": int | None,
        "package": int | None,
        "local_cpus": str,
        "device_nodes": list[str],
        "is_gpu": bool,
        "product_name": str | None,
        "memory_bytes": int | None,
        "uuid": str | None,
        "driver_version": str | None,
        "compute_capability": str | None,
        "pcie_root": str | None,
        "attributes_source": str | None,
    },
)


class TopologyDict(TypedDict):
    schema: str
    arch: str | None
    online: str
    offline: str
    disallowed: str
    isolated: str
    summary: SummaryDict
    packages: dict[str, PackageDict]
    dies: list[DieDict]
    numa_nodes: dict[str, NumaNodeDict]
    cores: dict[str, CoreDict]
    l3_groups: dict[str, CacheGroupDict]
    cpus: dict[str, CPUDict]
    pci_devices: list[PCIDeviceDict]


# ---------------------------------------------------------------------------- JSON


def _package(p: Package) -> PackageDict:
    return {"id": p.id, "os_index": p.os_index, "cpus": str(p.cpus)}


def _die(d: Die) -> DieDict:
    return {"package": d.package, "die_id": d.die_id, "cpus": str(d.cpus)}


def _hugepages(h: HugePages) -> HugePagesDict:
    return {"size_kb": h.size_kb, "resource": h.resource_name, "total": h.total, "free": h.free}


def _numa_node(n: NumaNode) -> NumaNodeDict:
    return {
        "id": n.id,
        "cpus": str(n.cpus),
        "memory_bytes": n.memory_bytes,
        "hugepages": {f"{kb}kB": _hugepages(n.hugepages[kb]) for kb in sorted(n.hugepages)},
        "distances": {str(other): n.distances[other] for other in sorted(n.distances)},
    }


def _core(c: Core) -> CoreDict:
    return {"id": c.id, "core_id": c.core_id, "package": c.package, "cpus": str(c.cpus)}


def _cache(g: CacheGroup) -> CacheGroupDict:
    return {"id": g.id, "level": g.level, "cpus": str(g.cpus), "size_bytes": g.size_bytes}


def _cpu(i: CPUInfo) -> CPUDict:
    return {"cpu": i.cpu, "core": i.core, "socket": i.socket, "numa": i.numa, "die": i.die, "l3": i.l3}


def _pci(d: PCIDevice) -> PCIDeviceDict:
    return {
        "address": d.address,
        "vendor": f"0x{d.vendor:04x}",
        "device": f"0x{d.device:04x}",
        "class": f"0x{d.class_code:06x}",
        "driver": d.driver,
        "numa_node": d.numa_node,
        "kernel_numa_node": d.kernel_numa_node,
        "package": d.package,
        "local_cpus": str(d.local_cpus),
        "device_nodes": list(d.device_nodes),
        "is_gpu": d.is_gpu,
        "product_name": d.product_name,
        "memory_bytes": d.memory_bytes,
        "uuid": d.uuid,
        "driver_version": d.driver_version,
        "compute_capability": d.compute_capability,
        "pcie_root": d.pcie_root,
        "attributes_source": d.attributes_source,
    }


def _summary(topo: Topology) -> SummaryDict:
    return {
        "packages": topo.num_sockets,
        "numa_nodes": topo.num_numa_nodes,
        "cores": topo.num_cores,
        "cpus": topo.num_cpus,
        "threads_per_core": topo.threads_per_core(),
        "l3_groups": len(topo.l3_groups),
    }


def topology_to_dict(topo: Topology) -> TopologyDict:
    """The ``topolet.topology/v1`` document for *topo* (see ``docs/topology-json.md``).

    The result holds only JSON types (str, int, bool, None, dict, list) and is ready
    for :func:`json.dumps`.
    """
    return {
        "schema": SCHEMA,
        "arch": topo.arch,
        "online": str(topo.online_cpus),
        "offline": str(topo.offline_cpus),
        "disallowed": str(topo.disallowed_cpus),
        "isolated": str(topo.isolated_cpus),
        "summary": _summary(topo),
        "packages": {str(i): _package(topo.packages[i]) for i in sorted(topo.packages)},
        "dies": [_die(topo.dies[k]) for k in sorted(topo.dies)],
        "numa_nodes": {str(i): _numa_node(topo.numa_nodes[i]) for i in sorted(topo.numa_nodes)},
        "cores": {str(i): _core(topo.cores[i]) for i in sorted(topo.cores)},
        "l3_groups": {str(i): _cache(topo.l3_groups[i]) for i in sorted(topo.l3_groups)},
        "cpus": {str(i): _cpu(topo.cpus[i]) for i in sorted(topo.cpus)},
        "pci_devices": [_pci(d) for d in sorted(topo.pci_devices, key=lambda d: d.address)],
    }


# ----------------------------------------------------------------------------- dot

#: Fill colours of graph nodes by kind (X11 colour names that Graphviz knows).
_DOT_COLOURS: Mapping[str, str] = {
    "machine": "lightgrey",
    "package": "lightskyblue",
    "numa": "palegreen",
    "l3": "khaki",
    "core": "lightsalmon",
    "cpu": "white",
    "pci": "plum",
}

#: Edge styles by edge kind; NUMA distance edges must not shape the hierarchy.
_DOT_EDGE_STYLE: Mapping[str, str] = {
    "contains": "solid",
    "attached": "dashed",
    "distance": "dotted",
}


def _quote(text: str) -> str:
    """A dot double-quoted string: backslashes and quotes escaped, newlines as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_id(node: Hashable) -> str:
    if isinstance(node, tuple) and len(node) == 2:
        return _quote(f"{node[0]}:{node[1]}")
    return _quote(str(node))


def _dot_label(attrs: Mapping[str, Any]) -> str:
    label = str(attrs.get("label", ""))
    cpus = attrs.get("cpus")
    if cpus:
        label += f"\ncpus {cpus}"
    if attrs.get("gpu"):
        label += "\nGPU"
    return label


def _dot_node(node: Hashable, attrs: Mapping[str, Any]) -> str:
    kind = str(attrs.get("kind", ""))
    colour = _DOT_COLOURS.get(kind, "white")
    shape = "ellipse" if kind in ("cpu", "pci") else "box"
    return (
        f"  {_dot_id(node)} [label={_quote(_dot_label(attrs))}, shape={shape}, "
        f"style=filled, fillcolor={colour}];"
    )


def _dot_edge(a: Hashable, b: Hashable, attrs: Mapping[str, Any]) -> str:
    kind = str(attrs.get("kind", "contains"))
    parts = [f"style={_DOT_EDGE_STYLE.get(kind, 'solid')}"]
    if kind == "distance":
        parts += ["constraint=false", f"label={_quote(str(attrs.get('weight', '')))}"]
    return f"  {_dot_id(a)} -- {_dot_id(b)} [{', '.join(parts)}];"


def topology_to_dot(topo: Topology) -> str:
    """Graphviz dot text (an undirected ``graph``) of ``topo.graph()``.

    Node ids are ``"kind:id"``; containment edges are solid, PCI attachments dashed and
    NUMA distances dotted, labelled with the distance and kept out of the ranking.
    """
    g = topo.graph()
    lines = ["graph topology {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    lines += [_dot_node(n, attrs) for n, attrs in g.nodes(data=True)]
    lines += [_dot_edge(a, b, attrs) for a, b, attrs in g.edges(data=True)]
    lines.append("}")
    return "\n".join(lines) + "\n"
