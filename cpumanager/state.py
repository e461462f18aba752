"""CPU manager state: who holds which CPUs (pure, in memory).

The state is two things: the *default* cpuset (the shared pool every non-exclusive
container runs on) and the exclusive *assignments*, pod UID → container name → CPUSet.
Policies receive a :class:`State` and never own one, so the same policy code runs over
this in-memory store in tests and over a checkpoint-backed store on a node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from topology.cpuset import CPUSet

__all__ = ["Assignments", "MemoryState", "State"]

#: pod UID → container name → exclusive CPUs.
Assignments = Mapping[str, Mapping[str, CPUSet]]


@runtime_checkable
class State(Protocol):
    """What a policy reads and writes. Implementations persist as they see fit."""

    def get_default_cpuset(self) -> CPUSet:
        """The shared pool."""
        ...

    def set_default_cpuset(self, cpus: CPUSet) -> None:
        """Replace the shared pool."""
        ...

    def get_cpuset(self, pod_uid: str, container_name: str) -> CPUSet | None:
        """The container's exclusive CPUs, or None when it has no assignment."""
        ...

    def set_cpuset(self, pod_uid: str, container_name: str, cpus: CPUSet) -> None:
        """Record the container's exclusive CPUs."""
        ...

    def delete(self, pod_uid: str, container_name: str) -> None:
        """Forget the container's assignment (no error when it has none)."""
        ...

    def assignments(self) -> Assignments:
        """A snapshot copy of every assignment."""
        ...


class MemoryState:
    """A :class:`State` held in memory.

    >>> s = MemoryState(CPUSet.parse("0-3"))
    >>> s.set_cpuset("pod", "app", CPUSet.parse("2-3"))
    >>> str(s.get_cpuset("pod", "app")), len(s.assignments())
    ('2-3', 1)
    """

    def __init__(self, default: CPUSet | None = None, assignments: Assignments | None = None) -> None:
        self._default = default if default is not None else CPUSet()
        self._assignments: dict[str, dict[str, CPUSet]] = {
            pod: dict(containers) for pod, containers in (assignments or {}).items()
        }

    def get_default_cpuset(self) -> CPUSet:
        return self._default

    def set_default_cpuset(self, cpus: CPUSet) -> None:
        self._default = cpus

    def get_cpuset(self, pod_uid: str, container_name: str) -> CPUSet | None:
        return self._assignments.get(pod_uid, {}).get(container_name)

    def set_cpuset(self, pod_uid: str, container_name: str, cpus: CPUSet) -> None:
        self._assignments.setdefault(pod_uid, {})[container_name] = cpus

    def delete(self, pod_uid: str, container_name: str) -> None:
        containers = self._assignments.get(pod_uid)
        if containers is None:
            return
        containers.pop(container_name, None)
        if not containers:
            del self._assignments[pod_uid]

    def assignments(self) -> Assignments:
        return {pod: dict(containers) for pod, containers in self._assignments.items()}

    def __repr__(self) -> str:
        entries = {pod: {c: str(s) for c, s in cs.items()} for pod, cs in self._assignments.items()}
        return f"MemoryState(default={str(self._default)!r}, assignments={entries!r})"
