"""The ``tree`` format of ``topolet discover``: a rich tree of the machine.

Machine → Package → NUMA node → L3 group → Core (with its threads), plus GPUs, NICs,
NVMe drives and co-processors under their NUMA node (or package, or the machine).

Real topologies do not nest cleanly (NUMA nodes spanning packages, L3 caches spanning
NUMA nodes, CPU-less memory nodes, nested NUMA localities, machines without packages
or caches), so the tree is built the way hwloc builds its own: each object hangs under
the *smallest* object whose CPU set contains its own; on equal sets the object of the
higher level (machine, package, NUMA, L3, core) is the parent. Objects without CPUs
hang under the machine. Every topology gives a tree; nothing is dropped.

NUMA distances are not repeated on every node: :func:`distance_matrix` prints them once,
as a matrix under the tree. In a pipe or a file the tree is printed without wrapping
(:func:`print_tree`), so no label is cut or broken mid-word.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from topology.cpuset import CPUSet
from topology.model import PCIDevice, Topology

__all__ = [
    "TreeObject",
    "distance_matrix",
    "notable_devices",
    "object_tree",
    "print_tree",
    "render_tree",
    "tree_text",
]

_GIB = 1024**3
# Hierarchy ranks: a lower rank is a higher level of the tree.
_MACHINE, _PACKAGE, _NUMA, _L3, _CORE = range(5)


@dataclass(eq=False)
class _Obj:
    """One tree object: its rank, a sort key, its CPUs, its label and its children."""

    rank: int
    key: tuple[int, int]
    cpus: CPUSet
    label: Text
    children: list[_Obj] = field(default_factory=list)


def _parent(obj: _Obj, candidates: Iterable[_Obj], machine: _Obj) -> _Obj:
    """The smallest candidate containing *obj*'s CPUs (ties: the deepest level)."""
    if not obj.cpus:
        return machine
    best = machine
    for c in candidates:
        if c is obj or not obj.cpus <= c.cpus:
            continue
        if len(c.cpus) == len(obj.cpus) and c.rank >= obj.rank:
            continue
        if (len(c.cpus), -c.rank) < (len(best.cpus), -best.rank):
            best = c
    return best


# ------------------------------------------------------------------------ labels


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "memory unknown"
    if nbytes >= _GIB:
        return f"{nbytes / _GIB:.1f} GiB"
    return f"{nbytes / 1024**2:.0f} MiB"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _machine_label(topo: Topology) -> Text:
    t = Text("Machine", style="bold")
    if topo.arch:
        t.append(f" ({topo.arch})")
    counts = [
        _count(topo.num_cpus, "CPU"),
        _count(topo.num_cores, "core"),
        _count(topo.num_sockets, "package"),
        _count(topo.num_numa_nodes, "NUMA node"),
        _count(topo.threads_per_core(), "thread") + "/core",
    ]
    t.append(" · " + ", ".join(counts))
    return t


def _package_label(topo: Topology, pid: int) -> Text:
    p = topo.packages[pid]
    name = f"Package {p.id}" if p.os_index is not None else f"Package L#{p.id}"
    return Text(f"{name} · CPUs {p.cpus or '-'}", style="bold cyan")


def _numa_label(topo: Topology, nid: int) -> Text:
    n = topo.numa_nodes[nid]
    t = Text(f"NUMA node {n.id}", style="bold green")
    t.append(f" · CPUs {n.cpus}" if n.cpus else " · no CPUs")
    t.append(f" · {_size(n.memory_bytes)}")
    if n.hugepages:
        pools = ", ".join(
            f"{kb}kB: {h.total}/{'?' if h.free is None else h.free}" for kb, h in sorted(n.hugepages.items())
        )
        t.append(f" · hugepages {pools}")
    return t


def _l3_label(topo: Topology, gid: int) -> Text:
    g = topo.l3_groups[gid]
    t = Text(f"L{g.level} {g.id} · CPUs {g.cpus}", style="yellow")
    if g.size_bytes is not None:
        t.append(f" · {g.size_bytes // 1024} KiB" if g.size_bytes < 1024**2 else f" · {_size(g.size_bytes)}")
    return t


def _thread(topo: Topology, cpu: int) -> Text:
    if cpu in topo.isolated_cpus:
        return Text(f"{cpu} (isolated)", style="magenta")
    return Text(str(cpu))


