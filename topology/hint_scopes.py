"""Topology manager scopes: *when* hints are merged for a pod.

* ``container``: each container (init containers first, then app containers) gets its
  own merge; the first one the policy rejects rejects the pod.
* ``pod``: the providers answer once for the whole pod and one merge decides; every
  container then stores that same hint.

Both follow kubelet's ``scope_container.go`` / ``scope_pod.go``. The scope owns no state:
hints come from a :class:`HintSource`, and the optional ``allocate`` callback is where a
caller performs (and records) each container's allocation, in order, right after its
hint is stored, so that the next container's hints can see it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Protocol

from topology.hint_errors import UnknownScopeError
from topology.hint_types import Policy, ProviderHints, TopologyHint

__all__ = [
    "SCOPES",
    "TOPOLOGY_AFFINITY_ERROR",
    "TOPOLOGY_AFFINITY_MESSAGE",
    "Admission",
    "Allocator",
    "ContainerScope",
    "HintSource",
    "PodScope",
    "Scope",
    "new_scope",
]

#: Pod status reason and message kubelet sets on a topology rejection.
TOPOLOGY_AFFINITY_ERROR = "TopologyAffinityError"
TOPOLOGY_AFFINITY_MESSAGE = "Resources cannot be allocated with Topology locality"


class HintSource(Protocol):
    """Where a scope gets the providers' hints (one entry per provider)."""

    def container_hints(self, container: str) -> Sequence[ProviderHints]: ...

    def pod_hints(self) -> Sequence[ProviderHints]: ...


#: Called as ``allocate(container, hint)`` after the container's hint is stored.
Allocator = Callable[[str, TopologyHint], None]


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of admitting one pod.

    ``hints`` maps each admitted container to its stored hint, in admission order. On
    rejection ``rejected_container`` names the container whose merge failed (None in pod
    scope, where the pod as a whole failed).
    """

    admit: bool
    hints: Mapping[str, TopologyHint] = field(default_factory=lambda: MappingProxyType({}))
    rejected_container: str | None = None

    @property
    def reason(self) -> str | None:
        return None if self.admit else TOPOLOGY_AFFINITY_ERROR

    @property
    def message(self) -> str | None:
        return None if self.admit else TOPOLOGY_AFFINITY_MESSAGE


class Scope(Protocol):
    """A topology manager scope."""

    @property
    def name(self) -> str: ...

    def admit(
        self,
        policy: Policy,
        containers: Sequence[str],
        source: HintSource,
        allocate: Allocator | None = None,
    ) -> Admission: ...


@dataclass(frozen=True, slots=True)
class ContainerScope:
    """``container``: one merge per container, in the order given."""

    name: ClassVar[str] = "container"

    def admit(
        self,
        policy: Policy,
        containers: Sequence[str],
        source: HintSource,
        allocate: Allocator | None = None,
    ) -> Admission:
        stored: dict[str, TopologyHint] = {}
        for container in containers:
            hint, ok = policy.merge(source.container_hints(container))
            if not ok:
                return Admission(False, MappingProxyType(stored), container)
            stored[container] = hint
            if allocate is not None:
                allocate(container, hint)
        return Admission(True, MappingProxyType(stored))


@dataclass(frozen=True, slots=True)
class PodScope:
    """``pod``: one merge over the providers' pod-level hints; every container shares it."""

    name: ClassVar[str] = "pod"

    def admit(
        self,
        policy: Policy,
        containers: Sequence[str],
        source: HintSource,
        allocate: Allocator | None = None,
    ) -> Admission:
        hint, ok = policy.merge(source.pod_hints())
        if not ok:
            return Admission(False)
        stored: dict[str, TopologyHint] = {}
        for container in containers:
            stored[container] = hint
            if allocate is not None:
                allocate(container, hint)
        return Admission(True, MappingProxyType(stored))


#: Scope name → scope; the single place a name becomes behaviour.
SCOPES: Mapping[str, Scope] = MappingProxyType(
    {ContainerScope.name: ContainerScope(), PodScope.name: PodScope()}
)


def new_scope(name: str) -> Scope:
    """The scope called *name* (``container`` or ``pod``)."""
    try:
        return SCOPES[name]
    except KeyError:
        raise UnknownScopeError(name, SCOPES) from None
