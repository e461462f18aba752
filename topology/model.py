"""The hardware topology model: pure, frozen values, no I/O.

machine → packages (sockets) → dies → NUMA nodes → L3 (uncore) groups → cores → threads,
plus per-NUMA memory and hugepages, NUMA distances, isolated/offline CPUs and PCI devices.

Ids are whatever the kernel says: sparse, not starting at 0. Everything is a dict keyed
by id, never a list indexed by id. ``core_id`` in sysfs is only unique within a package,
so a core is keyed by its *unique id*: the lowest CPU among its thread siblings (as
kubelet's ``getUniqueCoreID`` does).

Queries are named the kubelet way and return :class:`CPUSet`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from topology.cpuset import CPUSet

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "GPU_CLASSES",
    "GPU_VENDORS",
    "CPUInfo",
    "CacheGroup",
    "Core",
    "Die",
    "HugePages",
    "NumaNode",
    "PCIDevice",
    "Package",
    "Topology",
]

#: PCI class codes (base class << 8 | subclass) that are compute/display GPUs:
#: VGA, 3D controller, other display controller, processing accelerator.
GPU_CLASSES: frozenset[int] = frozenset({0x0300, 0x0302, 0x0380, 0x1200})
#: PCI vendor ids of GPU makers: NVIDIA, AMD/ATI, Intel.
GPU_VENDORS: Mapping[int, str] = MappingProxyType({0x10DE: "nvidia", 0x1002: "amd", 0x8086: "intel"})


@dataclass(frozen=True, slots=True)
class CPUInfo:
    """One logical CPU (hardware thread) and where it sits.

    ``core`` is the unique core id (lowest sibling CPU); ``socket``/``die``/``l3`` are
    None when the machine does not expose that level. ``numa`` is the NUMA node whose
    CPUs include this CPU (the lowest id when localities are nested or equal).
    """

    cpu: int
    core: int
    socket: int | None
    numa: int
    die: int | None = None
    l3: int | None = None


@dataclass(frozen=True, slots=True)
class Package:
    """A socket. ``id`` is the kernel's ``physical_package_id`` when it is a valid,
    unique id; otherwise a logical index and ``os_index`` is None."""

    id: int
    cpus: CPUSet
    os_index: int | None


@dataclass(frozen=True, slots=True)
class Die:
    """A die inside a package (``die_id``, unique within its package)."""

    package: int
    die_id: int
    cpus: CPUSet


@dataclass(frozen=True, slots=True)
class Core:
    """A physical core: its unique id (lowest sibling CPU), the sysfs ``core_id``
    (unique only within a package; None when unknown) and its threads."""

    id: int
    core_id: int | None
    package: int | None
    cpus: CPUSet


@dataclass(frozen=True, slots=True)
class CacheGroup:
    """CPUs that share one cache instance (an L3 "uncore" group). ``id`` is the
    kernel's cache ``id`` when present, else the lowest CPU of the group."""

    id: int
    level: int
    cpus: CPUSet
    size_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class HugePages:
    """One hugepage pool of a NUMA node. ``free`` is None when the snapshot lacks it."""

    size_kb: int
    total: int
    free: int | None = None

    @property
    def resource_name(self) -> str:
        """Kubernetes resource name: ``hugepages-2Mi``, ``hugepages-1Gi``, ..."""
        kb = self.size_kb
        if kb % (1024 * 1024) == 0:
            return f"hugepages-{kb // (1024 * 1024)}Gi"
        if kb % 1024 == 0:
            return f"hugepages-{kb // 1024}Mi"
        return f"hugepages-{kb}Ki"


