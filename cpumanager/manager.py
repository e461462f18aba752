"""The CPU manager: admit, allocate, pin, release and reconcile (orchestrator).

One lock, one state, one checkpoint: every exclusive CPU on the node is owned here,
whichever path asked for it (a pod source seeing a Guaranteed container, or the CPU
device plugin). The policy decides; this module keeps the state durable and the
kernel's cpusets in line with it:

* a container with exclusive CPUs is pinned to them (and to their NUMA nodes' memory);
* every other container runs on the shared pool, and is re-pinned whenever the pool
  shrinks or grows;
* :meth:`CPUManager.reconcile` repairs drift and frees the CPUs of containers that are
  gone (the stale-state sweep);
* hugepage requests are counted against each NUMA node's pools
  (:mod:`cpumanager.hugepages`); a Guaranteed container's hugepages sit on the NUMA nodes
  of its CPUs, and its ``cpuset.mems`` is those nodes. The hugepage accounts are not
  checkpointed: they are derived again from the running containers at the first
  reconcile after a restart (exclusive containers first, so each gets back the nodes of
  its checkpointed CPUs).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cpumanager.cgroupfs import ContainerCgroup, CpusetWriter
from cpumanager.checkpoint import CheckpointStore
from cpumanager.checkpoint_format import CPUManagerCheckpoint, LegacyCheckpoint
from cpumanager.errors import CPUManagerError, InsufficientCPUsError, StateValidationError
from cpumanager.hugepages import HugePageAccounts, aligned_affinity, format_bytes, nodes_for
from cpumanager.isolated import POOL_POD_UID, release_isolated, seed_isolated_pool, take_isolated
from cpumanager.metrics import CPUManagerMetrics
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import Assignments, MemoryState
from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = ["CPUManager", "ContainerInfo", "PinResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A running container as a pod source reports it.

    ``exclusive_cpus`` is the whole-CPU count for a Guaranteed container with an integer
    CPU request, else 0 (it runs on the shared pool). ``numa_affinity`` are the NUMA nodes
    of devices the container holds: its CPUs are taken there first (device affinity).
    """

    pod_uid: str
    container_name: str
    cgroup: ContainerCgroup | None
    exclusive_cpus: int = 0
    pod_name: str = ""
    namespace: str = ""
    numa_affinity: frozenset[int] | None = None
    isolated: bool = False
    """Serve ``exclusive_cpus`` from the isolated pool (pod annotation
    ``topolet.io/isolated-cpus: "true"``)."""
    hugepages: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Hugepages requested, in bytes per resource (``{"hugepages-2Mi": 1073741824}``)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.pod_uid, self.container_name)

    @property
    def guaranteed(self) -> bool:
        """Guaranteed QoS: it holds exclusive CPUs or sits in the Guaranteed cgroup."""
        return self.exclusive_cpus > 0 or (self.cgroup is not None and self.cgroup.qos == "guaranteed")


@dataclass(frozen=True, slots=True)
class PinResult:
    cpus: CPUSet
    mems: CPUSet | None
    exclusive: bool
    written: bool


@dataclass
class _Tracked:
    info: ContainerInfo
    pinned: CPUSet | None = None
    extra: dict[str, str] = field(default_factory=dict)


