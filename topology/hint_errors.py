"""Errors of the topology-hint layer: NUMA masks, hint generation, and the topology
manager's policy/scope configuration.

They subclass :class:`topology.errors.TopologyError`, so one ``except TopologyError``
covers every failure of the :mod:`topology` package. Messages name the offending field
and the accepted form, as kubelet's topology manager does at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

from topology.errors import TopologyError

__all__ = [
    "HintError",
    "HintRequestError",
    "NUMALimitError",
    "NUMAMaskError",
    "PolicyOptionError",
    "UnknownPolicyError",
    "UnknownScopeError",
]


class HintError(TopologyError):
    """Base class of hint and topology-manager errors."""


class NUMAMaskError(HintError):
    """A NUMA affinity names an invalid node id (ids are non-negative integers)."""


class HintRequestError(HintError):
    """A hint generator was asked something that cannot be answered (negative request,
    CPUs or nodes unknown to the topology, unknown free amounts)."""


class PolicyOptionError(HintError):
    """A topology-manager policy option is unknown or has a malformed value."""


class NUMALimitError(HintError):
    """The machine has more NUMA nodes than ``max-allowable-numa-nodes`` permits."""

    def __init__(self, nodes: int, limit: int) -> None:
        self.nodes = nodes
        self.limit = limit
        super().__init__(
            f"unsupported on machines with more than {limit} NUMA Nodes (this machine has {nodes}); "
            'raise the topology manager option "max-allowable-numa-nodes" or use the policy "none"'
        )


class _UnknownNameError(HintError):
    kind = "name"

    def __init__(self, name: str, valid: Iterable[str]) -> None:
        self.name = name
        self.valid = tuple(sorted(valid))
        super().__init__(
            f"unknown topology manager {self.kind} {name!r}: expected one of {', '.join(self.valid)}"
        )


class UnknownPolicyError(_UnknownNameError):
    """``topologyManagerPolicy`` names no registered policy."""

    kind = "policy"


class UnknownScopeError(_UnknownNameError):
    """``topologyManagerScope`` names no registered scope."""

    kind = "scope"
