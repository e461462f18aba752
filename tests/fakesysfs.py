"""Fake sysfs/procfs trees for discovery tests, written from a compact machine spec.

:func:`write_fake_sysfs` lays out ``<root>/sys`` and ``<root>/proc`` the way a Linux kernel
shows them: every CPU set appears both as a hex mask (``thread_siblings``, ``cpumap``,
``shared_cpu_map``, ``local_cpus``) and as a cpu-list (the ``*_list`` / ``cpulist`` files);
offline CPUs keep their ``cpuN`` directory and ``online`` file but lose ``topology/`` and
``cache/``, and vanish from every sibling and node list; PCI devices live under
``sys/devices/pciDDDD:BB/`` with symlinks in ``sys/bus/pci/devices/``.

The named specs mirror kubelet's CPU manager fixtures (``single_socket_ht`` 8 CPUs,
``dual_socket_ht`` 12, ``dual_socket_no_ht`` 8, ``dual_socket_multi_numa_ht`` 80) plus
``sparse_ids``: sockets 0 and 2, NUMA nodes 0 and 4, non-contiguous core ids and GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from topology.cpuset import CPUSet

__all__ = [
    "SPECS",
    "FakeCPU",
    "FakePCI",
    "FakeSpec",
    "dual_socket_ht",
    "dual_socket_multi_numa_ht",
    "dual_socket_no_ht",
    "kernel_mask",
    "single_socket_ht",
    "sparse_ids",
    "write_fake_sysfs",
]

_CACHES = (  # (index, level, type, size): index3 is the L3, one per socket or per node
    (0, 1, "Data", "32K"),
    (1, 1, "Instruction", "32K"),
    (2, 2, "Unified", "1024K"),
    (3, 3, "Unified", "32768K"),
)


@dataclass(frozen=True)
class FakePCI:
    """One PCI function. ``numa_node`` -1 means no locality (written as ``-1``);
    ``local_cpus`` (a cpu-list) defaults to the node's CPUs, or all online CPUs for -1."""

    address: str
    vendor: int
    device: int
    class_code: int
    numa_node: int = -1
    local_cpus: str | None = None
    driver: str | None = None


@dataclass(frozen=True)
class FakeCPU:
    """Where one logical CPU sits in a spec (derived, see :meth:`FakeSpec.layout`)."""

    cpu: int
    socket: int
    node: int
    core_index: int
    core_id: int
    l3_id: int


