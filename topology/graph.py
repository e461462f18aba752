"""A networkx view of a :class:`~topology.model.Topology` for plots and path questions.

Nodes are tuples ``(kind, id)``: ``("machine", 0)``, ``("package", p)``, ``("numa", n)``,
``("l3", g)``, ``("core", c)``, ``("cpu", t)``, ``("pci", address)``. Edges carry
``kind="contains"`` (containment), ``kind="distance"`` (NUMA distance, ``weight``) or
``kind="attached"`` (a PCI device to its NUMA node, package, or the machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

if TYPE_CHECKING:
    from topology.model import Topology

__all__ = ["topology_graph"]


def topology_graph(topo: Topology) -> nx.Graph:
    g = nx.Graph()
    machine = ("machine", 0)
    g.add_node(machine, kind="machine", label="Machine")
    for p in topo.packages.values():
        g.add_node(("package", p.id), kind="package", label=f"Package {p.id}", cpus=str(p.cpus))
        g.add_edge(machine, ("package", p.id), kind="contains")
    for n in topo.numa_nodes.values():
        g.add_node(("numa", n.id), kind="numa", label=f"NUMA {n.id}", cpus=str(n.cpus))
        parents = [("package", p.id) for p in topo.packages.values() if n.cpus and n.cpus <= p.cpus]
        for parent in parents or [machine]:
            g.add_edge(parent, ("numa", n.id), kind="contains")
    for a in topo.numa_nodes.values():
        for b, dist in a.distances.items():
            if b != a.id and b in topo.numa_nodes:
                g.add_edge(("numa", a.id), ("numa", b), kind="distance", weight=dist)
    for l3 in topo.l3_groups.values():
        g.add_node(("l3", l3.id), kind="l3", label=f"L3 {l3.id}", cpus=str(l3.cpus))
        numa = {topo.cpus[c].numa for c in l3.cpus if c in topo.cpus}
        parent = ("numa", numa.pop()) if len(numa) == 1 else machine
        g.add_edge(parent, ("l3", l3.id), kind="contains")
    for core in topo.cores.values():
        g.add_node(("core", core.id), kind="core", label=f"Core {core.id}", cpus=str(core.cpus))
        first = topo.cpus.get(core.id)
        if first is not None and first.l3 is not None:
            parent = ("l3", first.l3)
        elif first is not None:
            parent = ("numa", first.numa)
        else:
            parent = machine
        g.add_edge(parent, ("core", core.id), kind="contains")
    for info in topo.cpus.values():
        g.add_node(("cpu", info.cpu), kind="cpu", label=f"CPU {info.cpu}")
        parent = ("core", info.core) if info.core in topo.cores else ("numa", info.numa)
        g.add_edge(parent, ("cpu", info.cpu), kind="contains")
    for dev in topo.pci_devices:
        node = ("pci", dev.address)
        g.add_node(node, kind="pci", label=dev.address, gpu=dev.is_gpu, class_code=dev.class_code)
        if dev.numa_node is not None and dev.numa_node in topo.numa_nodes:
            parent = ("numa", dev.numa_node)
        elif dev.package is not None and dev.package in topo.packages:
            parent = ("package", dev.package)
        else:
            parent = machine
        g.add_edge(parent, node, kind="attached")
    return g
