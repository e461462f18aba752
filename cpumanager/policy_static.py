"""The static CPU manager policy: exclusive CPUs for Guaranteed containers (pure, no I/O).

Mirrors kubelet's ``staticPolicy``: reserved CPU selection at construction, state
validation at start, topology-aware allocation (aligned to a NUMA hint first) and
release. The policy reads and writes a :class:`~cpumanager.state.State` that it is given
on every call; it keeps only the per-pod bookkeeping of CPUs that init containers have
finished with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cpumanager.allocation import Strategy, take_by_topology
from cpumanager.cpu_topology import CPUTopology, cpus_of_units
from cpumanager.distributed import take_by_topology_numa_distributed
from cpumanager.errors import PolicyConfigError, SMTAlignmentError, StateValidationError
from cpumanager.fragmentation import take_best_fit
from cpumanager.options import StaticPolicyOptions
from cpumanager.state import State
from kube.pod import ContainerKind
from topology.cpuset import CPUSet

# ContainerKind is the pod model's (kube.pod); re-exported for callers of the policy.
__all__ = ["ContainerKind", "StaticPolicy"]


class StaticPolicy:
    """Exclusive CPUs for Guaranteed containers with integer CPU requests.

    How many CPUs a container gets is the pod model's answer
    (:func:`kube.pod.exclusive_cpus`, kubelet's ``guaranteedCPUs``); the policy is given
    that number and the container's :class:`~kube.pod.ContainerKind`.

    Pools (all :class:`CPUSet`):

    - SHARED: the state's default cpuset. Best-effort, burstable and non-integer
      Guaranteed containers run here. It starts as every CPU (every CPU but the reserved
      ones with ``strict-cpu-reservation``) and shrinks as exclusive CPUs are handed out.
    - RESERVED: CPUs kept for the system and kubelet, never given exclusively. Either the
      explicit ``reserved_cpus`` list, or ``num_reserved_cpus`` CPUs picked with this
      policy's own allocator from all CPUs (low-numbered whole cores). Without the strict
      option they stay in SHARED, so the shared pool is never empty.
    - ASSIGNABLE: SHARED minus RESERVED, plus CPUs the pod's finished init containers
      hold. Exclusive allocations are taken from here.
    - EXCLUSIVE ALLOCATIONS: the state's assignments, one CPUSet per container.

    Containers in SHARED are moved off newly exclusive CPUs by the manager's reconcile
    loop, so an exclusive container may share its CPUs for up to one reconcile period.

    The policy works on the allocator's view of the machine, never on the model itself:

    >>> from cpumanager.state import MemoryState
    >>> view = CPUTopology.from_topology(topo)                  # doctest: +SKIP
    >>> policy = StaticPolicy(view, num_reserved_cpus=1)        # doctest: +SKIP
    >>> state = MemoryState(); policy.start(state)              # doctest: +SKIP
    >>> policy.allocate(state, "pod-uid", "app", 4)             # doctest: +SKIP
    """

    name = "static"

    def __init__(
        self,
        view: CPUTopology,
        *,
        num_reserved_cpus: int,
        reserved_cpus: CPUSet | None = None,
        options: StaticPolicyOptions | None = None,
        topology_manager_policy: str = "none",
    ) -> None:
        self.view = view
        self.options = options or StaticPolicyOptions()
        self.options.validate_for(view, topology_manager_policy)
        self.cpu_group_size = view.declared_cpus_per_core()
        reserved = reserved_cpus or self.take_kubelet(view.cpuset, num_reserved_cpus)
        if len(reserved) != num_reserved_cpus:
            raise PolicyConfigError(
                f"[cpumanager] unable to reserve the required amount of CPUs "
                f"(size of {reserved} did not equal {num_reserved_cpus})",
                "make the reserved CPU list and the kube-reserved + system-reserved CPU count agree",
            )
        self.reserved_cpus = reserved
        self.reserved_physical_cpus = cpus_of_units(
            view.core_cpus, {view.cpu_core[c] for c in reserved if c in view.cpu_core}
        )
        self._reusable: dict[str, CPUSet] = {}

    # ---------------------------------------------------------------- pools
    def _all_cpus(self) -> CPUSet:
        cpus = self.view.cpuset
        return cpus - self.reserved_cpus if self.options.strict_cpu_reservation else cpus

    def available_cpus(self, state: State) -> CPUSet:
        """SHARED minus RESERVED: what exclusive allocations draw from."""
        return state.get_default_cpuset() - self.reserved_cpus

    def available_physical_cpus(self, state: State) -> CPUSet:
        """SHARED minus every core that holds a reserved CPU."""
        return state.get_default_cpuset() - self.reserved_physical_cpus

    def allocatable_cpus(self) -> CPUSet:
        """Every CPU but the reserved ones (what the node reports as allocatable)."""
        return self.view.cpuset - self.reserved_cpus

    # ----------------------------------------------------------- lifecycle
    def start(self, state: State) -> None:
        """Validate (or initialise) *state*; raises :class:`StateValidationError`."""
        self.validate_state(state)

    def validate_state(self, state: State) -> None:
        """Check the state against this machine and policy, in kubelet's order.

        An empty shared pool with no assignments is a fresh state and is initialised.
        """
        default = state.get_default_cpuset()
        assignments = state.assignments()
        if not default:
            if any(assignments.values()):
                raise StateValidationError("default cpuset cannot be empty")
            state.set_default_cpuset(self._all_cpus())
            return
        self._check_reserved(default)
        for pod, containers in assignments.items():
            for container, cpus in containers.items():
                if not cpus.isdisjoint(default):
                    raise StateValidationError(
                        f'pod: {pod}, container: {container} cpuset: "{cpus}" '
                        f'overlaps with default cpuset "{default}"'
                    )
        known = default.union(*(cpus for cs in assignments.values() for cpus in cs.values()))
        if known != self._all_cpus():
            raise StateValidationError(
                f'current set of available CPUs "{self._all_cpus()}" '
                f'doesn\'t match with CPUs in state "{known}"'
            )

    def _check_reserved(self, default: CPUSet) -> None:
        reserved = self.reserved_cpus
        if self.options.strict_cpu_reservation:
            if not reserved.isdisjoint(default):
                raise StateValidationError(
                    f'some of strictly reserved cpus: "{reserved & default}" are present in '
                    f'defaultCpuSet: "{default}"'
                )
        elif not reserved <= default:
            raise StateValidationError(
                f'not all reserved cpus: "{reserved}" are present in defaultCpuSet: "{default}"'
            )

    # ----------------------------------------------------------- allocation
    def take(self, available: CPUSet, n: int) -> CPUSet:
        """Pick *n* CPUs of *available*: kubelet's choice (:meth:`take_kubelet`), inside
        the best-fit NUMA node or socket with ``fragmentation-aware``."""
        if not self.options.fragmentation_aware:
            return self.take_kubelet(available, n)
        return take_best_fit(
            self.view,
            available,
            n,
            self.take_kubelet,
            whole_cores_only=self.options.full_physical_cpus_only,
        )

    def take_kubelet(self, available: CPUSet, n: int) -> CPUSet:
        """Pick *n* CPUs of *available* with kubelet's taker and the strategy the options select."""
        opts = self.options
        strategy: Strategy = "spread" if opts.distribute_cpus_across_cores else "packed"
        if opts.distribute_cpus_across_numa:
            group = self.cpu_group_size if opts.full_physical_cpus_only else 1
            return take_by_topology_numa_distributed(
                self.view, available, n, group_size=max(group, 1), strategy=strategy
            )
        return take_by_topology(
            self.view,
            available,
            n,
            strategy=strategy,
            align_by_l3=opts.prefer_align_by_l3,
        )

    def allocate(
        self,
        state: State,
        pod_uid: str,
        container_name: str,
        num_cpus: int,
        *,
        numa_affinity: Iterable[int] | None = None,
        kind: ContainerKind = ContainerKind.APP,
    ) -> CPUSet:
        """Give the container *num_cpus* exclusive CPUs and record them in *state*.

        Returns the container's CPUs (empty when *num_cpus* is 0: it stays in SHARED). An
        existing assignment is returned unchanged. Raises :class:`SMTAlignmentError` or
        :class:`~cpumanager.errors.InsufficientCPUsError`; *state* is unchanged on error.
        """
        if num_cpus == 0:
            return CPUSet()
        self._check_smt(state, num_cpus)
        existing = state.get_cpuset(pod_uid, container_name)
        if existing is not None:
            self._update_reusable(pod_uid, kind, existing)
            return existing
        cpus = self.allocate_cpus(
            state, num_cpus, numa_affinity=numa_affinity, reusable=self._reusable.get(pod_uid, CPUSet())
        )
        state.set_cpuset(pod_uid, container_name, cpus)
        self._update_reusable(pod_uid, kind, cpus)
        return cpus

    def _check_smt(self, state: State, num_cpus: int) -> None:
        if not self.options.full_physical_cpus_only:
            return
        group = self.cpu_group_size
        if group and num_cpus % group != 0:
            raise SMTAlignmentError(num_cpus, group)
        physical = len(self.available_physical_cpus(state))
        if num_cpus > physical:
            raise SMTAlignmentError(num_cpus, group, physical)

    def allocate_cpus(
        self,
        state: State,
        num_cpus: int,
        *,
        numa_affinity: Iterable[int] | None = None,
        reusable: CPUSet | None = None,
    ) -> CPUSet:
        """Take *num_cpus* from ASSIGNABLE, those on the hinted NUMA nodes first (their
        sockets with ``align-by-socket``), and remove them from SHARED."""
        allocatable = self.available_cpus(state) | (reusable or CPUSet())
        result = CPUSet()
        if numa_affinity is not None:
            aligned = allocatable & self._aligned_pool(numa_affinity)
            result = self.take(aligned, min(num_cpus, len(aligned)))
        result |= self.take(allocatable - result, num_cpus - len(result))
        state.set_default_cpuset(state.get_default_cpuset() - result)
        return result

    def _aligned_pool(self, numa_affinity: Iterable[int]) -> CPUSet:
        nodes = sorted(set(numa_affinity))
        view = self.view
        if self.options.align_by_socket:
            return cpus_of_units(view.socket_cpus, {s for n in nodes for s in view.numa_sockets.get(n, {})})
        return cpus_of_units(view.numa_cpus, nodes)

    def _update_reusable(self, pod_uid: str, kind: ContainerKind, cpus: CPUSet) -> None:
        """Keep reuse bookkeeping for this pod only: a finished init container's CPUs
        become reusable; an app or sidecar container's CPUs stop being reusable."""
        current = self._reusable.get(pod_uid, CPUSet())
        self._reusable = {pod_uid: current | cpus if kind is ContainerKind.INIT else current - cpus}

    def reusable_cpus(self, pod_uid: str) -> CPUSet:
        """CPUs of the pod's finished init containers that its next containers may reuse."""
        return self._reusable.get(pod_uid, CPUSet())

    # -------------------------------------------------------------- release
    def release(self, state: State, pod_uid: str, container_name: str) -> CPUSet:
        """Forget the container's assignment and return to SHARED those of its CPUs that
        no other container of the pod still holds. Returns the CPUs returned."""
        cpus = state.get_cpuset(pod_uid, container_name)
        if cpus is None:
            return CPUSet()
        siblings = _cpus_of_siblings(state.assignments(), pod_uid, container_name)
        state.delete(pod_uid, container_name)
        freed = cpus - siblings
        state.set_default_cpuset(state.get_default_cpuset() | freed)
        return freed


def _cpus_of_siblings(assignments: Mapping[str, Mapping[str, CPUSet]], pod_uid: str, name: str) -> CPUSet:
    containers = assignments.get(pod_uid, {})
    return CPUSet().union(*(cpus for c, cpus in containers.items() if c != name))
