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

Every entry has an owner record (:mod:`cpumanager.owners`), saved with the checkpoint.
Several processes share one state directory (the node agent, ``topolet run``): every
public method that changes state runs in :meth:`CPUManager.transaction`, which takes the
checkpoint lock (waiting for the other holder), reloads the files when another process
replaced them, changes, saves and lets go. No caller wraps the manager to add locking;
:data:`TRANSACTIONAL` lists the methods (a test checks that no other public method
changes state). :meth:`CPUManager.reconcile` releases only owners of the kinds its caller
is the source of.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

from cpumanager.cgroupfs import ContainerCgroup, CpusetWriter
from cpumanager.checkpoint import CheckpointStore
from cpumanager.checkpoint_format import CPUManagerCheckpoint, LegacyCheckpoint
from cpumanager.errors import CPUManagerError, InsufficientCPUsError, StateValidationError
from cpumanager.hugepages import HugePageAccounts, aligned_affinity, format_bytes, nodes_for
from cpumanager.isolated import (
    POOL_CONTAINER,
    POOL_POD_UID,
    release_isolated,
    seed_isolated_pool,
    take_isolated,
)
from cpumanager.metrics import CPUManagerMetrics
from cpumanager.owners import ISOLATED_POOL, POD, RUN, Owner, infer_owner
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import Assignments, MemoryState
from kube.pod import ContainerKind
from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = ["TRANSACTIONAL", "CPUManager", "ContainerInfo", "PinResult"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
#: The public methods that change state: each runs in one transaction.
TRANSACTIONAL: set[str] = set()


def _transactional(
    method: Callable[Concatenate[CPUManager, _P], _R],
) -> Callable[Concatenate[CPUManager, _P], _R]:
    TRANSACTIONAL.add(method.__name__)

    @functools.wraps(method)
    def wrapper(self: CPUManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.transaction():
            return method(self, *args, **kwargs)

    return wrapper


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
    kind: str = POD
    """Owner kind of its exclusive CPUs: ``pod`` (Kubernetes) or ``run`` (``topolet run``)."""
    container_kind: ContainerKind = ContainerKind.APP
    """App, init or sidecar container (the pod model's :class:`~kube.pod.ContainerKind`):
    the static policy lets later containers of the pod reuse an init container's CPUs."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.pod_uid, self.container_name)

    @property
    def identity(self) -> str:
        if self.kind == RUN:
            return self.pod_name or self.container_name
        pod = f"{self.namespace}/{self.pod_name}" if self.pod_name else f"pod {self.pod_uid}"
        return f"{pod}/{self.container_name}"

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
        topology_manager_policy: str = "none",
    ) -> None:
        self.topology = topology
        self.policy = policy
        self.topology_manager_policy = topology_manager_policy
        self.store = store
        self.writer = writer
        self.metrics = metrics or CPUManagerMetrics()
        self.state = MemoryState()
        self.owners: dict[tuple[str, str], Owner] = {}
        self.hugepages = HugePageAccounts.from_topology(topology)
        self._lock = threading.RLock()
        self._depth = 0
        self._seen: object = None
        self._containers: dict[tuple[str, str], _Tracked] = {}
        self._on_change = on_change
        self._listeners: list[Callable[[], None]] = []

    # ----------------------------------------------------------- transaction
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Lock → reload if another process changed the files → (change) → unlock.

        Re-entrant within a thread; threads of one process queue on an in-process lock,
        processes on the checkpoint's ``flock``. Changes are saved as they are made."""
        with self._lock:
            outer = self._depth == 0 and self.store is not None
            if outer:
                assert self.store is not None
                self.store.open(wait=True)
            try:
                if outer and self._seen is not None:
                    self._reload_if_changed()
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
            finally:
                if outer:
                    assert self.store is not None
                    self.store.close()

    def _reload_if_changed(self) -> None:
        assert self.store is not None
        if self.store.fingerprint() == self._seen:
            return
        self._load()
        self.policy.validate_state(self.state)
        self._update_gauges()
        log.debug("state reloaded: another process changed %s", self.store.path)
        self._changed()

    def _load(self) -> None:
        assert self.store is not None
        stored = self.store.load_state()
        cp = stored.checkpoint
        if isinstance(cp, LegacyCheckpoint):
            raise StateValidationError(
                "checkpoint uses the legacy container-ID layout, which cannot be mapped "
                "to pod UIDs and container names without the runtime",
                checkpoint=str(self.store.path),
            )
        self.state = MemoryState(cp.default_cpu_set, cp.entries) if cp is not None else MemoryState()
        self.owners = dict(stored.owners)
        missing = self._infer_missing_owners()
        if missing:
            log.warning(
                "%d checkpoint entries of %s had no owner record (%s); owners recovered from their keys",
                missing,
                self.store.path,
                stored.recovered or "written by kubelet or an older topolet",
            )
            self._save()
        self._seen = self.store.fingerprint()

    def _infer_missing_owners(self) -> int:
        keys = {(pod, name) for pod, cs in self.state.assignments().items() for name in cs}
        for key in [k for k in self.owners if k not in keys]:
            del self.owners[key]
        missing = 0
        for key in sorted(keys - set(self.owners)):
            self.owners[key] = infer_owner(*key, pool_uid=POOL_POD_UID)
            missing += 1
        return missing

    def _own(self, key: tuple[str, str], kind: str, identity: str, why: str) -> None:
        source = {POD: "kubernetes", RUN: "topolet-run"}.get(
            kind, "device-plugin" if kind == "device-plugin" else "topolet"
        )
        self.owners[key] = Owner(kind, identity, source, time.time(), why)

    # -------------------------------------------------------------- lifecycle
    @_transactional
    def start(self) -> None:
        """Restore the checkpoint (if any), validate it against this machine, save."""
        with self._lock:
            if self.store is not None:
                self._load()
            self.policy.start(self.state)
            moved = seed_isolated_pool(self.state, self.topology.isolated_cpus, self.policy.reserved_cpus)
            if moved:
                log.info("isolated cpus %s kept out of the shared pool (isolcpus)", moved)
            self._sync_pool_owner()
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
        """Nothing is held between transactions; kept for callers that pair start/close."""
        with self._lock:
            if self.store is not None:
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

    def snapshot(self) -> tuple[CPUSet, Assignments, dict[tuple[str, str], Owner]]:
        """Assignable CPUs, assignments and owners, read in one transaction (fresh from
        the files when another process changed them)."""
        with self.transaction():
            return self.assignable_cpus(), self.state.assignments(), dict(self.owners)

    def assignable_and_assignments(self) -> tuple[CPUSet, Assignments]:
        """:meth:`assignable_cpus` and a copy of the assignments, read in one locked step."""
        assignable, assignments, _ = self.snapshot()
        return assignable, assignments

    def status(self) -> dict[str, object]:
        """The pools and every CPU's owner (:func:`cpumanager.ownership.describe_state`)."""
        from cpumanager.ownership import describe_state

        with self.transaction():
            return describe_state(self.topology, self.policy, self.state, self.owners)

    # ------------------------------------------------------------- allocation
    @_transactional
    def allocate(
        self,
        pod_uid: str,
        container_name: str,
        num_cpus: int,
        *,
        numa_affinity: Iterable[int] | None = None,
        kind: str = POD,
        identity: str = "",
    ) -> CPUSet:
        """Record an exclusive assignment chosen by the policy. Idempotent for the same
        container. When the shared pool shrank, the shared containers are re-pinned and
        the listeners told."""
        before = self.shared_pool()
        cpus = self._allocate(
            pod_uid,
            container_name,
            num_cpus,
            numa_affinity=numa_affinity,
            owner=(kind, identity or f"pod {pod_uid}/{container_name}"),
        )
        if self.shared_pool() != before:
            self._repin_shared()
            self._changed()
        return cpus

    def _allocate(
        self,
        pod_uid: str,
        container_name: str,
        num_cpus: int,
        *,
        numa_affinity: Iterable[int] | None = None,
        owner: tuple[str, str],
        why: str = "",
        container_kind: ContainerKind = ContainerKind.APP,
    ) -> CPUSet:
        self.metrics.pinning_requests.inc()
        held = self.state.get_cpuset(pod_uid, container_name)
        try:
            cpus = self.policy.allocate(
                self.state,
                pod_uid,
                container_name,
                num_cpus,
                numa_affinity=numa_affinity,
                kind=container_kind,
            )
        except CPUManagerError:
            self.metrics.pinning_errors.inc()
            raise
        if held is None and cpus:
            self._own((pod_uid, container_name), *owner, why or self._why(num_cpus, numa_affinity))
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

    def _why(self, num_cpus: int, numa_affinity: Iterable[int] | None) -> str:
        opts = self.policy.options.enabled()
        parts = [
            f"static policy: {num_cpus} exclusive CPUs, topology-aware (sockets, then cores, then threads)"
        ]
        if opts:
            parts.append("options " + ", ".join(opts))
        if numa_affinity is not None:
            nodes = ",".join(map(str, sorted(set(numa_affinity))))
            parts.append(f"NUMA node(s) {nodes} first (device/hugepage alignment)")
        return "; ".join(parts)

    @_transactional
    def assign_exact(
        self,
        pod_uid: str,
        container_name: str,
        cpus: CPUSet,
        *,
        kind: str = "device-plugin",
        identity: str = "",
    ) -> CPUSet:
        """Record *cpus*, chosen elsewhere (kubelet through the CPU device plugin), as the
        container's exclusive CPUs, in one transaction.

        Every CPU must be assignable now (in the shared pool, not reserved), else
        :class:`InsufficientCPUsError`; CPUs already exclusive to anyone (this container
        included) are refused, so no CPU is ever handed out twice. A container that already
        holds exclusive CPUs raises :class:`StateValidationError`.
        """
        self.assign_many([(pod_uid, container_name, cpus)], kind=kind, identity=identity)
        return cpus

    @_transactional
    def assign_many(
        self, claims: Iterable[tuple[str, str, CPUSet]], *, kind: str = "device-plugin", identity: str = ""
    ) -> None:
        """:meth:`assign_exact` for several containers, all or nothing: the claims must be
        disjoint and every CPU assignable, else nothing is recorded."""
        claims = list(claims)
        free = self.assignable_cpus()
        taken = CPUSet()
        for pod_uid, container_name, cpus in claims:
            if not cpus or not cpus <= free or not cpus.isdisjoint(taken):
                self.metrics.pinning_errors.inc()
                raise InsufficientCPUsError(len(cpus), free - taken)
            existing = self.state.get_cpuset(pod_uid, container_name)
            if existing is not None:
                raise StateValidationError(
                    f'pod {pod_uid} container {container_name} already holds cpus "{existing}"'
                )
            taken |= cpus
        for pod_uid, container_name, cpus in claims:
            self.metrics.pinning_requests.inc()
            self.state.set_default_cpuset(self.state.get_default_cpuset() - cpus)
            self.state.set_cpuset(pod_uid, container_name, cpus)
            self._own(
                (pod_uid, container_name),
                kind,
                identity or f"claim {cpus}",
                "chosen by kubelet's device manager through GetPreferredAllocation (topology-aware take)",
            )
            log.info("exclusive cpus %s -> pod %s container %s", cpus, pod_uid, container_name)
        self._save()
        self._update_gauges()
        self._repin_shared()
        self._changed()

    @_transactional
    def reassign(
        self,
        pod_uid: str,
        container_name: str,
        new_pod_uid: str,
        new_container_name: str,
        *,
        identity: str = "",
    ) -> CPUSet:
        """Move an assignment to another owner key in one transaction (the CPUs stay
        exclusive, the owner kind and since stay). Returns the CPUs moved; raises
        :class:`StateValidationError` when the old owner has none or the new one already has some."""
        cpus = self.state.get_cpuset(pod_uid, container_name)
        if cpus is None:
            raise StateValidationError(f"pod {pod_uid} container {container_name} holds no exclusive cpus")
        if self.state.get_cpuset(new_pod_uid, new_container_name) is not None:
            raise StateValidationError(
                f"pod {new_pod_uid} container {new_container_name} already holds exclusive cpus"
            )
        self.state.delete(pod_uid, container_name)
        self.state.set_cpuset(new_pod_uid, new_container_name, cpus)
        old = self.owners.pop((pod_uid, container_name), None)
        if old is not None:
            self.owners[(new_pod_uid, new_container_name)] = Owner(
                old.kind, identity or old.identity, old.source, old.since, old.why
            )
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

    @_transactional
    def add_container(self, info: ContainerInfo) -> PinResult:
        """Admit a running container: allocate if it asks for exclusive CPUs, pin it, and
        re-pin the shared containers when the pool shrank."""
        before = self.shared_pool()
        held = self.state.get_cpuset(*info.key)
        if info.exclusive_cpus > 0 and info.isolated:
            self._allocate_isolated(info)
        elif info.exclusive_cpus > 0:
            affinity = self._affinity(info, held)
            if held is None:
                self._check_alignment(info)
            self._allocate(
                info.pod_uid,
                info.container_name,
                info.exclusive_cpus,
                numa_affinity=affinity,
                owner=(info.kind, info.identity),
                container_kind=info.container_kind,
                why=self._why(info.exclusive_cpus, affinity)
                + (
                    f"; devices on NUMA node(s) {','.join(map(str, sorted(info.numa_affinity)))}"
                    if info.numa_affinity
                    else ""
                ),
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

    @_transactional
    def remove_container(self, pod_uid: str, container_name: str, *, kind: str | None = None) -> CPUSet:
        """Forget a container; its exclusive CPUs go back to the shared pool. With *kind*,
        CPUs owned by another kind stay where they are (a pod gone whose device-plugin
        claim only the device plugin releases)."""
        self._containers.pop((pod_uid, container_name), None)
        pages = self.hugepages.release((pod_uid, container_name))
        owner = self.owners.get((pod_uid, container_name))
        if kind is not None and owner is not None and owner.kind != kind:
            if pages:
                self._update_gauges()
                self._changed()
            return CPUSet()
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

    @_transactional
    def release_owned(self, kind: str, keep: Callable[[tuple[str, str], Owner], bool]) -> CPUSet:
        """Release every entry owned by *kind* for which ``keep(key, owner)`` is false (the
        device plugin's claims that expired or whose pod is gone). Returns the CPUs freed."""
        freed = CPUSet()
        for key, owner in sorted(self.owners.items()):
            if owner.kind == kind and not keep(key, owner):
                freed |= self.remove_container(*key)
        return freed

    @_transactional
    def reconcile(
        self, active: Iterable[ContainerInfo], *, kinds: Collection[str] = (POD,)
    ) -> dict[str, int]:
        """Bring state and cgroups in line with the containers that run now.

        New containers are admitted, known ones re-pinned when their cgroup drifted, and
        assignments of containers that are gone are released (stale-state sweep), but only
        those whose owner kind is one of *kinds*: the caller's own (the Kubernetes pod
        source ``pod``, ``topolet run`` ``run``). Others' owners are never touched.
        """
        counts = {"admitted": 0, "repinned": 0, "released": 0, "failed": 0}
        kinds = frozenset(kinds)
        seen = set()
        # Exclusive containers first: after a restart they take back the hugepages on
        # the NUMA nodes of their checkpointed CPUs before anyone else is placed.
        for info in sorted(active, key=lambda i: i.exclusive_cpus == 0):
            seen.add(info.key)
            if info.key not in self._containers:
                try:
                    self.add_container(info)
                except CPUManagerError as e:
                    log.warning("cannot admit pod %s container %s: %s", info.pod_uid, info.container_name, e)
                    counts["failed"] += 1
                    continue
                counts["admitted"] += 1
                continue
            tracked = self._containers[info.key]
            tracked.info = info
            if self._drifted(tracked):
                self._pin(tracked)
                counts["repinned"] += 1

        def mine(key: tuple[str, str]) -> bool:
            owner = self.owners.get(key)
            if owner is not None:
                return owner.kind in kinds
            tracked = self._containers.get(key)
            return (tracked.info.kind if tracked is not None else POD) in kinds

        for key in [k for k in self._containers if k not in seen and mine(k)]:
            self._containers.pop(key)
        for key in [k for k in self.hugepages.held if k not in seen and mine(k)]:
            self.hugepages.release(key)
            counts["released"] += 1
            self._update_gauges()
        for pod, names in self.state.assignments().items():
            for name in names:
                if (pod, name) not in seen and mine((pod, name)):
                    self.remove_container(pod, name)
                    counts["released"] += 1
        return counts

    # -------------------------------------------------------------- internals
    def _check_alignment(self, info: ContainerInfo) -> None:
        """``single-numa-node`` and ``restricted`` refuse a container whose exclusive CPUs
        do not fit on its devices' NUMA nodes; ``best-effort`` and ``none`` only prefer them."""
        if info.numa_affinity is None or self.topology_manager_policy not in (
            "single-numa-node",
            "restricted",
        ):
            return
        there = self.assignable_cpus() & self.topology.cpus_in_numa_nodes(*sorted(info.numa_affinity))
        if len(there) < info.exclusive_cpus:
            self.metrics.pinning_errors.inc()
            raise InsufficientCPUsError(info.exclusive_cpus, there, info.numa_affinity)

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
        self.owners.pop((pod_uid, container_name), None)
        if held & self.topology.isolated_cpus:
            freed = release_isolated(self.state, pod_uid, container_name, self.topology.isolated_cpus)
            self._sync_pool_owner()
            return freed
        return self.policy.release(self.state, pod_uid, container_name)

    def _sync_pool_owner(self) -> None:
        """The free isolated pool's entry is owned by topolet itself."""
        key = (POOL_POD_UID, POOL_CONTAINER)
        if self.state.get_cpuset(*key) is None:
            self.owners.pop(key, None)
        elif key not in self.owners or self.owners[key].kind != ISOLATED_POOL:
            self._own(
                key,
                ISOLATED_POOL,
                "isolated pool",
                "isolcpus= CPUs no container holds; kept out of the shared pool",
            )

    def _allocate_isolated(self, info: ContainerInfo) -> CPUSet:
        self.metrics.pinning_requests.inc()
        held = self.state.get_cpuset(*info.key)
        try:
            cpus = take_isolated(
                self.state, self.policy, info.pod_uid, info.container_name, info.exclusive_cpus
            )
        except CPUManagerError:
            self.metrics.pinning_errors.inc()
            raise
        if held is None:
            self._own(
                info.key,
                info.kind,
                info.identity,
                "isolated pool (topolet.io/isolated-cpus), topology-aware take",
            )
        self._sync_pool_owner()
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
        assert self._depth > 0, "state saved outside a transaction"
        self.store.save(
            CPUManagerCheckpoint(
                policy_name=self.policy.name,
                default_cpu_set=self.state.get_default_cpuset(),
                entries=self.state.assignments(),
            ),
            self.owners,
        )
        self._seen = self.store.fingerprint()

    def _update_gauges(self) -> None:
        self.metrics.set_pools(shared=len(self.shared_pool()), exclusive=len(self.exclusive_cpus()))
        self.metrics.set_hugepages(self.hugepages.allocated())

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
        for listener in self._listeners:
            listener()