def _core_label(topo: Topology, cid: int) -> Text:
    c = topo.cores[cid]
    t = Text(f"Core {c.id}")
    if c.core_id is not None and c.core_id != c.id:
        t.append(f" (core_id {c.core_id})", style="dim")
    t.append(" · threads ")
    t.append(Text(" ").join(_thread(topo, cpu) for cpu in c.cpus))
    return t


def _loose_cpu_label(topo: Topology, cpu: int) -> Text:
    t = Text("CPU ")
    t.append(_thread(topo, cpu))
    return t


# --------------------------------------------------------------------- devices


def _device_kind(dev: PCIDevice) -> str | None:
    """The kind shown for *dev* (GPU, Display, NIC, NVMe, Accelerator), or None to leave it out."""
    if dev.is_gpu:
        return "GPU"
    base = dev.class_code >> 16
    if base == 0x03:
        return "Display"
    if base == 0x02:
        return "NIC"
    if dev.class_id == 0x0108:
        return "NVMe"
    if base in (0x0B, 0x12):
        return "Accelerator"
    return None


def notable_devices(topo: Topology) -> list[tuple[str, PCIDevice]]:
    """GPUs and other display controllers (class 0x03xx), NICs (0x02xx), NVMe drives
    (0x0108) and co-processors/accelerators (0x0bxx, 0x12xx), each with its kind."""
    out = []
    for dev in topo.pci_devices:
        kind = _device_kind(dev)
        if kind is not None:
            out.append((kind, dev))
    return out


def _device_label(kind: str, dev: PCIDevice) -> Text:
    t = Text(f"{kind} {dev.address}", style="bold magenta" if kind == "GPU" else "blue")
    t.append(f" [{dev.vendor:04x}:{dev.device:04x}]")
    if dev.vendor_name:
        t.append(f" {dev.vendor_name}")
    if dev.driver:
        t.append(f" driver={dev.driver}")
    if dev.is_gpu:
        t.append(" " + gpu_attribute_text(dev), style="green")
    if dev.device_nodes:
        t.append(" " + " ".join(dev.device_nodes), style="dim")
    return t


def gpu_attribute_text(dev: PCIDevice) -> str:
    """A GPU's attributes, ``unknown`` where no source said (memory in GiB)."""
    mem = f"{dev.memory_bytes / 2**30:g}GiB" if dev.memory_bytes is not None else "unknown"
    fields = [
        ("product", dev.product_name),
        ("memory", mem),
        ("uuid", dev.uuid),
        ("driver", dev.driver_version),
        ("cc", dev.compute_capability),
        ("pcieRoot", dev.pcie_root),
    ]
    return " ".join(f"{k}={v if v is not None else 'unknown'}" for k, v in fields)


# ------------------------------------------------------------------------- tree


def _objects(topo: Topology) -> tuple[_Obj, list[_Obj]]:
    machine = _Obj(_MACHINE, (0, 0), topo.online_cpus, _machine_label(topo))
    objs = [_Obj(_PACKAGE, (0, p), topo.packages[p].cpus, _package_label(topo, p)) for p in topo.packages]
    objs += [_Obj(_NUMA, (0, n), topo.numa_nodes[n].cpus, _numa_label(topo, n)) for n in topo.numa_nodes]
    objs += [_Obj(_L3, (0, g), topo.l3_groups[g].cpus, _l3_label(topo, g)) for g in topo.l3_groups]
    objs += [_Obj(_CORE, (0, c), topo.cores[c].cpus, _core_label(topo, c)) for c in topo.cores]
    return machine, objs


def _attach_devices(topo: Topology, machine: _Obj, by_kind: dict[tuple[int, int], _Obj]) -> None:
    for i, (kind, dev) in enumerate(notable_devices(topo)):
        holder = machine
        if dev.numa_node is not None and (_NUMA, dev.numa_node) in by_kind:
            holder = by_kind[(_NUMA, dev.numa_node)]
        elif dev.package is not None and (_PACKAGE, dev.package) in by_kind:
            holder = by_kind[(_PACKAGE, dev.package)]
        holder.children.append(_Obj(_CORE + 1, (1, i), CPUSet(), _device_label(kind, dev)))


