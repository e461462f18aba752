"""topology: what is this machine?

Public surface: :class:`CPUSet`, the :class:`Topology` model and its parts, and
:func:`discover` (sysfs reader with a configurable root).
"""

from topology.cpuset import CPUSet, CPUSetParseError
from topology.errors import DiscoveryError, TopologyError
from topology.model import (
    CacheGroup,
    Core,
    CPUInfo,
    Die,
    HugePages,
    NumaNode,
    Package,
    PCIDevice,
    Topology,
)

__all__ = [
    "CPUInfo",
    "CPUSet",
    "CPUSetParseError",
    "CacheGroup",
    "Core",
    "Die",
    "DiscoveryError",
    "HugePages",
    "NumaNode",
    "PCIDevice",
    "Package",
    "Topology",
    "TopologyError",
]
