"""One simulated node's kubelet: admission by the Topology Manager, then allocation.

The node runs the configuration topolet is built for: ``cpuManagerPolicy: static``
(the real :class:`~cpumanager.policy_static.StaticPolicy` over a
:class:`~cpumanager.state.MemoryState`, one core reserved), ``memoryManagerPolicy:
Static`` (memory and hugepages per NUMA node), the device manager for GPUs, and
``topologyManagerPolicy: single-numa-node`` in ``container`` scope through the shared
merge of :mod:`topology.hints`. Admission of a pod, as kubelet does it:

1. the node-level fit (requests against allocatable, ``OutOf<resource>``);
2. per container, in order: the three hint providers answer from the node's current
   state (CPU: :func:`~topology.hints.cpu_topology_hints` for Guaranteed containers
   with whole CPUs; devices: NUMA sets holding enough free GPUs, preferred when as
   small as the fewest nodes that hold that many GPUs at all; memory:
   :func:`~topology.hints.memory_topology_hints` for Guaranteed pods), the policy
   merges, and a rejection is a ``TopologyAffinityError``;
3. after each container's hint is stored, its CPUs, GPUs, memory and hugepages are
   taken on the hinted NUMA node(s), so the next container sees them gone.

A rejected pod gives back whatever its earlier containers took. Pods are read through
the one pod model (:mod:`kube.pod`), as the node agent reads them: QoS, exclusive CPUs
and container kinds come from there. Init containers get CPUs (which the app
containers may reuse) and are released once the pod is admitted; their GPUs and memory
are reused by the app containers, so they take none. Sidecars (restartable init
containers) keep what they take, as app containers do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from cpumanager.cpu_topology import CPUTopology
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from kube.pod import MEMORY, Container, ContainerKind, Pod, is_hugepages
from topology.cpuset import CPUSet
from topology.hint_types import ProviderHints
from topology.hints import (
    TOPOLOGY_AFFINITY_ERROR,
    NUMAInfo,
    TopologyHint,
    cpu_topology_hints,
    memory_topology_hints,
    new_policy,
    new_scope,
)
from topology.model import Topology
from topology.nrt import NodeResourceTopology, build_nrt
from topology.quantity import CPU

__all__ = ["GPU", "MAX_PODS", "AdmitResult", "KubeletNode", "pinned_request"]

GPU = "nvidia.com/gpu"
#: kubelet's default ``maxPods``.
MAX_PODS = 110
#: Numa id -> resource -> amount.
Amounts = dict[int, dict[str, int]]


@dataclass(frozen=True, slots=True)
class AdmitResult:
    """kubelet's verdict: ``reason`` is ``TopologyAffinityError`` or ``OutOf<resource>`` on
    rejection; ``numa_nodes``/``sockets`` are where the pod's pinned resources landed."""

    admitted: bool
    reason: str | None = None
    message: str = ""
    numa_nodes: frozenset[int] = frozenset()
    sockets: frozenset[int] = frozenset()


@dataclass(slots=True)
class _Held:
    """What one admitted pod holds on the node."""

    request: Mapping[str, int]
    containers: list[str] = field(default_factory=list)
    gpus: list[tuple[int, int]] = field(default_factory=list)  # (numa, count)
    memory: list[tuple[int, str, int]] = field(default_factory=list)  # (numa, resource, amount)
    numa: set[int] = field(default_factory=set)
    counted: bool = False


def _pinned_cpus(pod: Pod, c: Container) -> int:
    return pod.exclusive_cpus(c)


def _memory_request(pod: Pod, c: Container) -> dict[str, int]:
    if not pod.guaranteed:
        return {}
    return {n: a for n, a in c.requests.items() if a > 0 and (n == MEMORY or is_hugepages(n))}


def pinned_request(pod: Pod, c: Container) -> dict[str, int]:
    """What kubelet pins to NUMA nodes for container *c*: whole CPUs (millicores),
    memory and hugepages of a Guaranteed pod, and GPUs of any pod."""
    out = _memory_request(pod, c)
    if _pinned_cpus(pod, c):
        out[CPU] = c.requests[CPU]
    if c.requests.get(GPU, 0):
        out[GPU] = c.requests[GPU]
    return out


