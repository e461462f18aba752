"""Topology discovery from a sysfs/procfs tree (the live system or a snapshot).

The filesystem root is a constructor parameter: ``discover("/")`` reads this machine,
``discover("/tmp/snap")`` reads ``/tmp/snap/sys/...`` and ``/tmp/snap/proc/...`` and never
the host's files. The reading rules follow what real machines need (and what hwloc's
Linux backend does, so that both report the same machine):

* hex masks (``cpumap``, ``core_siblings``, ``shared_cpu_map``, ``local_cpus``) are
  authoritative over their ``*_list`` twins; files may end in NUL bytes;
* a CPU counts when it is present, online and allowed by the reading process' cpuset;
* a package / core / cache object is created by the lowest online CPU of its mask, so a
  corrupted mask that does not contain its own reader creates nothing;
* NUMA nodes come from ``nodeN`` directories restricted to allowed memory nodes; NVIDIA
  GPU-memory nodes are hidden; CPU-less memory nodes take the locality of their
  ``access1/initiators``; without node directories there is one node 0.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from topology.cpuset import CPUSet, CPUSetParseError, cpu_id_limit
from topology.errors import DiscoveryError
from topology.model import (
    CacheGroup,
    Core,
    Die,
    HugePages,
    NumaNode,
    Package,
    PCIDevice,
    Topology,
)

__all__ = ["SysfsReader", "discover"]

log = logging.getLogger(__name__)

_CPU_DIR = re.compile(r"cpu(\d+)")
_NODE_DIR = re.compile(r"node(\d+)")
_HUGE_DIR = re.compile(r"hugepages-(\d+)kB")


#: The most any sysfs attribute topolet reads holds: a cpu list of 8192 CPUs written
#: one id at a time is under 40 KiB, and the kernel itself caps attributes at a page.
MAX_FILE_BYTES = 64 * 1024
#: procfs files that grow with the machine (one block per CPU, one line per mount).
_LARGE_FILES = {"proc/cpuinfo", "proc/mounts", "proc/self/mounts", "proc/self/mountinfo"}
MAX_LARGE_FILE_BYTES = 8 * 1024 * 1024
#: Numbers in sysfs are at most 64-bit (20 decimal digits, or 0x and 16 hex digits).
_MAX_INT_CHARS = 20


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class SysfsReader:
    """Reads files under a root directory, with the parsing rules sysfs needs.

    Every error names the file and what was expected. Reads are bounded: only regular
    files are opened (a FIFO, a device such as ``/dev/zero`` behind a symlink, a socket
    is refused without blocking or reading), and a file larger than
    :data:`MAX_FILE_BYTES` (``proc/cpuinfo`` and the mount tables: 8 MiB) is refused
    rather than read.
    """

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)
        self._root = str(self.root)

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def _str(self, rel: str) -> str:
        # Plain strings on the hot path: pathlib costs more than the read itself here.
        return os.path.join(self._root, rel.lstrip("/"))

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of regular file *rel*, at most its cap; :class:`DiscoveryError`
        naming the file when it is not a regular file or holds more. ``OSError`` (the
        file is absent, unreadable) passes through."""
        p = self._str(rel)
        cap = MAX_LARGE_FILE_BYTES if rel.lstrip("/") in _LARGE_FILES else MAX_FILE_BYTES
        st = os.stat(p)  # before opening: opening a device can have effects (a watchdog)
        if not stat.S_ISREG(st.st_mode):
            raise DiscoveryError(p, "a regular file", f"found {_file_kind(st.st_mode)}")
        if st.st_size > cap:
            raise DiscoveryError(p, f"a file of at most {cap} bytes", f"it has {st.st_size}")
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode  # the path may have been swapped since the stat
            if not stat.S_ISREG(mode):
                raise DiscoveryError(p, "a regular file", f"found {_file_kind(mode)}")
            chunks: list[bytes] = []
            left = cap + 1
            while left > 0:
                chunk = os.read(fd, min(left, MAX_FILE_BYTES))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        if left <= 0:
            raise DiscoveryError(p, f"a file of at most {cap} bytes", "it holds more")
        return b"".join(chunks)

    def text(self, rel: str) -> str | None:
        """The file's text without NULs and surrounding whitespace; None if absent."""
        p = self._str(rel)
        try:
            data = self.read_bytes(rel)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except PermissionError:
            log.debug("cannot read %s: permission denied", p)
            return None
        except OSError as e:  # e.g. EINVAL/ENODEV from some sysfs attributes
            log.debug("cannot read %s: %s", p, e)
            return None
        return data.replace(b"\x00", b"").decode("utf-8", "replace").strip()

    def integer(self, rel: str) -> int | None:
        s = self.text(rel)
        if s is None or s == "":
            return None
        if len(s) > _MAX_INT_CHARS:
            raise DiscoveryError(
                self.path(rel), "a 64-bit integer", f"found {s[:40]!r}... ({len(s)} characters)"
            )
        try:
            return int(s, 0) if s.lower().startswith("0x") else int(s)
        except ValueError:
            raise DiscoveryError(self.path(rel), "an integer", f"found {s[:40]!r}") from None

    def mask(self, rel: str) -> CPUSet | None:
        s = self.text(rel)
        if s is None:
            return None
        try:
            return CPUSet.parse_mask(s)
        except CPUSetParseError as e:
            raise DiscoveryError(self.path(rel), "a hex CPU mask such as 'ff,00000000'", str(e)) from e

    def cpulist(self, rel: str) -> CPUSet | None:
        s = self.text(rel)
        if s is None:
            return None
        try:
            return CPUSet.parse(s)
        except CPUSetParseError as e:
            raise DiscoveryError(self.path(rel), "a cpu list such as '0-3,8'", str(e)) from e

    def mask_or_list(self, mask_rel: str, list_rel: str) -> CPUSet | None:
        """The hex mask when present (authoritative), else its list twin."""
        m = self.mask(mask_rel)
        return m if m is not None else self.cpulist(list_rel)

    def numbered_dirs(
        self, rel: str, pattern: re.Pattern[str], *, below: int | None = None
    ) -> dict[int, str]:
        """``{N: 'rel/nameN'}`` for entries of *rel* that match *pattern* and are dirs.
        With *below*, a directory numbered *below* or more is an error naming it."""
        base = self._str(rel)
        try:
            names = os.listdir(base)
        except OSError:
            return {}
        out: dict[int, str] = {}
        for name in names:
            m = pattern.fullmatch(name)
            if m and os.path.isdir(os.path.join(base, name)):
                digits = m.group(1)
                if below is not None and (len(digits) > len(str(below)) or int(digits) >= below):
                    raise DiscoveryError(
                        os.path.join(base, name), f"a number below {below} (the kernel's limit)"
                    )
                out[int(digits)] = f"{rel}/{name}"
        return out

    def cpu_id_limit(self) -> int | None:
        """How many CPU ids the kernel supports (``kernel_max`` + 1); None when unknown."""
        kernel_max = self.integer("sys/devices/system/cpu/kernel_max")
        return kernel_max + 1 if kernel_max is not None and kernel_max >= 0 else None

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self._str(rel)))
        except OSError:
            return []