@dataclass(frozen=True)
class FakeSpec:
    """A machine in a few numbers.

    CPU numbering follows Linux on x86: all first threads of every core, then all second
    threads (``cpu = core_index + thread * total_cores``). Cores are numbered socket by
    socket, or round-robin over sockets when ``interleave_sockets`` (kubelet's
    ``topoDualSocketHT``). NUMA nodes split each socket's cores into equal runs.
    """

    sockets: tuple[int, ...] = (0,)
    numa_per_socket: int = 1
    numa_ids: tuple[int, ...] | None = None
    cores_per_socket: int = 4
    threads_per_core: int = 2
    interleave_sockets: bool = False
    core_ids: tuple[int, ...] | None = None
    l3_per_node: bool = False
    offline: str = ""
    isolated: str = ""
    cmdline: str = "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet"
    memory_mb_per_node: int = 16384
    hugepages_2m: int = 0
    hugepages_2m_free: int | None = None
    hugepages_1g: int = 0
    pci: tuple[FakePCI, ...] = field(default=())

    @property
    def total_cores(self) -> int:
        return len(self.sockets) * self.cores_per_socket

    @property
    def num_cpus(self) -> int:
        return self.total_cores * self.threads_per_core

    @property
    def node_ids(self) -> tuple[int, ...]:
        count = len(self.sockets) * self.numa_per_socket
        ids = self.numa_ids if self.numa_ids is not None else tuple(range(count))
        if len(ids) != count:
            raise ValueError(f"numa_ids needs {count} ids, got {ids}")
        return ids

    def layout(self) -> list[FakeCPU]:
        """Every CPU (online or not) with its socket id, node id, core and L3 ids."""
        per_node = self.cores_per_socket // self.numa_per_socket
        core_ids = self.core_ids or tuple(range(self.cores_per_socket))
        cpus: list[FakeCPU] = []
        for si, socket in enumerate(self.sockets):
            for ci in range(self.cores_per_socket):
                g = (
                    ci * len(self.sockets) + si
                    if self.interleave_sockets
                    else si * self.cores_per_socket + ci
                )
                ni = si * self.numa_per_socket + min(ci // per_node, self.numa_per_socket - 1)
                for t in range(self.threads_per_core):
                    cpu = g + t * self.total_cores
                    l3 = ni if self.l3_per_node else si
                    cpus.append(FakeCPU(cpu, socket, self.node_ids[ni], g, core_ids[ci], l3))
        return sorted(cpus, key=lambda c: c.cpu)


# --------------------------------------------------------------------------- formatting


def kernel_mask(cpus: Iterable[int], nbits: int) -> str:
    """A cpumask as the kernel prints it (``%*pb``): 32-bit hex words, most significant
    first, the leading word only as wide as ``nbits`` needs (``"fff"`` for 12 CPUs)."""
    bits = CPUSet(cpus).bits
    words = max(1, -(-nbits // 32))
    out = [f"{(bits >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(words))]
    lead_digits = -(-(nbits - 32 * (words - 1)) // 4)
    out[0] = out[0][-lead_digits:]
    return ",".join(out)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def _write_set(directory: Path, mask_name: str, list_name: str, cpus: CPUSet, nbits: int) -> None:
    _write(directory / mask_name, kernel_mask(cpus, nbits))
    _write(directory / list_name, str(cpus))


# --------------------------------------------------------------------------- writers


def _write_cpus(sysdir: Path, spec: FakeSpec) -> None:
    cpu_dir = sysdir / "devices" / "system" / "cpu"
    layout = spec.layout()
    n = spec.num_cpus
    offline = CPUSet.parse(spec.offline)
    online = CPUSet.range(0, n - 1) - offline
    for name, cpus in (("possible", CPUSet.range(0, n - 1)), ("present", CPUSet.range(0, n - 1))):
        _write(cpu_dir / name, str(cpus))
    _write(cpu_dir / "online", str(online))
    _write(cpu_dir / "offline", str(offline))
    _write(cpu_dir / "kernel_max", str(max(n - 1, 8191)))
    _write(cpu_dir / "isolated", spec.isolated)
    _write(cpu_dir / "nohz_full", "(null)")
    for c in layout:
        _write_one_cpu(cpu_dir / f"cpu{c.cpu}", c, layout, online, n)


def _write_one_cpu(d: Path, c: FakeCPU, layout: list[FakeCPU], online: CPUSet, n: int) -> None:
    if c.cpu != 0 or c.cpu not in online:
        _write(d / "online", "1" if c.cpu in online else "0")
    d.mkdir(parents=True, exist_ok=True)
    (d / f"node{c.node}").symlink_to(Path("..", "..", "node", f"node{c.node}"))
    if c.cpu not in online:
        return

    def peers(same: object) -> CPUSet:
        return CPUSet(o.cpu for o in layout if same(o)) & online  # type: ignore[operator]

    topo = d / "topology"
    _write(topo / "physical_package_id", str(c.socket))
    _write(topo / "die_id", "0")
    _write(topo / "core_id", str(c.core_id))
    core = peers(lambda o: o.core_index == c.core_index)
    package = peers(lambda o: o.socket == c.socket)
    _write_set(topo, "thread_siblings", "thread_siblings_list", core, n)
    _write_set(topo, "core_cpus", "core_cpus_list", core, n)
    _write_set(topo, "core_siblings", "core_siblings_list", package, n)
    _write_set(topo, "package_cpus", "package_cpus_list", package, n)
    _write_set(topo, "die_cpus", "die_cpus_list", package, n)
    l3 = peers(lambda o: o.l3_id == c.l3_id)
    for index, level, kind, size in _CACHES:
        cache = d / "cache" / f"index{index}"
        _write(cache / "level", str(level))
        _write(cache / "type", kind)
        _write(cache / "size", size)
        _write(cache / "id", str(c.l3_id if level == 3 else c.core_index))
        _write_set(cache, "shared_cpu_map", "shared_cpu_list", l3 if level == 3 else core, n)


def _distance(spec: FakeSpec, a: int, b: int) -> int:
    if a == b:
        return 10
    per = spec.numa_per_socket
    ia, ib = spec.node_ids.index(a), spec.node_ids.index(b)
    return 11 if ia // per == ib // per else 21


def _node_meminfo(node: int, spec: FakeSpec) -> str:
    total_kb = spec.memory_mb_per_node * 1024
    used_kb = total_kb // 4
    rows = [
        ("MemTotal", f"{total_kb} kB"),
        ("MemFree", f"{total_kb - used_kb} kB"),
        ("MemUsed", f"{used_kb} kB"),
        ("HugePages_Total", str(spec.hugepages_2m)),
        ("HugePages_Free", str(_free_2m(spec))),
        ("HugePages_Surp", "0"),
    ]
    return "".join(f"Node {node} {key + ':':<16}{value:>14}\n" for key, value in rows)


def _free_2m(spec: FakeSpec) -> int:
    return spec.hugepages_2m if spec.hugepages_2m_free is None else spec.hugepages_2m_free


def _write_nodes(sysdir: Path, spec: FakeSpec) -> None:
    node_dir = sysdir / "devices" / "system" / "node"
    layout = spec.layout()
    online = CPUSet.range(0, spec.num_cpus - 1) - CPUSet.parse(spec.offline)
    ids = CPUSet(spec.node_ids)
    for name in ("online", "possible", "has_memory", "has_normal_memory"):
        _write(node_dir / name, str(ids))
    with_cpus = CPUSet(c.node for c in layout if c.cpu in online)
    _write(node_dir / "has_cpu", str(with_cpus))
    for node in spec.node_ids:
        d = node_dir / f"node{node}"
        cpus = CPUSet(c.cpu for c in layout if c.node == node) & online
        _write_set(d, "cpumap", "cpulist", cpus, spec.num_cpus)
        _write(d / "distance", " ".join(str(_distance(spec, node, b)) for b in spec.node_ids))
        _write(d / "meminfo", _node_meminfo(node, spec))
        for size_kb, total, free in (
            (2048, spec.hugepages_2m, _free_2m(spec)),
            (1048576, spec.hugepages_1g, spec.hugepages_1g),
        ):
            hp = d / "hugepages" / f"hugepages-{size_kb}kB"
            _write(hp / "nr_hugepages", str(total))
            _write(hp / "free_hugepages", str(free))
            _write(hp / "surplus_hugepages", "0")


def _write_pci(sysdir: Path, spec: FakeSpec) -> None:
    layout = spec.layout()
    online = CPUSet.range(0, spec.num_cpus - 1) - CPUSet.parse(spec.offline)
    bus_devices = sysdir / "bus" / "pci" / "devices"
    bus_devices.mkdir(parents=True, exist_ok=True)
    for dev in spec.pci:
        domain_bus = dev.address.rsplit(":", 1)[0]
        real = sysdir / "devices" / f"pci{domain_bus}" / dev.address
        if dev.local_cpus is not None:
            local = CPUSet.parse(dev.local_cpus)
        elif dev.numa_node >= 0:
            local = CPUSet(c.cpu for c in layout if c.node == dev.numa_node) & online
        else:
            local = online
        _write(real / "vendor", f"0x{dev.vendor:04x}")
        _write(real / "device", f"0x{dev.device:04x}")
        _write(real / "subsystem_vendor", f"0x{dev.vendor:04x}")
        _write(real / "class", f"0x{dev.class_code:06x}")
        _write(real / "numa_node", str(dev.numa_node))
        _write_set(real, "local_cpus", "local_cpulist", local, spec.num_cpus)
        if dev.driver:
            driver_dir = sysdir / "bus" / "pci" / "drivers" / dev.driver
            driver_dir.mkdir(parents=True, exist_ok=True)
            (real / "driver").symlink_to(Path("..", "..", "..", "bus", "pci", "drivers", dev.driver))
        (bus_devices / dev.address).symlink_to(
            Path("..", "..", "..", "devices", f"pci{domain_bus}", dev.address)
        )


def _write_proc(rootdir: Path, spec: FakeSpec) -> None:
    nodes = len(spec.node_ids)
    total_kb = spec.memory_mb_per_node * 1024 * nodes
    lines = [
        ("MemTotal", f"{total_kb} kB"),
        ("MemFree", f"{total_kb * 3 // 4} kB"),
        ("HugePages_Total", str(spec.hugepages_2m * nodes)),
        ("HugePages_Free", str(_free_2m(spec) * nodes)),
        ("HugePages_Rsvd", "0"),
        ("HugePages_Surp", "0"),
        ("Hugepagesize", "2048 kB"),
    ]
    _write(rootdir / "proc" / "meminfo", "".join(f"{k + ':':<16}{v:>12}\n" for k, v in lines))
    _write(rootdir / "proc" / "cmdline", spec.cmdline)
    for size_kb, per_node in ((2048, spec.hugepages_2m), (1048576, spec.hugepages_1g)):
        _write(
            rootdir / "sys" / "kernel" / "mm" / "hugepages" / f"hugepages-{size_kb}kB" / "nr_hugepages",
            str(per_node * nodes),
        )


def write_fake_sysfs(root: Path, spec: FakeSpec) -> Path:
    """Write ``<root>/sys`` and ``<root>/proc`` for *spec* and return *root*, the
    directory a discoverer takes as its filesystem root."""
    root.mkdir(parents=True, exist_ok=True)
    sysdir = root / "sys"
    _write_cpus(sysdir, spec)
    _write_nodes(sysdir, spec)
    _write_pci(sysdir, spec)
    _write_proc(root, spec)
    return root


# --------------------------------------------------------------------------- named specs

single_socket_ht = FakeSpec(sockets=(0,), cores_per_socket=4, threads_per_core=2)
"""kubelet topoSingleSocketHT: 8 CPUs, core c = {c, c+4}."""

dual_socket_ht = FakeSpec(sockets=(0, 1), cores_per_socket=3, threads_per_core=2, interleave_sockets=True)
"""kubelet topoDualSocketHT: 12 CPUs, socket 0 = even CPUs, core k = {k, k+6}."""

dual_socket_no_ht = FakeSpec(sockets=(0, 1), cores_per_socket=4, threads_per_core=1)
"""kubelet topoDualSocketNoHT: 8 CPUs, socket 0 = 0-3, socket 1 = 4-7."""

dual_socket_multi_numa_ht = FakeSpec(
    sockets=(0, 1), numa_per_socket=2, cores_per_socket=20, threads_per_core=2, l3_per_node=True
)
"""kubelet topoDualSocketMultiNumaPerSocketHT: 80 CPUs, node 0 = 0-9,40-49 ... node 3 = 30-39,70-79."""

sparse_ids = FakeSpec(
    sockets=(0, 2),
    numa_ids=(0, 4),
    cores_per_socket=4,
    threads_per_core=2,
    core_ids=(0, 1, 8, 9),
    hugepages_2m=512,
    hugepages_2m_free=500,
    pci=(
        FakePCI("0000:c1:00.0", 0x10DE, 0x2330, 0x030200, numa_node=4, driver="nvidia"),
        FakePCI("0000:c1:00.1", 0x10DE, 0x22A3, 0x040300, numa_node=4),
        FakePCI("0000:41:00.0", 0x1002, 0x74A1, 0x120000, numa_node=0, driver="amdgpu"),
        FakePCI("0000:03:00.0", 0x1A03, 0x2000, 0x030000, numa_node=-1, driver="ast"),
        FakePCI("0000:17:00.0", 0x15B3, 0x101B, 0x020000, numa_node=0, driver="mlx5_core"),
    ),
)
"""Sockets 0 and 2, NUMA nodes 0 and 4, 16 CPUs (socket 2 = 4-7,12-15), core ids 0,1,8,9;
an NVIDIA 3D controller and its audio function on node 4, an AMD accelerator on node 0,
a BMC VGA with no locality and a NIC."""

SPECS: dict[str, FakeSpec] = {
    "single_socket_ht": single_socket_ht,
    "dual_socket_ht": dual_socket_ht,
    "dual_socket_no_ht": dual_socket_no_ht,
    "dual_socket_multi_numa_ht": dual_socket_multi_numa_ht,
    "sparse_ids": sparse_ids,
}