def _attach_loose_cpus(topo: Topology, machine: _Obj, containers: list[_Obj]) -> None:
    """CPUs that belong to no core (trees without core information)."""
    in_cores = CPUSet().union(*(c.cpus for c in topo.cores.values()))
    for cpu in topo.online_cpus - in_cores:
        leaf = _Obj(_CORE, (0, cpu), CPUSet.of(cpu), _loose_cpu_label(topo, cpu))
        _parent(leaf, containers, machine).children.append(leaf)


def _build(topo: Topology) -> _Obj:
    machine, objs = _objects(topo)
    containers = [o for o in objs if o.rank < _CORE]
    for obj in objs:
        _parent(obj, containers, machine).children.append(obj)
    _attach_loose_cpus(topo, machine, containers)
    _attach_devices(topo, machine, {(o.rank, o.key[1]): o for o in objs})
    return machine


TreeObject = _Obj
"""One object of the tree: ``rank`` (0 machine, 1 package, 2 NUMA node, 3 L3, 4 core or
loose CPU, 5 device), ``key`` (``(0, id)``, or ``(1, index into notable_devices)`` for a
device), ``cpus``, ``label`` and ``children``."""


def object_tree(topo: Topology) -> _Obj:
    """The machine object with every other object under it, children in display order."""
    machine = _build(topo)

    def order(o: _Obj) -> None:
        o.children.sort(key=_sort_key)
        for c in o.children:
            order(c)

    order(machine)
    return machine


def _sort_key(o: _Obj) -> tuple[int, int, int, int]:
    first = o.cpus.first() if o.cpus else -1
    return (o.key[0], o.rank, first, o.key[1])


def _to_rich(obj: _Obj, tree: Tree) -> None:
    for child in sorted(obj.children, key=_sort_key):
        _to_rich(child, tree.add(child.label))


def _cpu_notes(topo: Topology) -> list[Text]:
    notes = []
    if topo.isolated_cpus:
        notes.append(Text(f"Isolated CPUs (isolcpus): {topo.isolated_cpus}", style="magenta"))
    if topo.offline_cpus:
        notes.append(Text(f"Offline CPUs: {topo.offline_cpus}", style="red"))
    if topo.disallowed_cpus:
        notes.append(Text(f"CPUs not allowed by the cpuset: {topo.disallowed_cpus}", style="red"))
    return notes


def render_tree(topo: Topology) -> Tree:
    """The rich tree of *topo*; safe on any topology the model can hold."""
    machine = _build(topo)
    tree = Tree(machine.label, guide_style="dim")
    for note in _cpu_notes(topo):
        tree.add(note)
    _to_rich(machine, tree)
    return tree


def distance_matrix(topo: Topology) -> str | None:
    """The NUMA distances (from row to column) as a text matrix; None for one node or
    when the kernel gave none. Unknown entries are ``-``."""
    ids = sorted(topo.numa_nodes)
    if len(ids) < 2 or not any(topo.numa_nodes[i].distances for i in ids):
        return None
    cells = [[str(topo.numa_nodes[r].distances.get(c, "-")) for c in ids] for r in ids]
    w = max(len(x) for x in [*(str(i) for i in ids), *(c for row in cells for c in row)])
    label = max(len(str(i)) for i in ids)
    lines = [
        "NUMA distances (row: from node, column: to node)",
        " " * (label + 2) + " ".join(str(i).rjust(w) for i in ids),
    ]
    lines += [
        f"{str(i).rjust(label)}: " + " ".join(c.rjust(w) for c in row)
        for i, row in zip(ids, cells, strict=True)
    ]
    return "\n".join(lines) + "\n"


def tree_text(topo: Topology, *, width: int = 1000) -> str:
    """The tree and the distance matrix as plain text (no colours, no wrapping below
    *width* columns), for files, pipes and tests."""
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(render_tree(topo))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    matrix = distance_matrix(topo)
    return text + ("\n" + matrix if matrix else "")


def print_tree(topo: Topology, console: Console | None = None) -> None:
    """The tree on a terminal (rich, wrapped at words), or plain text anywhere else."""
    console = console or Console()
    if not console.is_terminal:
        console.file.write(tree_text(topo))
        return
    console.print(render_tree(topo))
    matrix = distance_matrix(topo)
    if matrix:
        console.print()
        console.print(Text(matrix), soft_wrap=True)