# --------------------------------------------------------------------------- CPUs

SYS_CPU = "sys/devices/system/cpu"
SYS_NODE = "sys/devices/system/node"
SYS_PCI = "sys/bus/pci/devices"


def _present_cpus(r: SysfsReader) -> dict[int, str]:
    cpus = r.numbered_dirs(SYS_CPU, _CPU_DIR, below=cpu_id_limit())
    if not cpus:
        raise DiscoveryError(
            r.path(SYS_CPU), "cpuN directories (a sysfs tree: pass --root the directory that holds sys/)"
        )
    return cpus


def _online_cpus(r: SysfsReader, present: dict[int, str]) -> CPUSet:
    online = r.cpulist(f"{SYS_CPU}/online")
    if online is not None:
        return online & CPUSet(present)
    # Old kernels: cpuN/online decides; a missing file means online (cpu0 often has none).
    return CPUSet(c for c, d in present.items() if r.integer(f"{d}/online") != 0)


def _cpuset_paths(r: SysfsReader) -> tuple[str | None, str | None]:
    """Mount point and cpuset path of the reading process: (cpus file, mems file)."""
    cg_path: str | None = None
    own = r.text("proc/self/cpuset")
    if own:
        cg_path = own.splitlines()[0].strip()
    cgroup_v2_path: str | None = None
    for line in (r.text("proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "cpuset" in parts[1].split(",") and cg_path is None:
            cg_path = parts[2]
        elif parts[0] == "0" and parts[1] == "":
            cgroup_v2_path = parts[2]
    v2: tuple[str, str] | None = None
    for line in (r.text("proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mnt, fstype, opts = fields[1], fields[2], fields[3].split(",")
        if fstype == "cpuset" and cg_path is not None:
            return _join(mnt, cg_path, "cpus"), _join(mnt, cg_path, "mems")
        if fstype == "cgroup" and "cpuset" in opts and cg_path is not None:
            prefix = "" if "noprefix" in opts else "cpuset."
            return _join(mnt, cg_path, prefix + "cpus"), _join(mnt, cg_path, prefix + "mems")
        # cgroup v2, as hwloc reads it: the effective sets of the caller's cgroup (on a v2-only
        # host /proc/self/cpuset names the same path as the "0::" line of /proc/self/cgroup).
        v2_path = cgroup_v2_path if cgroup_v2_path is not None else cg_path
        if fstype == "cgroup2" and v2_path is not None and v2 is None:
            v2 = (_join(mnt, v2_path, "cpuset.cpus.effective"), _join(mnt, v2_path, "cpuset.mems.effective"))
    return v2 if v2 is not None else (None, None)


def _join(mnt: str, cg: str, name: str) -> str:
    return f"{mnt.strip('/')}/{cg.strip('/')}/{name}".replace("//", "/").lstrip("/")


def _allowed(r: SysfsReader) -> tuple[CPUSet | None, CPUSet | None]:
    cpus_f, mems_f = _cpuset_paths(r)
    cpus = r.cpulist(cpus_f) if cpus_f else None
    mems = r.cpulist(mems_f) if mems_f else None
    return cpus, mems


@dataclass
class _CPUFacts:
    package_id: int | None = None
    core_id: int | None = None
    die_id: int | None = None
    package_mask: CPUSet | None = None
    core_mask: CPUSet | None = None
    die_mask: CPUSet | None = None
    caches: list[tuple[int, str, CPUSet, int | None, int | None]] = field(default_factory=list)


def _size_bytes(s: str | None) -> int | None:
    if not s:
        return None
    m = re.fullmatch(r"(\d+)\s*([KMG]?)B?", s.strip(), re.IGNORECASE)
    if not m:
        return None
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(m.group(1)) * mult


def _read_cpu(r: SysfsReader, d: str) -> _CPUFacts:
    t = f"{d}/topology"
    f = _CPUFacts(
        package_id=r.integer(f"{t}/physical_package_id"),
        core_id=r.integer(f"{t}/core_id"),
        die_id=r.integer(f"{t}/die_id"),
        package_mask=r.mask(f"{t}/package_cpus") or r.mask(f"{t}/core_siblings"),
        core_mask=r.mask(f"{t}/core_cpus") or r.mask(f"{t}/thread_siblings"),
        die_mask=r.mask(f"{t}/die_cpus"),
    )
    if f.package_mask is None:
        f.package_mask = r.cpulist(f"{t}/package_cpus_list") or r.cpulist(f"{t}/core_siblings_list")
    if f.core_mask is None:
        f.core_mask = r.cpulist(f"{t}/core_cpus_list") or r.cpulist(f"{t}/thread_siblings_list")
    for idx in r.listdir(f"{d}/cache"):
        if not idx.startswith("index"):
            continue
        c = f"{d}/cache/{idx}"
        level = r.integer(f"{c}/level")
        ctype = r.text(f"{c}/type") or ""
        if level is None:
            continue
        shared = r.mask_or_list(f"{c}/shared_cpu_map", f"{c}/shared_cpu_list")
        if shared is None:
            continue
        f.caches.append((level, ctype, shared, r.integer(f"{c}/id"), _size_bytes(r.text(f"{c}/size"))))
    return f


# -------------------------------------------------------------------- discovery


@dataclass
class _Raw:
    """Objects as read, over online CPUs, before the allowed-cpuset restriction."""

    packages: list[tuple[int | None, CPUSet]] = field(default_factory=list)
    cores: list[tuple[int | None, int | None, CPUSet]] = field(default_factory=list)
    dies: list[tuple[int | None, int, CPUSet]] = field(default_factory=list)
    l3: list[tuple[int | None, CPUSet, int | None]] = field(default_factory=list)


def _check_complete(r: SysfsReader, present: dict[int, str], online: CPUSet) -> None:
    """Some online CPUs with a ``topology/`` directory and others without is a half-written
    tree (a copy interrupted, a bad snapshot): refuse it rather than guess."""
    missing = [c for c in online if not os.path.isdir(r._str(f"{present[c]}/topology"))]
    if missing and len(missing) < len(online):
        raise DiscoveryError(
            r.path(f"{present[missing[0]]}/topology"),
            "a topology directory for every online CPU (the tree looks half-written)",
            f"missing for CPUs {CPUSet(missing)}",
        )


def _objects_from_cpus(r: SysfsReader, present: dict[int, str], online: CPUSet) -> _Raw:
    _check_complete(r, present, online)
    facts = {c: _read_cpu(r, present[c]) for c in online}
    raw = _Raw()
    # AMD compute units: thread siblings that report different core_id are separate cores.
    split_siblings: bool | None = None
    for c in online:
        f = facts[c]
        if f.package_mask is not None:
            pset = f.package_mask & online
            if pset and pset.first() == c:
                raw.packages.append((f.package_id, pset))
        if f.die_mask is not None and f.die_id is not None:
            dset = f.die_mask & online
            if dset and dset.first() == c:
                raw.dies.append((f.package_id, f.die_id, dset))
        if f.core_mask is not None:
            cset = f.core_mask & online
            if len(cset) > 1 and split_siblings is None:
                sib = next(x for x in cset if x != c)
                split_siblings = facts[sib].core_id != f.core_id if sib in facts else False
            if split_siblings:
                raw.cores.append((f.core_id, f.package_id, CPUSet.of(c)))
            elif cset and cset.first() == c:
                raw.cores.append((f.core_id, f.package_id, cset))
        seen_l3 = False
        for level, ctype, shared, cid, size in f.caches:
            if level != 3 or ctype == "Instruction" or seen_l3:
                continue
            seen_l3 = True
            sset = shared & online
            if not sset:  # all-zero mask (old ia64 kernels): the core's threads share it
                sset = (f.core_mask or CPUSet.of(c)) & online
            if sset.first() == c:
                raw.l3.append((cid, sset, size))
    return raw


@dataclass
class _Node:
    id: int
    dir: str
    cpus: CPUSet
    mem_kb: int | None
    initiators: list[int]


def _nvidia_gpu_memory_nodes(r: SysfsReader) -> set[int]:
    """NUMA nodes that are NVIDIA GPU memory (``/proc/driver/nvidia/gpus/*/numa_status``)."""
    out: set[int] = set()
    for gpu in r.listdir("proc/driver/nvidia/gpus"):
        for line in (r.text(f"proc/driver/nvidia/gpus/{gpu}/numa_status") or "").splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "Node" and val.strip().lstrip("-").isdigit() and int(val) >= 0:
                out.add(int(val))
    return out


def _meminfo_kb(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        m = re.search(rf"\b{re.escape(key)}:\s+(\d+)", line)
        if m:
            return int(m.group(1))
    return None


def _read_nodes(r: SysfsReader, allowed_mems: CPUSet | None) -> list[_Node]:
    dirs = r.numbered_dirs(SYS_NODE, _NODE_DIR, below=cpu_id_limit())
    nodes: list[_Node] = []
    for nid in sorted(dirs):
        d = dirs[nid]
        cpus = r.mask_or_list(f"{d}/cpumap", f"{d}/cpulist")
        if cpus is None:
            raise DiscoveryError(r.path(f"{d}/cpumap"), "the node's CPU mask (cpumap or cpulist)")
        inits = [
            int(m.group(1))
            for name in r.listdir(f"{d}/access1/initiators")
            if (m := _NODE_DIR.fullmatch(name))
        ]
        nodes.append(_Node(nid, d, cpus, _meminfo_kb(r.text(f"{d}/meminfo"), "MemTotal"), inits))
    if not nodes:
        return nodes
    hidden = _nvidia_gpu_memory_nodes(r)
    orig = {n.id: n.cpus for n in nodes}
    if any(n.initiators for n in nodes):
        # Memory tiers: memory-less CPU nodes and generic initiators are hidden; memory
        # nodes take the locality of their initiators.
        hidden |= {n.id for n in nodes if n.mem_kb == 0}
        for n in nodes:
            if not n.cpus and n.initiators:
                n.cpus = CPUSet().union(*(orig.get(i, CPUSet()) for i in n.initiators))
    kept = [n for n in nodes if n.id not in hidden]
    if allowed_mems is not None:
        kept = [n for n in kept if n.id in allowed_mems]
    if len(kept) > 1 and all(n.cpus == kept[0].cpus for n in kept) and kept[0].cpus:
        log.warning("every NUMA node claims CPUs %s: firmware NUMA data ignored, one node kept", kept[0].cpus)
        kept = kept[:1]
    return kept


def _hugepages(r: SysfsReader, base: str) -> dict[int, HugePages]:
    out: dict[int, HugePages] = {}
    for size_kb, d in r.numbered_dirs(base, _HUGE_DIR).items():
        total = r.integer(f"{d}/nr_hugepages")
        if total is None:
            continue
        out[size_kb] = HugePages(size_kb=size_kb, total=total, free=r.integer(f"{d}/free_hugepages"))
    return out


def _global_memory(r: SysfsReader) -> tuple[int | None, dict[int, HugePages]]:
    meminfo = r.text("proc/meminfo")
    total_kb = _meminfo_kb(meminfo, "MemTotal")
    huge = _hugepages(r, "sys/kernel/mm/hugepages")
    if not huge:
        size = _meminfo_kb(meminfo, "Hugepagesize")
        count = _meminfo_kb(meminfo, "HugePages_Total")
        if size is not None and count is not None:
            huge = {size: HugePages(size, count, _meminfo_kb(meminfo, "HugePages_Free"))}
    return (total_kb * 1024 if total_kb is not None else None), huge


def _distances(r: SysfsReader, d: str, ids: list[int]) -> dict[int, int]:
    s = r.text(f"{d}/distance")
    if not s:
        return {}
    vals = s.split()
    if len(vals) != len(ids) or not all(v.isdigit() for v in vals):
        return {}
    return dict(zip(ids, map(int, vals), strict=True))


def _isolated(r: SysfsReader) -> CPUSet:
    iso = r.cpulist(f"{SYS_CPU}/isolated") or CPUSet()
    for arg in (r.text("proc/cmdline") or "").split():
        if arg.startswith("isolcpus="):
            # isolcpus=[flag,...,]cpu-list: flags are words (nohz, domain, managed_irq).
            parts = arg.split("=", 1)[1].split(",")
            cpu_parts = [p for p in parts if p and (p[0].isdigit())]
            try:
                iso |= CPUSet.parse(",".join(cpu_parts))
            except CPUSetParseError as e:
                raise DiscoveryError(r.path("proc/cmdline"), "isolcpus=[flags,]cpu-list", str(e)) from e
    return iso


# ------------------------------------------------------------------------- PCI


def _pci_devices(
    r: SysfsReader, online: CPUSet, topo_nodes: dict[int, CPUSet], pkgs: dict[int, CPUSet]
) -> list[PCIDevice]:
    out: list[PCIDevice] = []
    for addr in r.listdir(SYS_PCI):
        d = f"{SYS_PCI}/{addr}"
        cls = r.integer(f"{d}/class")
        if cls is None:
            continue
        vendor = r.integer(f"{d}/vendor") or 0
        device = r.integer(f"{d}/device") or 0
        local = r.mask_or_list(f"{d}/local_cpus", f"{d}/local_cpulist")
        kernel_numa = r.integer(f"{d}/numa_node")
        numa, pkg = _locality(local, online, topo_nodes, pkgs)
        if local is None and kernel_numa is not None and kernel_numa >= 0:
            numa = kernel_numa
        driver_link = r.path(f"{d}/driver")
        driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
        out.append(
            PCIDevice(
                address=addr,
                vendor=vendor,
                device=device,
                class_code=cls,
                driver=driver,
                numa_node=numa,
                package=pkg,
                local_cpus=(local & online) if local is not None else CPUSet(),
                device_nodes=_device_nodes(r, d, vendor),
                kernel_numa_node=kernel_numa if kernel_numa is not None and kernel_numa >= 0 else None,
            )
        )
    return out


def _locality(
    local: CPUSet | None, online: CPUSet, nodes: dict[int, CPUSet], pkgs: dict[int, CPUSet]
) -> tuple[int | None, int | None]:
    """The single NUMA node and package whose CPUs cover the device's local CPUs."""
    if local is None:
        return None, None
    cpus = local & online
    if not cpus:
        return None, None
    covering = [(len(c), n) for n, c in nodes.items() if cpus <= c]
    numa = None
    if covering:
        best = min(covering)[0]
        tight = [n for size, n in covering if size == best]
        numa = tight[0] if len(tight) == 1 else None
    pk = [p for p, c in pkgs.items() if cpus <= c]
    return numa, (pk[0] if len(pk) == 1 else None)


def _device_nodes(r: SysfsReader, d: str, vendor: int) -> tuple[str, ...]:
    """Character devices a container needs for this device (DRM render nodes)."""
    nodes = [f"/dev/dri/{n}" for n in r.listdir(f"{d}/drm") if n.startswith(("renderD", "card"))]
    return tuple(nodes)


# ------------------------------------------------------------------- assemble


def discover(root: Path | str = "/", *, whole_machine: bool = False) -> Topology:
    """Read the topology of the machine whose ``sys/`` and ``proc/`` live under *root*.

    By default, as hwloc, the topology is restricted to what the caller's cpuset cgroup
    allows (v1 ``cpuset.cpus``/``cpuset.mems``, v2 ``cpuset.cpus.effective``/
    ``cpuset.mems.effective``) and the rest is marked ``disallowed_cpus``. With
    *whole_machine* (the node agent, ``describe``, the CPU manager) every online CPU and
    NUMA node counts, whatever cgroup the caller runs in.

    Raises :class:`~topology.errors.DiscoveryError` naming the file when the tree is
    empty, half-written or garbled.
    """
    r = SysfsReader(root)
    if not r.path("sys").is_dir():
        raise DiscoveryError(r.path("sys"), "a sysfs tree (the directory given as root must contain sys/)")
    present = _present_cpus(r)
    online = _online_cpus(r, present)
    if not online:
        raise DiscoveryError(r.path(f"{SYS_CPU}/online"), "at least one online CPU")
    allowed_cpus, allowed_mems = (None, None) if whole_machine else _allowed(r)
    pus = online & allowed_cpus if allowed_cpus is not None else online
    if not pus:
        raise DiscoveryError(r.path("proc/self/cpuset"), "a cpuset that allows at least one online CPU")
    raw = _objects_from_cpus(r, present, online)
    nodes = _read_nodes(r, allowed_mems)
    return _assemble(r, present, online, pus, raw, nodes)


def _assemble(
    r: SysfsReader, present: dict[int, str], online: CPUSet, pus: CPUSet, raw: _Raw, nodes: list[_Node]
) -> Topology:
    node_full = {n.id: n.cpus & online for n in nodes}
    numa_nodes: list[NumaNode]
    if nodes:
        ids = sorted(r.numbered_dirs(SYS_NODE, _NODE_DIR))
        numa_nodes = [
            NumaNode(
                id=n.id,
                cpus=n.cpus & pus,
                memory_bytes=n.mem_kb * 1024 if n.mem_kb is not None else None,
                hugepages=_hugepages(r, f"{n.dir}/hugepages"),
                distances=_distances(r, n.dir, ids),
            )
            for n in nodes
        ]
    else:
        mem, huge = _global_memory(r)
        numa_nodes = [NumaNode(id=0, cpus=pus, memory_bytes=mem, hugepages=huge)]

    def keep(full: CPUSet) -> bool:
        # An object that lost all its PUs is kept only while it holds an allowed NUMA node.
        return bool(full & pus) or any(c and c <= full for c in node_full.values())

    pkg_objs = _packages(raw, pus, keep)
    core_objs = [
        Core(id=(cs & pus).first(), core_id=cid, package=_owner(cs & pus, pkg_objs), cpus=cs & pus)
        for cid, _pid, cs in raw.cores
        if cs & pus
    ]
    l3 = []
    for cid, cs, size in raw.l3:
        if keep(cs):
            gid = cid if cid is not None else cs.first()
            l3.append(CacheGroup(id=gid, level=3, cpus=cs & pus, size_bytes=size))
    if len({g.id for g in l3}) != len(l3):  # cache ids not unique machine-wide: use first CPU
        l3 = [
            CacheGroup(id=g.cpus.first() if g.cpus else -i - 1, level=3, cpus=g.cpus, size_bytes=g.size_bytes)
            for i, g in enumerate(l3)
        ]
    dies = [
        Die(package=pid, die_id=did, cpus=cs & pus)
        for pid, did, cs in raw.dies
        if pid is not None and cs & pus
    ]
    topo_nodes = {n.id: n.cpus for n in numa_nodes}
    pkg_cpus = {p.id: p.cpus for p in pkg_objs}
    from topology.gpu_attributes import with_device_attributes  # it reads through SysfsReader

    return Topology.build(
        packages=pkg_objs,
        numa_nodes=numa_nodes,
        cores=core_objs,
        l3_groups=l3,
        dies=dies,
        pci_devices=with_device_attributes(r, _pci_devices(r, pus, topo_nodes, pkg_cpus)),
        online=pus,
        offline_cpus=CPUSet(present) - online,
        disallowed_cpus=online - pus,
        isolated_cpus=_isolated(r) & pus,
        arch=_arch(r),
    )


def _packages(raw: _Raw, pus: CPUSet, keep: Callable[[CPUSet], bool]) -> list[Package]:
    kept = [(pid, cs) for pid, cs in raw.packages if keep(cs)]
    os_ids = [pid for pid, _ in kept]
    unique = all(p is not None and p >= 0 for p in os_ids) and len(set(os_ids)) == len(os_ids)
    out = []
    for i, (pid, cs) in enumerate(kept):
        if unique and pid is not None:
            out.append(Package(id=pid, cpus=cs & pus, os_index=pid))
        else:
            out.append(Package(id=i, cpus=cs & pus, os_index=pid if pid is not None and pid >= 0 else None))
    return out


def _owner(cpus: CPUSet, pkgs: list[Package]) -> int | None:
    for p in pkgs:
        if cpus and cpus <= p.cpus:
            return p.id
    return None


def _arch(r: SysfsReader) -> str | None:
    u = os.uname().machine if r.root == Path("/") else None
    if u:
        return u
    info = r.text("proc/cpuinfo") or ""
    for key in ("vendor_id", "cpu family", "isa", "Processor", "cpu", "arch"):
        for line in info.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return None
