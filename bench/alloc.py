"""``topolet bench alloc``: latency of the static policy's allocate() on a big machine.

The machine is the design target's: 256 CPUs, 2 sockets, 8 NUMA nodes (4 per socket),
SMT-2, built in memory. For each request size the policy starts from a fresh state and
allocates until the pool runs low, timing every call; each size is repeated until it has
at least ``min_samples`` timings. Reports p50/p99/max in microseconds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

from bench.stats import percentile
from cpumanager.cpu_topology import CPUTopology
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology

__all__ = ["AllocResult", "big_machine", "run"]

SIZES = (1, 2, 7, 16, 64)


def big_machine(
    sockets: int = 2, numa_per_socket: int = 4, cores_per_numa: int = 16, threads: int = 2
) -> Topology:
    """Sockets x NUMA nodes x cores x SMT threads, Linux-style numbering: the first
    thread of every core first (0..127), then the siblings (128..255)."""
    ncores = sockets * numa_per_socket * cores_per_numa
    packages, nodes, cores = [], [], []
    for s in range(sockets):
        pkg = CPUSet()
        for n in range(numa_per_socket):
            node_id = s * numa_per_socket + n
            node = CPUSet()
            for c in range(cores_per_numa):
                core = node_id * cores_per_numa + c
                cpus = CPUSet(core + t * ncores for t in range(threads))
                cores.append(Core(id=core, core_id=c, package=s, cpus=cpus))
                node |= cpus
            nodes.append(NumaNode(id=node_id, cpus=node))
            pkg |= node
        packages.append(Package(id=s, cpus=pkg, os_index=s))
    return Topology.build(packages=packages, numa_nodes=nodes, cores=cores)


@dataclass(frozen=True)
class AllocResult:
    option: str
    request: int
    samples: int
    p50_us: float
    p99_us: float
    max_us: float


OPTIONS: dict[str, dict[str, str]] = {
    "default": {},
    "full-pcpus-only": {"full-pcpus-only": "true"},
    "fragmentation-aware": {"fragmentation-aware": "true"},
    "distribute-cpus-across-numa": {"distribute-cpus-across-numa": "true"},
}


def _measure(topo: Topology, opts: dict[str, str], n: int, min_samples: int) -> list[float]:
    policy = StaticPolicy(
        CPUTopology.from_topology(topo), num_reserved_cpus=2, options=StaticPolicyOptions.parse(opts)
    )
    lat: list[float] = []
    while len(lat) < min_samples:
        state = MemoryState()
        policy.start(state)
        i = 0
        while len(policy.available_cpus(state)) >= n + 2:
            t0 = time.perf_counter()
            policy.allocate(state, f"pod-{i}", "app", n)
            lat.append(time.perf_counter() - t0)
            i += 1
    return lat


def run(
    *, sizes: tuple[int, ...] = SIZES, options: tuple[str, ...] = ("default",), min_samples: int = 500
) -> list[AllocResult]:
    topo = big_machine()
    out = []
    for name in options:
        for n in sizes:
            lat = sorted(_measure(topo, OPTIONS[name], n, min_samples))
            out.append(
                AllocResult(
                    name, n, len(lat), percentile(lat, 50) * 1e6, percentile(lat, 99) * 1e6, lat[-1] * 1e6
                )
            )
    return out


def as_dicts(results: list[AllocResult]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]


def median_p99(results: list[AllocResult]) -> float:
    return statistics.median(r.p99_us for r in results)
