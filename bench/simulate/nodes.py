"""Node types of the simulated cluster: real machines as :class:`~topology.model.Topology` values.

Built-in types (:data:`NODE_TYPES`), each from a :class:`NodeSpec` assembled with
:meth:`Topology.build`; CPU ids follow Linux's enumeration on these machines (every
core's first thread, then every core's second thread), so NUMA nodes hold two
ranges, as on the real boxes:

* ``xeon-e5-2680v3``: 2 sockets x 12 cores x 2 threads (48 CPUs), 2 NUMA nodes with
  64 GiB and 2048 x 2 MiB hugepages each (128 GiB in all);
* ``gpu8-2s64c``: 2 sockets x 32 cores x 2 threads (128 CPUs), 2 NUMA nodes with
  256 GiB and 16 x 1 GiB hugepages each, 4 NVIDIA GPUs on each socket's PCIe root;
* ``epyc-7763-nps4``: 1 socket, 64 cores x 2 threads (128 CPUs) in 4 NUMA nodes
  (NPS4) with 128 GiB and 4096 x 2 MiB hugepages each, an L3 per 8 cores;
* ``epyc-7763-l3numa``: the same part with every L3 (CCD) its own NUMA node: 8 nodes
  of 16 CPUs (kubelet's single-numa-node limit).

:func:`hwloc_topologies` adds real machines discovered from the hwloc sysfs snapshots
(``DIR/expected/*.json`` naming ``DIR/snapshots/*.tar.bz2``). Snapshots that kubelet
could not run under ``single-numa-node`` (more than 8 NUMA nodes) or that are too small
to hold a pod are left out, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from bench.errors import BenchError
from topology.cpuset import CPUSet
from topology.hints import DEFAULT_MAX_ALLOWABLE_NUMA_NODES
from topology.model import CacheGroup, Core, HugePages, NumaNode, Package, PCIDevice, Topology

__all__ = [
    "DEFAULT_MIX",
    "NODE_TYPES",
    "MixError",
    "NodeSpec",
    "build_topology",
    "hwloc_topologies",
    "node_plan",
    "parse_mix",
]

_GIB = 1024**3
_KB_2M = 2048
_KB_1G = 1024 * 1024
#: NVIDIA A100 SXM4 (vendor, device, class: 3D controller).
_GPU_ID = (0x10DE, 0x20B0, 0x030200)
#: Memory assumed per CPU for snapshots that do not report NUMA memory.
_DEFAULT_GIB_PER_CPU = 4
#: Smallest snapshot kept: fewer CPUs cannot hold the generator's pods beside the reserved core.
_MIN_SNAPSHOT_CPUS = 8


class MixError(BenchError, ValueError):
    """A node-type mix is malformed (unknown type or bad weight); names the entry."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A machine shape. Distances: 10 local, ``near`` within a socket, ``far`` across."""

    name: str
    sockets: int
    numa_per_socket: int
    cores_per_numa: int
    threads: int
    memory_gib_per_numa: int
    hugepages_per_numa: Mapping[int, int]
    gpus_per_socket: int = 0
    cores_per_l3: int = 0
    near: int = 12
    far: int = 21


NODE_TYPES: Mapping[str, NodeSpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            NodeSpec("xeon-e5-2680v3", 2, 1, 12, 2, 64, {_KB_2M: 2048}, cores_per_l3=12),
            NodeSpec("gpu8-2s64c", 2, 1, 32, 2, 256, {_KB_1G: 16}, gpus_per_socket=4, cores_per_l3=32),
            NodeSpec("epyc-7763-nps4", 1, 4, 16, 2, 128, {_KB_2M: 4096}, cores_per_l3=8),
            NodeSpec("epyc-7763-l3numa", 1, 8, 8, 2, 64, {_KB_2M: 2048}, cores_per_l3=8),
        )
    }
)
#: The default cluster: half dual-socket Xeons, a quarter GPU nodes, a quarter EPYCs.
DEFAULT_MIX: tuple[tuple[str, int], ...] = (("xeon-e5-2680v3", 2), ("gpu8-2s64c", 1), ("epyc-7763-nps4", 1))


def _distance(spec: NodeSpec, a: int, b: int) -> int:
    if a == b:
        return 10
    return spec.near if a // spec.numa_per_socket == b // spec.numa_per_socket else spec.far


def _gpus(spec: NodeSpec, numa_of_socket: Sequence[int]) -> list[PCIDevice]:
    vendor, device, klass = _GPU_ID
    out = []
    for socket, numa in enumerate(numa_of_socket):
        for i in range(spec.gpus_per_socket):
            bus = 0x18 + socket * 0x80 + i * 0x10
            out.append(
                PCIDevice(
                    f"0000:{bus:02x}:00.0",
                    vendor,
                    device,
                    klass,
                    "nvidia",
                    numa,
                    socket,
                    kernel_numa_node=numa,
                )
            )
    return out


