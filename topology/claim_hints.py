"""NUMA hints for devices a pod holds through DRA claims (pure).

A claim's devices are chosen before the pod runs (kube-scheduler allocates them; the
claim's ``status.allocation.devices.results`` names driver, pool and device). topolet
places the pod's exclusive CPUs on the NUMA nodes of those devices, as it does for
device-plugin GPUs, so whoever predicts that placement (the node agent, the extender)
treats the claim's devices as one more hint provider:

* :func:`claim_device_numa` looks each allocated device up in the node's ResourceSlices
  (attribute ``numaNode`` of the driver's own domain) and gives its NUMA node, or None
  when the slice has no such device or the device has no ``numaNode``;
* :func:`allocated_device_hints` is what kubelet's device manager answers for devices
  already chosen: one hint, the NUMA nodes that hold them, preferred; no preference
  (None) when none of them has a NUMA node.

The result goes into :func:`topology.hints.merge_hints` beside the CPU hints, under the
resource name of the driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from topology.hint_types import ProviderHints, TopologyHint

__all__ = ["allocated_device_hints", "claim_device_numa", "claim_provider_hints"]


def _numa_attribute(device: Mapping[str, Any]) -> int | None:
    value = (device.get("attributes") or {}).get("numaNode")
    number = value.get("int") if isinstance(value, Mapping) else None
    return number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else None


def claim_device_numa(
    results: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]], *, driver: str
) -> list[int | None]:
    """The NUMA node of each allocation result of *driver*, from the pool's slices."""
    numa: dict[tuple[str, str], int | None] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pool = (spec.get("pool") or {}).get("name", "")
        for device in spec.get("devices") or ():
            numa[(pool, device.get("name", ""))] = _numa_attribute(device)
    return [
        numa.get((str(r.get("pool", "")), str(r.get("device", ""))))
        for r in results
        if r.get("driver") == driver
    ]


def allocated_device_hints(numa_nodes: Sequence[int | None]) -> list[TopologyHint] | None:
    """The hint for devices already chosen: their NUMA nodes, preferred (None: no
    preference, when no device has a NUMA node or there are no devices)."""
    known = frozenset(n for n in numa_nodes if n is not None)
    return [TopologyHint(known, preferred=True)] if known else None


def claim_provider_hints(
    results: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]], *, driver: str
) -> ProviderHints:
    """``{driver: hints}`` for the pod's allocated claim devices of *driver*."""
    return {driver: allocated_device_hints(claim_device_numa(results, slices, driver=driver))}
