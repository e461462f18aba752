"""Errors of the CPU manager: one hierarchy for the whole package.

::

    CPUManagerError
    ├── AllocationError              the allocator cannot hand out what was asked
    │   ├── InsufficientCPUsError
    │   ├── SMTAlignmentError
    │   └── InsufficientHugePagesError
    ├── StateValidationError         the stored state does not fit this machine or policy
    │   ├── CheckpointError          (checkpoint_format) kubelet's checkpoint cannot be restored
    │   │   ├── CheckpointCorruptedError
    │   │   └── CheckpointPolicyMismatchError
    │   └── StateCorruptedError      (checkpoint) a checkpoint or owners file is unusable
    ├── CheckpointLockedError        (checkpoint) another process holds the checkpoint lock
    ├── PolicyConfigError            a policy option or reservation is invalid
    ├── HugePagesRequestError        a hugepages request is malformed
    ├── OwnerRecordError             (owners) an owner record cannot be read
    ├── InvalidIdentifierError       (cgroup_errors) an id that would reach a path is malformed
    └── CgroupError                  (cgroup_errors) a cgroup file could not be written

Each error carries ``detail`` (the fact, worded as kubelet words it, so operators can
search for it) and ``hint`` (what to do about it); ``str()`` joins the two. CPU sets are
always quoted in Linux cpu-list form. ``reason`` is the short, stable string that ends up
as a pod-status reason (kubelet's error ``Type()``).
"""

from __future__ import annotations

from collections.abc import Iterable

from topology.cpuset import CPUSet

__all__ = [
    "AllocationError",
    "CPUManagerError",
    "HugePagesRequestError",
    "InsufficientCPUsError",
    "InsufficientHugePagesError",
    "PolicyConfigError",
    "SMTAlignmentError",
    "StateValidationError",
]


class CPUManagerError(Exception):
    """Base class of every CPU manager error."""

    reason: str = "UnexpectedAdmissionError"

    def __init__(self, detail: str, hint: str = "") -> None:
        self.detail = detail
        self.hint = hint
        super().__init__(f"{detail}; {hint}" if hint else detail)


class AllocationError(CPUManagerError):
    """The allocator could not hand out the CPUs it was asked for."""


class InsufficientCPUsError(AllocationError):
    """Fewer CPUs are available than were requested."""

    def __init__(self, requested: int, available: CPUSet, numa_affinity: Iterable[int] | None = None) -> None:
        self.requested = requested
        self.available = available
        self.numa_affinity = None if numa_affinity is None else sorted(numa_affinity)
        where = "" if self.numa_affinity is None else f" on NUMA nodes {self.numa_affinity}"
        super().__init__(
            "not enough cpus available to satisfy request: "
            f"requested={requested}, available={len(available)}",
            f'available CPUs{where}: "{available}"; request fewer CPUs or wait until exclusive CPUs '
            "are released on this node",
        )


class SMTAlignmentError(AllocationError):
    """A ``full-pcpus-only`` request that cannot be met with whole physical cores."""

    reason = "SMTAlignmentError"

    def __init__(self, requested: int, cpus_per_core: int, available_physical: int | None = None) -> None:
        self.requested = requested
        self.cpus_per_core = cpus_per_core
        self.available_physical = available_physical
        if available_physical is None:
            detail = (
                f"SMT Alignment Error: requested {requested} cpus "
                f"not multiple cpus per core = {cpus_per_core}"
            )
            hint = f"request a multiple of {cpus_per_core} CPUs"
        else:
            detail = (
                "SMT Alignment Error: not enough free physical CPUs: "
                f"available physical CPUs = {available_physical}, requested CPUs = {requested}, "
                f"CPUs per core = {cpus_per_core}"
            )
            hint = "request fewer CPUs or reserve whole cores (all hyperthread siblings) for the system"
        super().__init__(detail, hint)


class StateValidationError(CPUManagerError):
    """The stored CPU manager state does not fit this machine or this policy.

    The hint defaults to kubelet's remedy (drain the node, delete the checkpoint file).
    """

    def __init__(self, detail: str, checkpoint: str | None = None, hint: str | None = None) -> None:
        where = f" {checkpoint!r}" if checkpoint else ""
        super().__init__(
            detail,
            hint or f"drain this node and delete the CPU manager checkpoint file{where} before restarting",
        )


class PolicyConfigError(CPUManagerError):
    """A policy option, reservation or combination of settings is invalid."""

    def __init__(self, detail: str, hint: str = "fix the CPU manager policy configuration") -> None:
        super().__init__(detail, hint)


class HugePagesRequestError(CPUManagerError):
    """A hugepages request is malformed (unknown page size, not a whole number of pages)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail,
            "request hugepages as 'hugepages-<size>: <bytes>', a whole number of pages, "
            "e.g. 'hugepages-2Mi: 512Mi'",
        )


class InsufficientHugePagesError(AllocationError):
    """The hugepages a container asks for do not fit in the free pages of the NUMA nodes
    it may use. ``detail`` lists every node with its free and total amount."""

    def __init__(self, detail: str, nodes: Iterable[int]) -> None:
        self.nodes = sorted(nodes)
        super().__init__(
            detail,
            "request fewer hugepages, wait until other containers release theirs, or reserve more "
            "pages on those nodes "
            "(/sys/devices/system/node/node<N>/hugepages/hugepages-<size>kB/nr_hugepages)",
        )