@dataclass(frozen=True, slots=True)
class NumaNode:
    """A NUMA node: its CPUs (may be empty for memory-only nodes), memory in bytes
    (None when unknown), hugepage pools keyed by page size in kB, and the distance
    to every node keyed by node id."""

    id: int
    cpus: CPUSet
    memory_bytes: int | None = None
    hugepages: Mapping[int, HugePages] = field(default_factory=lambda: MappingProxyType({}))
    distances: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class PCIDevice:
    """A PCI function and its locality.

    ``class_code`` is the 24-bit class (base, subclass, prog-if). ``numa_node`` is the
    single NUMA node whose CPUs cover the device's ``local_cpus`` (None when several or
    none do); ``package`` likewise. ``kernel_numa_node`` is the kernel's own
    ``numa_node`` attribute (None when it says -1 or is absent): kubelet-facing
    NUMA affinity (device plugin TopologyInfo) uses it first.

    Device attributes (filled for GPUs by :mod:`topology.gpu_attributes`, or by NVML on the
    node): each is None when no source on the machine says it; None is reported as
    "unknown" and never guessed. ``memory_bytes`` is the device's own memory (VRAM), never a
    PCI BAR size. ``pcie_root`` is the PCIe root complex the function hangs off, as
    Kubernetes' ``resource.kubernetes.io/pcieRoot`` names it (``pci0000:c1``).
    ``attributes_source`` says where the attributes came from: ``"sysfs"`` or ``"nvml"``.
    """

    address: str
    vendor: int
    device: int
    class_code: int
    driver: str | None = None
    numa_node: int | None = None
    package: int | None = None
    local_cpus: CPUSet = field(default_factory=CPUSet)
    device_nodes: tuple[str, ...] = ()
    kernel_numa_node: int | None = None
    product_name: str | None = None
    memory_bytes: int | None = None
    uuid: str | None = None
    driver_version: str | None = None
    compute_capability: str | None = None
    pcie_root: str | None = None
    attributes_source: str | None = None

    @property
    def class_id(self) -> int:
        """Base class and subclass (``0x0302`` for a 3D controller)."""
        return self.class_code >> 8

    @property
    def vendor_name(self) -> str | None:
        return GPU_VENDORS.get(self.vendor)

    @property
    def is_gpu(self) -> bool:
        """A GPU: a display/3D/accelerator class function from a GPU vendor
        (not an NVIDIA audio function nor an NVSwitch bridge)."""
        return self.class_id in GPU_CLASSES and self.vendor in GPU_VENDORS


def _union(sets: Iterable[CPUSet]) -> CPUSet:
    return CPUSet().union(*sets)