class CPUManager:
    """Static-policy CPU manager over a checkpoint and a cgroup writer.

    >>> mgr = CPUManager(topo, policy, store=CheckpointStore(path, policy_name="static"),
    ...                  writer=CgroupV1Cpuset())                     # doctest: +SKIP
    >>> mgr.start()                                                    # doctest: +SKIP
    >>> mgr.add_container(ContainerInfo("uid", "app", ref, exclusive_cpus=2))  # doctest: +SKIP
    """

    def __init__(
        self,
        topology: Topology,
        policy: StaticPolicy,
        *,
        store: CheckpointStore | None = None,
        writer: CpusetWriter | None = None,
        metrics: CPUManagerMetrics | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.topology = topology
        self.policy = policy
        self.store = store
        self.writer = writer
        self.metrics = metrics or CPUManagerMetrics()
        self.state = MemoryState()
        self.hugepages = HugePageAccounts.from_topology(topology)
        self._lock = threading.RLock()
        self._containers: dict[tuple[str, str], _Tracked] = {}
        self._on_change = on_change
        self._listeners: list[Callable[[], None]] = []

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Restore the checkpoint (if any), validate it against this machine, save."""
        with self._lock:
            if self.store is not None:
                self.store.open()
                cp = self.store.load()
                if isinstance(cp, LegacyCheckpoint):
                    raise StateValidationError(
                        "checkpoint uses the legacy container-ID layout, which cannot be mapped "
                        "to pod UIDs and container names without the runtime",
                        checkpoint=str(self.store.path),
                    )
                if cp is not None:
                    self.state = MemoryState(cp.default_cpu_set, cp.entries)
            self.policy.start(self.state)
            moved = seed_isolated_pool(self.state, self.topology.isolated_cpus, self.policy.reserved_cpus)
            if moved:
                log.info("isolated cpus %s kept out of the shared pool (isolcpus)", moved)
            self._save()
            self._update_gauges()
            log.info(
                "cpu manager started: policy=%s shared=%s reserved=%s assignments=%d",
                self.policy.name,
                self.state.get_default_cpuset(),
                self.policy.reserved_cpus,
                sum(len(c) for c in self.state.assignments().values()),
            )

    def close(self) -> None:
        with self._lock:
            if self.store is not None:
                self._save()
                self.store.close()

    # ------------------------------------------------------------------ views
    def shared_pool(self) -> CPUSet:
        return self.state.get_default_cpuset()

    def exclusive_cpus(self) -> CPUSet:
        """CPUs held by containers (the free isolated pool is not counted)."""
        return CPUSet().union(
            *(c for pod, cs in self.state.assignments().items() if pod != POOL_POD_UID for c in cs.values())
        )

    def assignable_cpus(self) -> CPUSet:
        """CPUs an exclusive request could be given now."""
        return self.policy.available_cpus(self.state)

    def assignable_and_assignments(self) -> tuple[CPUSet, Assignments]:
        """:meth:`assignable_cpus` and a copy of the assignments, read in one locked step."""
        with self._lock:
            return self.assignable_cpus(), self.state.assignments()

    def status(self) -> dict[str, object]:
        with self._lock:
            return {
                "policy": self.policy.name,
                "shared": str(self.shared_pool()),
                "reserved": str(self.policy.reserved_cpus),
                "assignable": str(self.assignable_cpus()),
                "isolated": str(self.topology.isolated_cpus),
                "assignments": {
                    pod: {name: str(cpus) for name, cpus in cs.items()}
                    for pod, cs in self.state.assignments().items()
                },
            }

    # ------------------------------------------------------------- allocation
    def allocate(
        self, pod_uid: str, container_name: str, num_cpus: int, *, numa_affinity: Iterable[int] | None = None
    ) -> CPUSet:
        """Record an exclusive assignment (used by the CPU device plugin's Allocate). Idempotent
        for the same container. When the shared pool shrank, the shared containers are
        re-pinned and the listeners told."""
        with self._lock:
            before = self.shared_pool()
            cpus = self._allocate(pod_uid, container_name, num_cpus, numa_affinity=numa_affinity)
            if self.shared_pool() != before:
                self._repin_shared()
                self._changed()
            return cpus

    def _allocate(
        self, pod_uid: str, container_name: str, num_cpus: int, *, numa_affinity: Iterable[int] | None = None
    ) -> CPUSet:
        with self._lock:
            self.metrics.pinning_requests.inc()
            try:
                cpus = self.policy.allocate(
                    self.state, pod_uid, container_name, num_cpus, numa_affinity=numa_affinity
                )
            except CPUManagerError:
                self.metrics.pinning_errors.inc()
                raise
            self._save()
            self._update_gauges()
            log.info(
                "exclusive cpus %s -> pod %s container %s (shared now %s)",
                cpus,
                pod_uid,
                container_name,
                self.shared_pool(),
            )
            return cpus

    def assign_exact(self, pod_uid: str, container_name: str, cpus: CPUSet) -> CPUSet:
        """Record *cpus*, chosen elsewhere (kubelet through the CPU device plugin), as the
        container's exclusive CPUs, in one locked step.

        Every CPU must be assignable now (in the shared pool, not reserved), else
        :class:`InsufficientCPUsError`; CPUs already exclusive to anyone (this container
        included) are refused, so no CPU is ever handed out twice. A container that already
        holds exclusive CPUs raises :class:`StateValidationError`.
        """
        with self._lock:
            free = self.assignable_cpus()
            if not cpus or not cpus <= free:
                self.metrics.pinning_errors.inc()
                raise InsufficientCPUsError(len(cpus), free)
            existing = self.state.get_cpuset(pod_uid, container_name)
            if existing is not None:
                raise StateValidationError(
                    f'pod {pod_uid} container {container_name} already holds cpus "{existing}"'
                )
            self.metrics.pinning_requests.inc()
            self.state.set_default_cpuset(self.state.get_default_cpuset() - cpus)
            self.state.set_cpuset(pod_uid, container_name, cpus)
            self._save()
            self._update_gauges()
            log.info(
                "exclusive cpus %s -> pod %s container %s (shared now %s)",
                cpus,
                pod_uid,
                container_name,
                self.shared_pool(),
            )
            self._repin_shared()
            self._changed()
            return cpus

    def reassign(
        self, pod_uid: str, container_name: str, new_pod_uid: str, new_container_name: str
    ) -> CPUSet:
        """Move an assignment to another owner in one locked step (the CPUs stay exclusive).
        Returns the CPUs moved; raises :class:`StateValidationError` when the old owner has
        none or the new one already has some."""
        with self._lock:
            cpus = self.state.get_cpuset(pod_uid, container_name)
            if cpus is None:
                raise StateValidationError(
                    f"pod {pod_uid} container {container_name} holds no exclusive cpus"
                )
            if self.state.get_cpuset(new_pod_uid, new_container_name) is not None:
                raise StateValidationError(
                    f"pod {new_pod_uid} container {new_container_name} already holds exclusive cpus"
                )
            self.state.delete(pod_uid, container_name)
            self.state.set_cpuset(new_pod_uid, new_container_name, cpus)
            self._save()
            log.info(
                "exclusive cpus %s moved from pod %s container %s to pod %s container %s",
                cpus,
                pod_uid,
                container_name,
                new_pod_uid,
                new_container_name,
            )
            self._changed()
            return cpus

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (under the manager's lock; keep it short) after every change
        of the shared pool or the assignments."""
        with self._lock:
            self._listeners.append(callback)

    def add_container(self, info: ContainerInfo) -> PinResult:
        """Admit a running container: allocate if it asks for exclusive CPUs, pin it, and
        re-pin the shared containers when the pool shrank."""
        with self._lock:
            before = self.shared_pool()
            held = self.state.get_cpuset(*info.key)
            if info.exclusive_cpus > 0 and info.isolated:
                self._allocate_isolated(info)
            elif info.exclusive_cpus > 0:
                self._allocate(
                    info.pod_uid,
                    info.container_name,
                    info.exclusive_cpus,
                    numa_affinity=self._affinity(info, held),
                )
            try:
                self._admit_hugepages(info)
            except CPUManagerError:
                self.metrics.pinning_errors.inc()
                if held is None and self._release_cpus(info.pod_uid, info.container_name):
                    self._save()
                    self._update_gauges()
                raise
            self._containers[info.key] = _Tracked(info)
            result = self._pin(self._containers[info.key])
            if self.shared_pool() != before:
                self._repin_shared(exclude=info.key)
            self._changed()
            return result

    def remove_container(self, pod_uid: str, container_name: str) -> CPUSet:
        """Forget a container; its exclusive CPUs go back to the shared pool."""
        with self._lock:
            self._containers.pop((pod_uid, container_name), None)
            pages = self.hugepages.release((pod_uid, container_name))
            freed = self._release_cpus(pod_uid, container_name)
            if pages and not freed:
                self._update_gauges()
                self._changed()
            if freed:
                self._save()
                self._update_gauges()
                log.info("released cpus %s of pod %s container %s", freed, pod_uid, container_name)
                self._repin_shared()
                self._changed()
            return freed

    def reconcile(self, active: Iterable[ContainerInfo]) -> dict[str, int]:
        """Bring state and cgroups in line with the containers that run now.

        New containers are admitted, known ones re-pinned when their cgroup drifted,
        and assignments of containers that are gone are released (stale-state sweep).
        """
        counts = {"admitted": 0, "repinned": 0, "released": 0, "failed": 0}
        with self._lock:
            seen = set()
            # Exclusive containers first: after a restart they take back the hugepages on
            # the NUMA nodes of their checkpointed CPUs before anyone else is placed.
            for info in sorted(active, key=lambda i: i.exclusive_cpus == 0):
                seen.add(info.key)
                if info.key not in self._containers:
                    try:
                        self.add_container(info)
                    except CPUManagerError as e:
                        log.warning(
                            "cannot admit pod %s container %s: %s", info.pod_uid, info.container_name, e
                        )
                        counts["failed"] += 1
                        continue
                    counts["admitted"] += 1
                    continue
                tracked = self._containers[info.key]
                tracked.info = info
                if self._drifted(tracked):
                    self._pin(tracked)
                    counts["repinned"] += 1
            for key in [k for k in self._containers if k not in seen]:
                self._containers.pop(key)
            for key in [k for k in self.hugepages.held if k not in seen]:
                self.hugepages.release(key)
                counts["released"] += 1
                self._update_gauges()
            for pod, names in self.state.assignments().items():
                if pod == POOL_POD_UID:
                    continue
                for name in names:
                    if (pod, name) not in seen:
                        self.remove_container(pod, name)
                        counts["released"] += 1
        return counts

    # -------------------------------------------------------------- internals
    def _affinity(self, info: ContainerInfo, held: CPUSet | None) -> frozenset[int] | None:
        """Where the container's exclusive CPUs should come from: its devices' NUMA nodes,
        merged with where its hugepages fit when it asks for some."""
        if not info.hugepages or held is not None:
            return info.numa_affinity
        try:
            self.hugepages.best_nodes(info.hugepages)  # fits somewhere at all?
        except CPUManagerError:
            self.metrics.pinning_errors.inc()
            raise
        return aligned_affinity(
            self.topology,
            self.hugepages,
            info.hugepages,
            available_cpus=self.assignable_cpus(),
            num_cpus=info.exclusive_cpus,
            device_nodes=info.numa_affinity,
        )

    def _admit_hugepages(self, info: ContainerInfo) -> None:
        if not info.hugepages or info.key in self.hugepages.held:
            return
        nodes, why = nodes_for(
            self.topology,
            self.hugepages,
            info.hugepages,
            exclusive=self.state.get_cpuset(*info.key),
            guaranteed=info.guaranteed,
        )
        placement = self.hugepages.place(info.key, info.hugepages, nodes, why=why)
        self._update_gauges()
        log.info(
            "hugepages %s -> pod %s container %s",
            {n: {r: format_bytes(b) for r, b in res.items()} for n, res in placement.items()},
            info.pod_uid,
            info.container_name,
        )

    def _release_cpus(self, pod_uid: str, container_name: str) -> CPUSet:
        held = self.state.get_cpuset(pod_uid, container_name) or CPUSet()
        if held & self.topology.isolated_cpus:
            return release_isolated(self.state, pod_uid, container_name, self.topology.isolated_cpus)
        return self.policy.release(self.state, pod_uid, container_name)

    def _allocate_isolated(self, info: ContainerInfo) -> CPUSet:
        self.metrics.pinning_requests.inc()
        try:
            cpus = take_isolated(
                self.state, self.policy, info.pod_uid, info.container_name, info.exclusive_cpus
            )
        except CPUManagerError:
            self.metrics.pinning_errors.inc()
            raise
        self._save()
        self._update_gauges()
        log.info("isolated cpus %s -> pod %s container %s", cpus, info.pod_uid, info.container_name)
        return cpus

    def _target(self, info: ContainerInfo) -> tuple[CPUSet, CPUSet | None, bool]:
        excl = self.state.get_cpuset(info.pod_uid, info.container_name)
        if excl:
            return excl, self.topology.numa_nodes_of(excl), True
        pages_on = self.hugepages.nodes_of(info.key)
        return self.shared_pool(), CPUSet(pages_on) if pages_on and info.guaranteed else None, False

    def _pin(self, tracked: _Tracked) -> PinResult:
        cpus, mems, exclusive = self._target(tracked.info)
        written = False
        if self.writer is not None and tracked.info.cgroup is not None:
            try:
                written = self.writer.write(tracked.info.cgroup, cpus, mems)
            except CPUManagerError:
                self.metrics.pinning_errors.inc()
                raise
            if written:
                tracked.pinned = cpus
                log.info(
                    "pinned pod %s container %s to cpus %s mems %s",
                    tracked.info.pod_uid,
                    tracked.info.container_name,
                    cpus,
                    mems,
                )
        return PinResult(cpus=cpus, mems=mems, exclusive=exclusive, written=written)

    def _drifted(self, tracked: _Tracked) -> bool:
        if self.writer is None or tracked.info.cgroup is None:
            return False
        want, _, _ = self._target(tracked.info)
        have = self.writer.read(tracked.info.cgroup)
        return have is not None and have != want

    def _repin_shared(self, exclude: tuple[str, str] | None = None) -> None:
        for key, tracked in self._containers.items():
            if key != exclude and self.state.get_cpuset(*key) is None:
                self._pin(tracked)

    def _save(self) -> None:
        if self.store is None:
            return
        self.store.save(
            CPUManagerCheckpoint(
                policy_name=self.policy.name,
                default_cpu_set=self.state.get_default_cpuset(),
                entries=self.state.assignments(),
            )
        )

    def _update_gauges(self) -> None:
        self.metrics.set_pools(shared=len(self.shared_pool()), exclusive=len(self.exclusive_cpus()))
        self.metrics.set_hugepages(self.hugepages.allocated())

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
        for listener in self._listeners:
            listener()
