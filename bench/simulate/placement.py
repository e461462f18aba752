"""The two schedulers compared: topolet's extender core and a topology-blind baseline.

Both start as kube-scheduler does: NodeResourcesFit keeps the nodes whose allocatable
still holds the pod's requests (:meth:`KubeletNode.misfit`), and the default
NodeResourcesLeastAllocated plugin scores them (cpu and memory, weight 1 each, 0..100).
The best total wins; ties go to a seeded random pick, as kube-scheduler samples among
equal scores.

* :class:`TopologyBlind`: only that (what the default scheduler does).
* :class:`TopologyAware`: the second kube-scheduler of ``deploy/scheduler``, calling the
  topolet extender in process: :class:`~scheduler.service.ExtenderCore` over an
  :class:`~scheduler.cache.NRTCache` holding every node's NodeResourceTopology as its
  agent would publish it (re-published after every admission and departure). The
  extender filters (kubelet rules) and prioritizes (0..10); kube-scheduler adds the
  extender score x weight (10, as in the manifest) x 10 to the plugin score.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol

from bench.simulate.kubelet import KubeletNode
from bench.simulate.trace import SimPod
from scheduler.cache import NRTCache
from scheduler.score import DEFAULT_STRATEGY, MAX_EXTENDER_SCORE
from scheduler.service import ExtenderCore
from scheduler.strategies import MAX_NODE_SCORE
from scheduler.wire import FilterRequest
from topology.quantity import CPU

__all__ = ["EXTENDER_WEIGHT", "Placement", "TopologyAware", "TopologyBlind", "least_allocated"]

#: The extender's ``weight`` in deploy/scheduler/scheduler-config.yaml.
EXTENDER_WEIGHT = 10
_SCORED = (CPU, "memory")


def least_allocated(node: KubeletNode, pod: SimPod) -> int:
    """kube-scheduler's LeastAllocated score (0..100) of *node* with *pod* on it."""
    request = pod.request.effective_request()
    total = 0
    for name in _SCORED:
        alloc = node.allocatable.get(name, 0)
        used = node.requested.get(name, 0) + request.get(name, 0)
        total += 0 if alloc == 0 or used > alloc else (alloc - used) * MAX_NODE_SCORE // alloc
    return total // len(_SCORED)


class Placement(Protocol):
    """Picks a node for a pod; told when a node's state changed."""

    name: str

    def attach(self, nodes: Sequence[KubeletNode]) -> None: ...

    def choose(self, pod: SimPod) -> tuple[str | None, str]: ...

    def changed(self, node: KubeletNode) -> None: ...


def _best(scores: Mapping[str, int], rng: random.Random) -> str:
    top = max(scores.values())
    return rng.choice(sorted(n for n, s in scores.items() if s == top))


class TopologyBlind:
    """kube-scheduler's default: fits on node totals, least-allocated."""

    name = "topology-blind"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes: dict[str, KubeletNode] = {}

    def attach(self, nodes: Sequence[KubeletNode]) -> None:
        self.nodes = {n.name: n for n in nodes}

    def feasible(self, pod: SimPod) -> list[KubeletNode]:
        return [n for n in self.nodes.values() if n.misfit(pod.request) is None]

    def choose(self, pod: SimPod) -> tuple[str | None, str]:
        """The chosen node name (None: unschedulable) and why none fits."""
        fits = self.feasible(pod)
        if not fits:
            return None, "Insufficient resources on every node"
        return _best({n.name: least_allocated(n, pod) for n in fits}, self.rng), ""

    def changed(self, node: KubeletNode) -> None:
        """Nothing to do: the default scheduler reads node totals directly."""


class TopologyAware(TopologyBlind):
    """kube-scheduler plus the topolet extender (filter + prioritize) over live NRT data."""

    name = "topolet"

    def __init__(self, seed: int, *, strategy: str = DEFAULT_STRATEGY) -> None:
        super().__init__(seed)
        self.cache = NRTCache(clock=lambda: 0.0)
        self.core = ExtenderCore(self.cache, fit_mode="kubelet", strategy=strategy)

    def attach(self, nodes: Sequence[KubeletNode]) -> None:
        super().attach(nodes)
        for node in nodes:
            self.cache.upsert(node.nrt())

    def choose(self, pod: SimPod) -> tuple[str | None, str]:
        fits = self.feasible(pod)
        if not fits:
            return None, "Insufficient resources on every node"
        outcome = self.core.run_filter(pod.request, tuple(n.name for n in fits))
        if not outcome.passed:
            return None, "no node can align the pod on one NUMA node"
        request = FilterRequest(pod.manifest, tuple(outcome.passed), None)
        scale = EXTENDER_WEIGHT * MAX_NODE_SCORE // MAX_EXTENDER_SCORE
        scores = {
            h["Host"]: h["Score"] * scale + least_allocated(self.nodes[h["Host"]], pod)
            for h in self.core.prioritize(request)
        }
        return _best(scores, self.rng), ""

    def changed(self, node: KubeletNode) -> None:
        """The node's agent publishes a fresh NRT object."""
        self.cache.upsert(node.nrt())