def build_topology(spec: NodeSpec) -> Topology:
    """The :class:`Topology` of *spec* (core ``g`` has CPUs ``g``, ``g + cores``, ...)."""
    numas = spec.sockets * spec.numa_per_socket
    total_cores = numas * spec.cores_per_numa

    def threads_of(cores: range) -> CPUSet:
        return CPUSet(c + t * total_cores for c in cores for t in range(spec.threads))

    def cores_of_numa(n: int) -> range:
        return range(n * spec.cores_per_numa, (n + 1) * spec.cores_per_numa)

    per_socket = spec.numa_per_socket * spec.cores_per_numa
    packages = [
        Package(s, threads_of(range(s * per_socket, (s + 1) * per_socket)), s) for s in range(spec.sockets)
    ]
    nodes = [
        NumaNode(
            n,
            threads_of(cores_of_numa(n)),
            spec.memory_gib_per_numa * _GIB,
            MappingProxyType(
                {kb: HugePages(kb, count, count) for kb, count in spec.hugepages_per_numa.items()}
            ),
            MappingProxyType({m: _distance(spec, n, m) for m in range(numas)}),
        )
        for n in range(numas)
    ]
    cores = [
        Core(g, g % per_socket, g // per_socket, threads_of(range(g, g + 1))) for g in range(total_cores)
    ]
    step = spec.cores_per_l3 or per_socket
    l3 = [
        CacheGroup(i, 3, threads_of(range(g, min(g + step, total_cores))))
        for i, g in enumerate(range(0, total_cores, step))
    ]
    first_numa = [s * spec.numa_per_socket for s in range(spec.sockets)]
    return Topology.build(
        packages=packages,
        numa_nodes=nodes,
        cores=cores,
        l3_groups=l3,
        pci_devices=_gpus(spec, first_numa),
        arch="x86_64",
    )


def parse_mix(entries: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """``NAME`` or ``NAME:WEIGHT`` entries (``--node-type``) as ``(name, weight)`` pairs."""
    out: list[tuple[str, int]] = []
    for entry in entries:
        name, _, weight = entry.partition(":")
        if name not in NODE_TYPES:
            raise MixError(
                f"--node-type {entry!r}: unknown node type {name!r}; known: {', '.join(NODE_TYPES)}"
            )
        if weight and (not weight.isdigit() or int(weight) < 1):
            raise MixError(f"--node-type {entry!r}: the weight after ':' must be a positive integer")
        out.append((name, int(weight) if weight else 1))
    return tuple(out)


def node_plan(nodes: int, mix: Sequence[tuple[str, int]] = DEFAULT_MIX) -> list[str]:
    """Node-type names for *nodes* nodes, split by weight (largest remainder), interleaved."""
    if nodes < 1:
        raise MixError(f"--nodes: expected at least 1 node, got {nodes}")
    total = sum(w for _, w in mix)
    counts = {name: 0 for name, _ in mix}
    remainders = []
    for i, (name, w) in enumerate(mix):
        share = nodes * w / total
        counts[name] += int(share)
        remainders.append((-(share - int(share)), i, name))
    for _, _, name in sorted(remainders)[: nodes - sum(counts.values())]:
        counts[name] += 1
    plan: list[str] = []
    while len(plan) < nodes:
        for name in counts:
            if counts[name] > 0:
                plan.append(name)
                counts[name] -= 1
    return plan


def _with_defaults(topo: Topology) -> Topology:
    """Fill unknown NUMA memory (``_DEFAULT_GIB_PER_CPU`` per CPU) and unknown free hugepages."""
    nodes = []
    for node in topo.numa_nodes.values():
        memory = (
            node.memory_bytes
            if node.memory_bytes is not None
            else len(node.cpus) * _DEFAULT_GIB_PER_CPU * _GIB
        )
        pools = {kb: replace(p, free=p.total) for kb, p in node.hugepages.items()}
        nodes.append(replace(node, memory_bytes=memory, hugepages=MappingProxyType(pools)))
    return replace(topo, numa_nodes=MappingProxyType({n.id: n for n in nodes}))


def _unusable(topo: Topology) -> str | None:
    if topo.num_numa_nodes > DEFAULT_MAX_ALLOWABLE_NUMA_NODES:
        return f"{topo.num_numa_nodes} NUMA nodes: kubelet refuses single-numa-node above 8"
    if topo.num_cpus < _MIN_SNAPSHOT_CPUS:
        return f"{topo.num_cpus} CPUs: too small"
    return None


def hwloc_topologies(directory: Path) -> tuple[dict[str, Topology], dict[str, str]]:
    """Discover every snapshot of an hwloc conformance set: ``({name: topology}, {name: why skipped})``."""
    from bench.discover import extracted, find_snapshots
    from topology.sysfs import discover

    kept: dict[str, Topology] = {}
    skipped: dict[str, str] = {}
    with extracted(find_snapshots(directory)) as roots:
        for name, root in roots.items():
            topo = discover(root)
            why = _unusable(topo)
            if why is None:
                kept[name] = _with_defaults(topo)
            else:
                skipped[name] = why
    return kept, skipped