@dataclass(frozen=True, slots=True)
class Topology:
    """A machine. Build it with :func:`Topology.build` (which derives the per-CPU index)
    or from discovery (:mod:`topology.sysfs`)."""

    cpus: Mapping[int, CPUInfo]
    packages: Mapping[int, Package]
    numa_nodes: Mapping[int, NumaNode]
    cores: Mapping[int, Core]
    l3_groups: Mapping[int, CacheGroup] = field(default_factory=lambda: MappingProxyType({}))
    dies: Mapping[tuple[int, int], Die] = field(default_factory=lambda: MappingProxyType({}))
    pci_devices: tuple[PCIDevice, ...] = ()
    offline_cpus: CPUSet = field(default_factory=CPUSet)
    disallowed_cpus: CPUSet = field(default_factory=CPUSet)
    isolated_cpus: CPUSet = field(default_factory=CPUSet)
    arch: str | None = None

    # ------------------------------------------------------------------ build
    @staticmethod
    def build(
        *,
        packages: Iterable[Package],
        numa_nodes: Iterable[NumaNode],
        cores: Iterable[Core],
        l3_groups: Iterable[CacheGroup] = (),
        dies: Iterable[Die] = (),
        pci_devices: Iterable[PCIDevice] = (),
        online: CPUSet | None = None,
        offline_cpus: CPUSet | None = None,
        disallowed_cpus: CPUSet | None = None,
        isolated_cpus: CPUSet | None = None,
        arch: str | None = None,
    ) -> Topology:
        """Assemble a topology and its per-CPU index from its parts.

        ``online`` defaults to the union of the NUMA nodes' CPUs. A CPU with no core is
        its own core; a CPU in no NUMA node is placed in the lowest-id node.
        """
        pkgs = {p.id: p for p in packages}
        nodes = {n.id: n for n in numa_nodes}
        core_map = {c.id: c for c in cores}
        l3 = {g.id: g for g in l3_groups}
        die_map = {(d.package, d.die_id): d for d in dies}
        if not nodes:
            raise ValueError("a topology needs at least one NUMA node")
        all_cpus = online if online is not None else _union(n.cpus for n in nodes.values())
        cpu_pkg: dict[int, int] = {c: p.id for p in pkgs.values() for c in p.cpus}
        cpu_core: dict[int, int] = {c: co.id for co in core_map.values() for c in co.cpus}
        cpu_l3: dict[int, int] = {c: g.id for g in l3.values() for c in g.cpus}
        cpu_die: dict[int, int] = {c: d.die_id for d in die_map.values() for c in d.cpus}
        cpu_numa: dict[int, int] = {}
        # Smallest locality first, then lowest id: a CPU belongs to its tightest node.
        for n in sorted(nodes.values(), key=lambda n: (len(n.cpus), n.id)):
            for c in n.cpus:
                cpu_numa.setdefault(c, n.id)
        fallback_node = min(nodes)
        infos = {
            c: CPUInfo(
                cpu=c,
                core=cpu_core.get(c, c),
                socket=cpu_pkg.get(c),
                numa=cpu_numa.get(c, fallback_node),
                die=cpu_die.get(c),
                l3=cpu_l3.get(c),
            )
            for c in all_cpus
        }
        return Topology(
            cpus=MappingProxyType(infos),
            packages=MappingProxyType(pkgs),
            numa_nodes=MappingProxyType(nodes),
            cores=MappingProxyType(core_map),
            l3_groups=MappingProxyType(l3),
            dies=MappingProxyType(die_map),
            pci_devices=tuple(sorted(pci_devices, key=lambda d: d.address)),
            offline_cpus=offline_cpus or CPUSet(),
            disallowed_cpus=disallowed_cpus or CPUSet(),
            isolated_cpus=isolated_cpus or CPUSet(),
            arch=arch,
        )

    # ------------------------------------------------------------- summaries
    @property
    def online_cpus(self) -> CPUSet:
        """CPUs that are online and allowed: the CPUs this topology is about."""
        return CPUSet(self.cpus)

    def all_cpus(self) -> CPUSet:
        return self.online_cpus

    @property
    def num_cpus(self) -> int:
        return len(self.cpus)

    @property
    def num_cores(self) -> int:
        return len(self.cores)

    @property
    def num_sockets(self) -> int:
        return len(self.packages)

    @property
    def num_numa_nodes(self) -> int:
        return len(self.numa_nodes)

    def threads_per_core(self) -> int:
        """Hardware threads per core (the maximum over cores; 1 without core info)."""
        return max((len(c.cpus) for c in self.cores.values()), default=1)

    def cpus_per_core(self) -> int:
        return self.threads_per_core()

    def cpus_per_socket(self) -> int:
        return max((len(p.cpus) for p in self.packages.values()), default=self.num_cpus)

    def gpus(self) -> tuple[PCIDevice, ...]:
        return tuple(d for d in self.pci_devices if d.is_gpu)

    # ------------------------------------------------------ kubelet queries
    def socket_ids(self) -> list[int]:
        return sorted(self.packages)

    def numa_node_ids(self) -> list[int]:
        return sorted(self.numa_nodes)

    def core_ids(self) -> list[int]:
        return sorted(self.cores)

    def cpus_in_sockets(self, *ids: int) -> CPUSet:
        return _union(self.packages[i].cpus for i in ids if i in self.packages)

    def cpus_in_numa_nodes(self, *ids: int) -> CPUSet:
        return _union(self.numa_nodes[i].cpus for i in ids if i in self.numa_nodes)

    def cpus_in_cores(self, *ids: int) -> CPUSet:
        return _union(self.cores[i].cpus for i in ids if i in self.cores)

    def cpus_in_l3_groups(self, *ids: int) -> CPUSet:
        return _union(self.l3_groups[i].cpus for i in ids if i in self.l3_groups)

    def cores_in_sockets(self, *ids: int) -> CPUSet:
        """Unique core ids (lowest sibling CPU) of the cores in these sockets."""
        want = set(ids)
        return CPUSet(c.id for c in self.cores.values() if c.package in want)

    def cores_in_numa_nodes(self, *ids: int) -> CPUSet:
        cpus = self.cpus_in_numa_nodes(*ids)
        return CPUSet(c.id for c in self.cores.values() if c.cpus and c.cpus <= cpus)

    def cores_in_l3_groups(self, *ids: int) -> CPUSet:
        cpus = self.cpus_in_l3_groups(*ids)
        return CPUSet(c.id for c in self.cores.values() if c.cpus and c.cpus <= cpus)

    def numa_nodes_in_sockets(self, *ids: int) -> CPUSet:
        """NUMA nodes with CPUs in these sockets (a set of node ids)."""
        cpus = self.cpus_in_sockets(*ids)
        return CPUSet(n.id for n in self.numa_nodes.values() if not n.cpus.isdisjoint(cpus))

    def numa_nodes_in_socket(self, socket: int) -> CPUSet:
        return self.numa_nodes_in_sockets(socket)

    def sockets_in_numa_nodes(self, *ids: int) -> CPUSet:
        cpus = self.cpus_in_numa_nodes(*ids)
        return CPUSet(p.id for p in self.packages.values() if not p.cpus.isdisjoint(cpus))

    def numa_nodes_of(self, cpus: CPUSet) -> CPUSet:
        """NUMA nodes (ids) holding any of these CPUs."""
        return CPUSet(self.cpus[c].numa for c in cpus if c in self.cpus)

    def sockets_of(self, cpus: CPUSet) -> CPUSet:
        return CPUSet(s for c in cpus if c in self.cpus and (s := self.cpus[c].socket) is not None)

    def cpus_of_cores_containing(self, cpus: CPUSet) -> CPUSet:
        """All threads of every core that holds one of *cpus*."""
        return self.cpus_in_cores(*{self.cpus[c].core for c in cpus if c in self.cpus})

    def numa_distance(self, a: int, b: int) -> int | None:
        return self.numa_nodes[a].distances.get(b) if a in self.numa_nodes else None

    # -------------------------------------------------------------- views
    def graph(self) -> nx.Graph:
        """A networkx view for plots and path questions (not for hot paths)."""
        from topology.graph import topology_graph

        return topology_graph(self)
