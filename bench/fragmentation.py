"""``topolet bench fragmentation``: does fragmentation-aware choice keep sockets whole?

The machine is the seed's 48-CPU node: 2 sockets x 12 cores x 2 threads, one NUMA node
per socket, Linux-style numbering (the first thread of every core 0..23, siblings
24..47). A seeded random churn trace of container arrivals (whole-CPU requests drawn
from :data:`SIZES`) and departures is generated once per seed, independent of any
policy, and replayed identically through two static policies: kubelet's choice and the
``fragmentation-aware`` choice (:mod:`cpumanager.fragmentation`).

After every step past the warm-up, each replay asks whether a whole-socket request (24
CPUs, all on one socket) could be satisfied now: true when some socket has all its CPUs
assignable. It also records the fragmentation score of the assignable CPUs, the
allocations that failed (too few CPUs free; identical for both choices unless they
differ in whole-core options), and the allocations that were split over NUMA nodes
although one NUMA node could have held them.

The arrival probability falls as the demand rises (it is 1/2 at ``load`` x capacity), so
the demand wanders around that level and sometimes overshoots the machine.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Literal

from rich.table import Table

from cpumanager.cpu_topology import CPUTopology, units_holding
from cpumanager.errors import InsufficientCPUsError
from cpumanager.fragmentation import measure
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from topology.cpuset import CPUSet
from topology.model import Core, NumaNode, Package, Topology

__all__ = [
    "CHOICES",
    "SIZES",
    "ChoiceSummary",
    "Event",
    "FragmentationReport",
    "ReplayResult",
    "as_dicts",
    "dual_socket_48",
    "make_trace",
    "render_table",
    "replay",
    "run",
]

SIZES = (1, 2, 4, 6, 8)
Choice = Literal["kubelet", "fragmentation-aware"]
CHOICES: tuple[Choice, ...] = ("kubelet", "fragmentation-aware")


def dual_socket_48(sockets: int = 2, cores_per_socket: int = 12, threads: int = 2) -> Topology:
    """Sockets x cores x SMT threads, one NUMA node per socket, Linux-style numbering."""
    ncores = sockets * cores_per_socket
    packages, nodes, cores = [], [], []
    for s in range(sockets):
        pkg = CPUSet()
        for c in range(cores_per_socket):
            core = s * cores_per_socket + c
            cpus = CPUSet(core + t * ncores for t in range(threads))
            cores.append(Core(id=core, core_id=c, package=s, cpus=cpus))
            pkg |= cpus
        packages.append(Package(id=s, cpus=pkg, os_index=s))
        nodes.append(NumaNode(id=s, cpus=pkg))
    return Topology.build(packages=packages, numa_nodes=nodes, cores=cores)


@dataclass(frozen=True, slots=True)
class Event:
    """One step of a trace: ``alloc`` of *size* CPUs by *container*, or its ``release``."""

    kind: Literal["alloc", "release"]
    container: str
    size: int


def make_trace(
    seed: int, steps: int, *, capacity: int = 48, load: float = 0.5, sizes: tuple[int, ...] = SIZES
) -> list[Event]:
    """A churn trace of *steps* events, the same for every policy that replays it."""
    if not 0 < load <= 1:
        raise ValueError(f"load must be in (0, 1], got {load}")
    rng = random.Random(seed)
    live: dict[str, int] = {}
    demand, serial, events = 0, 0, []
    for _ in range(steps):
        p_arrive = max(0.05, min(0.95, 1 - demand / (2 * load * capacity)))
        if not live or rng.random() < p_arrive:
            size = rng.choice(sizes)
            name = f"c{serial}"
            serial += 1
            live[name] = size
            demand += size
            events.append(Event("alloc", name, size))
        else:
            name = rng.choice(sorted(live))
            demand -= live.pop(name)
            events.append(Event("release", name, 0))
    return events


@dataclass(frozen=True)
class ReplayResult:
    """One trace replayed with one choice."""

    seed: int
    choice: str
    steps: int
    samples: int
    whole_socket_points: int
    failed_allocations: int
    split_allocations: int
    mean_score: float

    @property
    def whole_socket_fraction(self) -> float:
        return self.whole_socket_points / self.samples if self.samples else 0.0


def _policy(topo: Topology, choice: Choice, num_reserved_cpus: int) -> StaticPolicy:
    opts = StaticPolicyOptions(fragmentation_aware=choice == "fragmentation-aware")
    return StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=num_reserved_cpus, options=opts)


def replay(
    topo: Topology,
    trace: list[Event],
    choice: Choice,
    *,
    seed: int = 0,
    warmup: int = 0,
    num_reserved_cpus: int = 0,
) -> ReplayResult:
    """Replay *trace* through a fresh static policy using *choice*; sample after each
    step past *warmup*."""
    policy = _policy(topo, choice, num_reserved_cpus)
    view = policy.view
    node_size = min(len(cpus) for cpus in view.numa_cpus.values())
    state = MemoryState()
    policy.start(state)
    samples = whole = failed = split = 0
    score_sum = 0.0
    for step, event in enumerate(trace):
        if event.kind == "release":
            policy.release(state, event.container, "app")
        else:
            try:
                cpus = policy.allocate(state, event.container, "app", event.size)
            except InsufficientCPUsError:
                failed += 1
            else:
                split += event.size <= node_size and len(units_holding(view.numa_cpus, cpus)) > 1
        if step < warmup:
            continue
        frag = measure(view, policy.available_cpus(state))
        samples += 1
        whole += bool(frag.free_sockets)
        score_sum += frag.score
    return ReplayResult(
        seed, choice, len(trace), samples, whole, failed, split, score_sum / samples if samples else 0.0
    )


@dataclass(frozen=True)
class ChoiceSummary:
    """One choice over every seed."""

    choice: str
    seeds: int
    samples: int
    whole_socket_fraction: float
    failed_allocations: int
    split_allocations: int
    mean_score: float


@dataclass(frozen=True)
class FragmentationReport:
    steps: int
    warmup: int
    load: float
    num_reserved_cpus: int
    runs: list[ReplayResult]
    summary: list[ChoiceSummary]


def _summarise(choice: str, runs: list[ReplayResult]) -> ChoiceSummary:
    samples = sum(r.samples for r in runs)
    return ChoiceSummary(
        choice=choice,
        seeds=len(runs),
        samples=samples,
        whole_socket_fraction=sum(r.whole_socket_points for r in runs) / samples if samples else 0.0,
        failed_allocations=sum(r.failed_allocations for r in runs),
        split_allocations=sum(r.split_allocations for r in runs),
        mean_score=sum(r.mean_score * r.samples for r in runs) / samples if samples else 0.0,
    )


def run(
    *,
    seeds: int = 5,
    steps: int = 2000,
    warmup: int | None = None,
    load: float = 0.5,
    num_reserved_cpus: int = 0,
    first_seed: int = 0,
) -> FragmentationReport:
    """Replay *seeds* traces of *steps* events with both choices (warm-up: a tenth)."""
    if seeds < 1 or steps < 1:
        raise ValueError(f"seeds and steps must be positive, got seeds={seeds}, steps={steps}")
    warm = steps // 10 if warmup is None else warmup
    topo = dual_socket_48()
    capacity = len(topo.online_cpus) - num_reserved_cpus
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        trace = make_trace(seed, steps, capacity=capacity, load=load)
        for choice in CHOICES:
            runs.append(
                replay(topo, trace, choice, seed=seed, warmup=warm, num_reserved_cpus=num_reserved_cpus)
            )
    summary = [_summarise(c, [r for r in runs if r.choice == c]) for c in CHOICES]
    return FragmentationReport(steps, warm, load, num_reserved_cpus, runs, summary)


def as_dicts(report: FragmentationReport) -> dict[str, object]:
    """The report as JSON-ready data (per-run fraction included)."""
    return {
        "machine": "2 sockets x 12 cores x 2 threads, 1 NUMA node per socket (48 CPUs)",
        "steps": report.steps,
        "warmup": report.warmup,
        "load": report.load,
        "num_reserved_cpus": report.num_reserved_cpus,
        "summary": [asdict(s) for s in report.summary],
        "runs": [asdict(r) | {"whole_socket_fraction": r.whole_socket_fraction} for r in report.runs],
    }


def render_table(report: FragmentationReport) -> Table:
    """The per-choice summary as a rich table."""
    seeds = report.summary[0].seeds if report.summary else 0
    table = Table(
        title=f"whole-socket (24 CPU) request satisfiable under churn: 48-CPU node, "
        f"{seeds} seeds x {report.steps} steps, load {report.load:.2f}"
    )
    table.add_column("choice", no_wrap=True)
    for col in ("samples", "whole socket free", "failed allocs", "split allocs", "mean score"):
        table.add_column(col, justify="right")
    for s in report.summary:
        table.add_row(
            s.choice,
            str(s.samples),
            f"{s.whole_socket_fraction:.1%}",
            str(s.failed_allocations),
            str(s.split_allocations),
            f"{s.mean_score:.3f}",
        )
    return table