class KubeletNode:
    """A node: its topology, kubelet's managers' state, and what each pod holds.

    >>> node = KubeletNode("w1", topo)                   # doctest: +SKIP
    >>> node.admit(pod, "uid-1").admitted                # doctest: +SKIP
    True
    """

    def __init__(self, name: str, topo: Topology, *, node_type: str = "", reserved_cpus: int = 2) -> None:
        self.name = name
        self.node_type = node_type or name
        self.topo = topo
        self.cpu_policy = StaticPolicy(
            CPUTopology.from_topology(topo),
            num_reserved_cpus=reserved_cpus,
            topology_manager_policy="single-numa-node",
        )
        self.state = MemoryState()
        self.cpu_policy.start(self.state)
        self.tm_policy = new_policy("single-numa-node", NUMAInfo.from_topology(topo))
        self.scope = new_scope("container")
        self.capacity: Amounts = {n: {} for n in topo.numa_node_ids()}
        for n, node in topo.numa_nodes.items():
            self.capacity[n][MEMORY] = node.memory_bytes or 0
            for pool in node.hugepages.values():
                if pool.total > 0:
                    self.capacity[n][pool.resource_name] = pool.total * pool.size_kb * 1024
        for gpu in topo.gpus():
            numa = gpu.kernel_numa_node if gpu.kernel_numa_node is not None else gpu.numa_node
            if numa in self.capacity:
                self.capacity[numa][GPU] = self.capacity[numa].get(GPU, 0) + 1
        self.free: Amounts = {n: dict(row) for n, row in self.capacity.items()}
        self.groups: dict[int, frozenset[int]] = {}
        self.allocatable = self._node_allocatable()
        self.requested: dict[str, int] = {}
        self.pods: dict[str, _Held] = {}

    def _node_allocatable(self) -> Mapping[str, int]:
        out: dict[str, int] = {CPU: len(self.cpu_policy.allocatable_cpus()) * 1000}
        for row in self.capacity.values():
            for name, amount in row.items():
                out[name] = out.get(name, 0) + amount
        return MappingProxyType(out)

    # ------------------------------------------------------------- node level
    def misfit(self, pod: Pod) -> str | None:
        """The first resource the pod's requests overflow at node level (kube-scheduler's
        NodeResourcesFit and kubelet's own admit check), ``pods`` when full; None if it fits."""
        if len(self.pods) >= MAX_PODS:
            return "pods"
        for name, amount in pod.effective_request().items():
            if amount > 0 and self.requested.get(name, 0) + amount > self.allocatable.get(name, 0):
                return name
        return None

    # -------------------------------------------------------------- admission
    def admit(self, pod: Pod, uid: str) -> AdmitResult:
        """Admit *pod* as kubelet would, taking its resources; nothing changes on rejection."""
        if uid in self.pods:
            raise ValueError(f"pod uid {uid!r} is already on node {self.name}")
        short = self.misfit(pod)
        if short is not None:
            return AdmitResult(False, f"OutOf{short}", f"node {self.name}: not enough {short}")
        held = _Held(dict(pod.effective_request()))
        self.pods[uid] = held
        source = _Hints(self, pod, uid)
        result = self.scope.admit(
            self.tm_policy, [c.name for c in pod.all_containers()], source, source.allocate
        )
        if not result.admit:
            self.release(uid)
            return AdmitResult(
                False, TOPOLOGY_AFFINITY_ERROR, f"node {self.name}: container {result.rejected_container!r}"
            )
        for init in pod.init_containers:
            if init.kind is ContainerKind.INIT:
                self.cpu_policy.release(self.state, uid, init.name)
        for name, amount in held.request.items():
            self.requested[name] = self.requested.get(name, 0) + amount
        held.counted = True
        sockets = self.topo.sockets_in_numa_nodes(*held.numa)
        return AdmitResult(True, numa_nodes=frozenset(held.numa), sockets=frozenset(sockets))

    def release(self, uid: str) -> None:
        """The pod left: give back its CPUs, GPUs, memory and node-level requests."""
        held = self.pods.pop(uid)
        for name in held.containers:
            self.cpu_policy.release(self.state, uid, name)
        for numa, count in held.gpus:
            self.free[numa][GPU] += count
        for numa, name, amount in held.memory:
            self.free[numa][name] += amount
        for numa in {n for n, _, _ in held.memory}:
            if all(self.free[numa][r] == cap for r, cap in self.capacity[numa].items() if r != GPU):
                self.groups.pop(numa, None)
        if held.counted:
            for name, amount in held.request.items():
                self.requested[name] -= amount

    # ---------------------------------------------------------------- takes
    def take_gpus(self, held: _Held, count: int, numa: Iterable[int]) -> None:
        for n in self._order(numa):
            got = min(self.free[n].get(GPU, 0), count)
            if got:
                self.free[n][GPU] -= got
                held.gpus.append((n, got))
                held.numa.add(n)
                count -= got
        if count:
            raise RuntimeError(f"node {self.name}: {count} GPUs short after an admitted hint")

    def take_memory(self, held: _Held, request: Mapping[str, int], numa: Iterable[int]) -> None:
        """Take one container's memory and hugepages, recording the NUMA set it used as the
        memory manager's group of each of those nodes."""
        order = self._order(numa)
        used: set[int] = set()
        for name, amount in request.items():
            for n in order:
                got = min(self.free[n].get(name, 0), amount)
                if got:
                    self.free[n][name] -= got
                    held.memory.append((n, name, got))
                    used.add(n)
                    amount -= got
            if amount:
                raise RuntimeError(f"node {self.name}: {name} short by {amount} after an admitted hint")
        held.numa |= used
        for n in used:
            self.groups[n] = frozenset(used)

    def _order(self, numa: Iterable[int]) -> list[int]:
        """Hinted NUMA nodes first (ascending), then the rest."""
        first = sorted(numa)
        return first + [n for n in sorted(self.free) if n not in first]

    # ----------------------------------------------------------------- views
    def available_cpus(self) -> CPUSet:
        """CPUs exclusive allocations can still take (SHARED minus RESERVED)."""
        return self.cpu_policy.available_cpus(self.state)

    def available(self) -> Amounts:
        """Per NUMA node: free exclusive CPUs (millicores), memory, hugepages and GPUs."""
        free_cpus = self.available_cpus()
        out: Amounts = {}
        for n, row in self.free.items():
            out[n] = {CPU: len(free_cpus & self.topo.cpus_in_numa_nodes(n)) * 1000, **row}
        return out

    def nrt(self) -> NodeResourceTopology:
        """The NodeResourceTopology this node's agent would publish now."""
        extra = {n: {GPU: row[GPU]} for n, row in self.capacity.items() if GPU in row}
        return build_nrt(
            self.topo,
            node_name=self.name,
            policy="single-numa-node",
            scope="container",
            reserved_cpus=self.cpu_policy.reserved_cpus,
            extra_resources=extra,
            available_by_numa=self.available(),
        )


