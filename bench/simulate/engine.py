"""The discrete-event loop: pods arrive, a scheduler picks a node, kubelet admits or rejects.

Events are processed in time order (departures before arrivals at the same instant).
An arriving pod goes to the scheduler; no feasible node makes it *unschedulable*
(it is lost: this is a loss system, so that "admitted" is a meaningful count). A
chosen node's kubelet model then admits the pod (it runs for its ``duration_s``) or
rejects it with a ``TopologyAffinityError``; with ``retries`` > 0 a rejected pod is
submitted again ``retry_delay_s`` later (a controller re-creating it), and every
rejection counts as an error. The run stops when the last arrival (or retry) has
been handled: what is still running then is the end state whose fragmentation is
reported. Every node change is passed to the scheduler (``changed``) so that
topolet's NRT cache sees what the node agent would publish.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.simulate.kubelet import GPU, KubeletNode
from bench.simulate.placement import Placement
from bench.simulate.trace import SimPod
from topology.quantity import CPU

__all__ = ["ADMITTED", "UNSCHEDULABLE", "Fragmentation", "PodOutcome", "RunResult", "simulate"]

ADMITTED = "admitted"
UNSCHEDULABLE = "Unschedulable"
_DEPART, _ARRIVE = 0, 1


@dataclass(frozen=True, slots=True)
class PodOutcome:
    """What became of one pod: its final outcome, node, NUMA nodes and sockets used."""

    uid: str
    shape: str
    outcome: str
    node: str | None = None
    numa_nodes: int = 0
    sockets: int = 0
    attempts: int = 1
    cpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Fragmentation:
    """Free capacity at the end: NUMA zones with every exclusive CPU (and GPU) free, free
    exclusive CPUs, those stranded in partly used zones, and the largest free zone."""

    free_whole_numa_nodes: int
    numa_nodes: int
    free_cpus: int
    free_cpus_in_partly_used_numa: int
    largest_free_numa_cpus: int


@dataclass(slots=True)
class RunResult:
    """One scheduler's run over one trace."""

    scheduler: str
    outcomes: list[PodOutcome] = field(default_factory=list)
    errors: int = 0
    timeline: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    end: Fragmentation | None = None
    wall_s: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def summary(self) -> dict[str, Any]:
        """The headline figures (JSON-ready)."""
        admitted = [o for o in self.outcomes if o.outcome == ADMITTED]
        pinned = [o for o in admitted if o.numa_nodes > 0]
        return {
            "scheduler": self.scheduler,
            "pods": len(self.outcomes),
            "admitted": len(admitted),
            "topology_affinity_errors": self.errors,
            "rejected_pods": sum(1 for o in self.outcomes if o.outcome not in (ADMITTED, UNSCHEDULABLE)),
            "unschedulable": self.count(UNSCHEDULABLE),
            "pinned_pods": len(pinned),
            "single_numa_fraction": _fraction(sum(1 for o in pinned if o.numa_nodes == 1), len(pinned)),
            "single_socket_fraction": _fraction(sum(1 for o in pinned if o.sockets == 1), len(pinned)),
            "admitted_cpu_seconds": round(sum(o.cpu_seconds for o in admitted), 1),
            "end": asdict(self.end) if self.end else None,
            "wall_s": round(self.wall_s, 3),
        }


def _fraction(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 1.0


def fragmentation(nodes: Sequence[KubeletNode]) -> Fragmentation:
    """Free whole NUMA nodes and stranded CPUs over *nodes* now."""
    whole = zones = free = stranded = largest = 0
    for node in nodes:
        free_cpus = node.available_cpus()
        allocatable = node.cpu_policy.allocatable_cpus()
        for n in node.topo.numa_node_ids():
            cpus = node.topo.cpus_in_numa_nodes(n)
            have, cap = len(free_cpus & cpus), len(allocatable & cpus)
            if cap == 0:
                continue
            zones += 1
            free += have
            largest = max(largest, have)
            gpus_free = node.free[n].get(GPU, 0) == node.capacity[n].get(GPU, 0)
            if have == cap and gpus_free:
                whole += 1
            else:
                stranded += have
    return Fragmentation(whole, zones, free, stranded, largest)


def simulate(
    make_nodes: Callable[[], list[KubeletNode]],
    pods: Sequence[SimPod],
    placement: Placement,
    *,
    retries: int = 0,
    retry_delay_s: float = 30.0,
) -> RunResult:
    """Run *pods* through *placement* on a fresh cluster from *make_nodes*."""
    started = time.perf_counter()
    nodes = make_nodes()
    by_name = {n.name: n for n in nodes}
    placement.attach(nodes)
    result = RunResult(placement.name)
    events: list[tuple[float, int, int, int, int]] = []  # (time, kind, seq, pod index, attempt)
    for i, pod in enumerate(pods):
        heapq.heappush(events, (pod.arrival_s, _ARRIVE, i, i, 1))
    seq = len(pods)
    final: dict[int, PodOutcome] = {}
    where: dict[int, str] = {}
    admitted = unschedulable = pending = 0
    pending = len(pods)
    while events and pending:
        now, kind, _, index, attempt = heapq.heappop(events)
        pod = pods[index]
        if kind == _DEPART:
            node = by_name[where.pop(index)]
            node.release(pod.uid)
            placement.changed(node)
            continue
        chosen, _why = placement.choose(pod)
        if chosen is None:
            final[index] = PodOutcome(pod.uid, pod.shape, UNSCHEDULABLE, attempts=attempt)
            unschedulable += 1
            pending -= 1
        else:
            node = by_name[chosen]
            verdict = node.admit(pod.request, pod.uid)
            if verdict.admitted:
                placement.changed(node)
                where[index] = chosen
                seq += 1
                heapq.heappush(events, (now + pod.duration_s, _DEPART, seq, index, attempt))
                cpu = pod.request.effective_request().get(CPU, 0) / 1000
                final[index] = PodOutcome(
                    pod.uid,
                    pod.shape,
                    ADMITTED,
                    chosen,
                    len(verdict.numa_nodes),
                    len(verdict.sockets),
                    attempt,
                    cpu * pod.duration_s,
                )
                admitted += 1
                pending -= 1
            else:
                result.errors += 1
                if attempt <= retries:
                    seq += 1
                    heapq.heappush(events, (now + retry_delay_s, _ARRIVE, seq, index, attempt + 1))
                else:
                    final[index] = PodOutcome(
                        pod.uid, pod.shape, verdict.reason or "rejected", chosen, attempts=attempt
                    )
                    pending -= 1
        result.timeline.append((now, admitted, result.errors, unschedulable, len(where)))
    result.outcomes = [final[i] for i in range(len(pods))]
    result.end = fragmentation(nodes)
    result.wall_s = time.perf_counter() - started
    return result
