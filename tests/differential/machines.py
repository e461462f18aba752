"""Hypothesis strategies for the differential tests: machines, policy setups and hint sets.

A machine is a list of CPUs ``(cpu, core, socket, numa, l3)``, exactly what both
kubelet's ``CPUTopology`` and topolet's :class:`~cpumanager.cpu_topology.CPUTopology` are
built from. Machines have 1-8 sockets and either 1-8 NUMA nodes per socket or NUMA nodes
that span several sockets; SMT 1, 2 or 4; L3 caches (kubelet: uncore caches) shared by
groups of cores (or, as kubelet assumes without cache information, one per socket); CPU,
core, socket and NUMA ids that can be sparse and non-contiguous, and sibling threads
numbered either next to each other or one core-count apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

__all__ = ["CPU", "Machine", "Setup", "machines", "merge_requests", "setups"]

#: (cpu, core, socket, numa, l3)
CPU = tuple[int, int, int, int, int]

MAX_CPUS = 192

#: kubelet's static policy options (1.34) that these tests draw from.
CPU_OPTIONS = (
    "full-pcpus-only",
    "distribute-cpus-across-numa",
    "align-by-socket",
    "distribute-cpus-across-cores",
    "strict-cpu-reservation",
    "prefer-align-cpus-by-uncorecache",
)
TM_POLICIES = ("none", "best-effort", "restricted", "single-numa-node")


@dataclass(frozen=True)
class Machine:
    cpus: tuple[CPU, ...]
    description: str

    @property
    def ids(self) -> list[int]:
        return sorted(c[0] for c in self.cpus)

    @property
    def numa_nodes(self) -> list[int]:
        return sorted({c[3] for c in self.cpus})


@dataclass(frozen=True)
class Setup:
    machine: Machine
    num_reserved: int
    reserved: tuple[int, ...]
    options: dict[str, str] = field(default_factory=dict)
    tm_policy: str = "none"


def _sparse(draw: st.DrawFn, n: int, label: str, limit: int = 1 << 16) -> list[int]:
    """n strictly increasing ids below *limit*: 0..n-1, or with random gaps and offset."""
    widest = min(3, limit // n)
    if widest < 2 or not draw(st.booleans(), label=f"sparse {label}"):
        return list(range(n))
    start = draw(st.integers(0, limit - 1 - widest * (n - 1)).map(lambda x: min(x, 3)))
    gaps = draw(st.lists(st.integers(1, widest), min_size=n, max_size=n))
    out, cur = [], start
    for g in gaps:
        out.append(cur)
        cur += g
    return out


@st.composite
def machines(draw: st.DrawFn) -> Machine:
    sockets = draw(st.integers(1, 8))
    spanning = sockets > 1 and draw(st.booleans(), label="numa spans sockets")
    if spanning:
        per_numa = draw(st.sampled_from([d for d in range(2, sockets + 1) if sockets % d == 0]))
        numa_count, numa_per_socket = sockets // per_numa, 0
    else:
        per_numa = 0
        numa_per_socket = draw(st.integers(1, 8))
        numa_count = sockets * numa_per_socket
    smt = draw(st.sampled_from([1, 2, 4]))
    budget = max(1, MAX_CPUS // (smt * numa_count * max(per_numa, 1)))
    cores_per_unit = draw(st.integers(1, min(6, budget)))  # per NUMA node, or per socket if spanning
    l3_size = draw(st.integers(0, cores_per_unit))  # cores per L3 cache; 0: none (one per socket)

    # Physical layout: (socket, numa index, core index within unit)
    layout: list[tuple[int, int]] = []  # (socket, numa index) per core
    if spanning:
        for s in range(sockets):
            layout += [(s, s // per_numa)] * cores_per_unit
    else:
        for s in range(sockets):
            for k in range(numa_per_socket):
                layout += [(s, s * numa_per_socket + k)] * cores_per_unit
    n_cores = len(layout)
    n_cpus = n_cores * smt

    socket_ids = _sparse(draw, sockets, "sockets")
    numa_ids = _sparse(draw, numa_count, "numa", limit=64)  # kubelet's NUMA bitmask holds 0-63
    cpu_ids = _sparse(draw, n_cpus, "cpus")
    siblings_adjacent = draw(st.booleans(), label="siblings adjacent")

    # L3 groups: consecutive cores of one NUMA node (or socket, when spanning).
    l3_of_core: list[int] = []
    group, prev_unit, in_group = -1, None, 0
    for s, nidx in layout:
        unit = (s, nidx)
        if l3_size == 0:
            l3_of_core.append(socket_ids[s])
            continue
        if unit != prev_unit or in_group == l3_size:
            group, in_group = group + 1, 0
        prev_unit = unit
        in_group += 1
        l3_of_core.append(group)

    thread_pos: dict[tuple[int, int], int] = {}
    for core in range(n_cores):
        for t in range(smt):
            thread_pos[(core, t)] = core * smt + t if siblings_adjacent else t * n_cores + core
    core_ids_lowest = draw(st.booleans(), label="core id = lowest thread")
    core_id_list = _sparse(draw, n_cores, "cores")
    cpus: list[CPU] = []
    for core, (s, nidx) in enumerate(layout):
        threads = [cpu_ids[thread_pos[(core, t)]] for t in range(smt)]
        cid = min(threads) if core_ids_lowest else core_id_list[core]
        for cpu in threads:
            cpus.append((cpu, cid, socket_ids[s], numa_ids[nidx], l3_of_core[core]))
    cpus.sort()
    numa_layout = f"spanning {per_numa} sockets" if spanning else f"{numa_per_socket}/socket"
    desc = (
        f"{sockets} socket(s), {numa_count} NUMA ({numa_layout}), {cores_per_unit} cores/unit, "
        f"SMT{smt}, L3 {l3_size or 'per socket'}, "
        f"siblings {'adjacent' if siblings_adjacent else 'apart'}"
    )
    return Machine(tuple(cpus), desc)


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    machine = draw(machines())
    ids = machine.ids
    n = draw(st.integers(0, min(4, len(ids) - 1)))
    explicit = n > 0 and draw(st.booleans(), label="explicit reserved list")
    reserved: tuple[int, ...] = ()
    if explicit:
        reserved = tuple(sorted(draw(st.sets(st.sampled_from(ids), min_size=n, max_size=n))))
    chosen = draw(st.lists(st.sampled_from(CPU_OPTIONS), unique=True, max_size=3))
    options = {name: draw(st.sampled_from(["true", "true", "true", "false"])) for name in chosen}
    tm = draw(st.sampled_from(TM_POLICIES))
    return Setup(machine, n, reserved, options, tm)


def _hint(draw: st.DrawFn, nodes: list[int]) -> dict[str, Any]:
    kind = draw(st.integers(0, 9))
    numa: list[int] | None
    if kind == 0:
        numa = None
    elif kind == 1:
        numa = []
    else:
        numa = sorted(draw(st.sets(st.sampled_from(nodes), min_size=1)))
    return {"numa": numa, "preferred": draw(st.booleans())}


@st.composite
def merge_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A topology manager Merge question: policy, NUMA nodes with distances, options, providers."""
    count = draw(st.integers(1, 8))
    nodes = sorted(draw(st.sets(st.integers(0, 15), min_size=count, max_size=count)))
    distances: dict[str, dict[str, int]] = {str(a): {} for a in nodes}
    for i, a in enumerate(nodes):
        distances[str(a)][str(a)] = 10
        for b in nodes[i + 1 :]:
            d = draw(st.sampled_from([11, 12, 16, 20, 21, 22, 28, 32, 40]))
            distances[str(a)][str(b)] = distances[str(b)][str(a)] = d
    options: dict[str, str] = {}
    if draw(st.booleans()):
        options["prefer-closest-numa-nodes"] = draw(st.sampled_from(["true", "false"]))
    if draw(st.integers(0, 9)) == 0:
        options["max-allowable-numa-nodes"] = draw(st.sampled_from(["8", "16", "4"]))
    providers: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        shape = draw(st.integers(0, 9))
        if shape == 0:
            providers.append(None)
            continue
        resources: dict[str, Any] = {}
        for r in range(draw(st.integers(0 if shape == 1 else 1, 2))):
            sub = draw(st.integers(0, 9))
            if sub == 0:
                resources[f"res{r}"] = None
            elif sub == 1:
                resources[f"res{r}"] = []
            else:
                resources[f"res{r}"] = [_hint(draw, nodes) for _ in range(draw(st.integers(1, 4)))]
        providers.append(resources)
    return {
        "op": "merge",
        "policy": draw(st.sampled_from(TM_POLICIES)),
        "nodes": nodes,
        "distances": distances,
        "options": options,
        "providers": providers,
    }