class _Hints:
    """The three hint providers over one node's state, and the per-container allocation."""

    def __init__(self, node: KubeletNode, pod: Pod, uid: str) -> None:
        self.node = node
        self.pod = pod
        self.uid = uid
        self.by_name = {c.name: c for c in pod.all_containers()}
        #: init containers that finish before the app starts (sidecars keep running)
        self.init = {c.name for c in pod.init_containers if c.kind is ContainerKind.INIT}

    def container_hints(self, container: str) -> Sequence[ProviderHints]:
        c = self.by_name[container]
        return self._providers(
            _pinned_cpus(self.pod, c), c.requests.get(GPU, 0), _memory_request(self.pod, c)
        )

    def pod_hints(self) -> Sequence[ProviderHints]:
        total = self.pod.effective_request()
        cpus = self.pod.pod_exclusive_cpus()
        memory = {
            n: a
            for n, a in total.items()
            if self.pod.guaranteed and a > 0 and (n == MEMORY or is_hugepages(n))
        }
        return self._providers(cpus, total.get(GPU, 0), memory)

    def _providers(self, cpus: int, gpus: int, memory: Mapping[str, int]) -> list[ProviderHints]:
        node = self.node
        cpu: ProviderHints = None
        if cpus:
            reusable = node.cpu_policy.reusable_cpus(self.uid)
            cpu = {CPU: cpu_topology_hints(node.topo, node.available_cpus(), reusable, cpus)}
        device: ProviderHints = None
        if gpus:
            free = {n: {GPU: row.get(GPU, 0)} for n, row in node.free.items()}
            total = {n: {GPU: row.get(GPU, 0)} for n, row in node.capacity.items()}
            device = memory_topology_hints({GPU: gpus}, free, allocatable=total)
        mem: ProviderHints = None
        if memory:
            mem = memory_topology_hints(memory, node.free, allocatable=node.capacity, groups=node.groups)
        return [cpu, device, mem]

    def allocate(self, container: str, hint: TopologyHint) -> None:
        """Take the container's resources on the NUMA nodes of its stored hint."""
        node, c = self.node, self.by_name[container]
        held = node.pods[self.uid]
        numa = hint.numa_affinity if hint.numa_affinity is not None else ()
        cpus = _pinned_cpus(self.pod, c)
        if cpus:
            got = node.cpu_policy.allocate(
                node.state, self.uid, container, cpus, numa_affinity=numa or None, kind=c.kind
            )
            held.containers.append(container)
            held.numa.update(node.topo.numa_nodes_of(got))
        if container in self.init:
            return
        if c.requests.get(GPU, 0):
            node.take_gpus(held, c.requests[GPU], numa)
        memory = _memory_request(self.pod, c)
        if memory:
            node.take_memory(held, memory, numa)
