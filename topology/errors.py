"""Errors of the topology package. One hierarchy for this boundary.

::

    TopologyError
    ├── DiscoveryError      a sysfs/procfs file is missing or malformed (topology.sysfs)
    ├── CPUSetParseError    a cpu-list or cpu mask string is malformed (topology.cpuset)
    ├── QuantityError       a Kubernetes quantity is malformed (topology.quantity)
    ├── NRTError            a NodeResourceTopology object is malformed (topology.nrt)
    └── HintError           topology-manager hints, policies and options (topology.hint_errors)

The parse errors (CPUSetParseError, QuantityError, NRTError) are also ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DiscoveryError", "TopologyError"]


class TopologyError(Exception):
    """Base class of topology errors."""


class DiscoveryError(TopologyError):
    """A file of the sysfs/procfs tree is missing or malformed.

    ``path`` names the file, ``expected`` says what it should have held.
    """

    def __init__(self, path: Path | str, expected: str, detail: str | None = None) -> None:
        self.path = Path(path)
        self.expected = expected
        msg = f"{self.path}: expected {expected}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
