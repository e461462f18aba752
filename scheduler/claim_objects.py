"""The DRA objects the extender reads, parsed and bounded (pure).

* :func:`pod_claims`: which ResourceClaims a pod holds and which of its containers use
  each (:mod:`kube.pod_claims`, shared with the node's CPU manager), its errors as the
  scheduler's.
* :func:`claim_allocation`: a ResourceClaim's ``status.allocation.devices.results`` of
  one driver, or None when the claim is not allocated.
* :func:`slice_numa`: a ResourceSlice of one driver reduced to its node, pool and the
  ``numaNode`` attribute of each device.

Every list is bounded by the API's own limits and every name by its length; a malformed
or oversized object raises :class:`ClaimObjectError` (a pod's:
:class:`~scheduler.errors.PodSpecError`, answered with 400), one line naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kube.bounded import bounded_list, bounded_map, bounded_name
from kube.pod import InvalidPodError
from kube.pod_claims import MAX_POD_CLAIMS, PodClaims
from kube.pod_claims import pod_claims as _pod_claims
from scheduler.errors import InputError, PodSpecError

__all__ = [
    "MAX_POD_CLAIMS",
    "MAX_RESULTS",
    "MAX_SLICE_DEVICES",
    "ClaimObjectError",
    "PodClaims",
    "SliceNUMA",
    "claim_allocation",
    "pod_claims",
    "slice_numa",
]

#: Allocation results of one claim (the API's ``AllocationResultsMaxSize``).
MAX_RESULTS = 32
#: Devices of one ResourceSlice (the API's ``ResourceSliceMaxDevices``).
MAX_SLICE_DEVICES = 128
_MAX_NUMA = 1024


class ClaimObjectError(InputError):
    """A ResourceClaim or ResourceSlice is malformed; the message names the object and field."""


def _claim_error(where: str, expected: str, shown: str) -> ClaimObjectError:
    return ClaimObjectError(f"{where}: expected {expected}, got {shown}")


def _str(value: object, where: str, *, optional: bool = False) -> str:
    return bounded_name(value, where, _claim_error, optional=optional)


def _list(value: object, where: str, limit: int) -> list[Any]:
    return bounded_list(value, where, limit, _claim_error)


def _map(value: object, where: str) -> Mapping[str, Any]:
    return bounded_map(value, where, _claim_error)


# ------------------------------------------------------------------ pods
def pod_claims(raw_pod: Mapping[str, Any]) -> PodClaims | None:
    """:func:`kube.pod_claims.pod_claims` with its errors as :class:`PodSpecError` (400)."""
    try:
        return _pod_claims(raw_pod)
    except InvalidPodError as e:
        raise PodSpecError(e.field, e.expected, e.given) from e


# ------------------------------------------------------------------ claims
def _meta_name(obj: Mapping[str, Any], kind: str) -> tuple[str, str]:
    meta = _map(obj.get("metadata"), f"{kind} metadata")
    name = _str(meta.get("name"), f"{kind} metadata.name")
    namespace = _str(meta.get("namespace"), f"{kind} {name}: metadata.namespace", optional=True)
    return namespace, name


def claim_allocation(claim: Mapping[str, Any], driver: str) -> tuple[Mapping[str, str], ...] | None:
    """The allocation results of *driver* (``driver``, ``pool``, ``device``), or None when
    the claim is not allocated."""
    namespace, name = _meta_name(claim, "resourceclaim")
    at = f"resourceclaim {namespace}/{name}: status.allocation"
    status = _map(claim.get("status"), f"resourceclaim {namespace}/{name}: status")
    allocation = status.get("allocation")
    if allocation is None:
        return None
    devices = _map(_map(allocation, at).get("devices"), f"{at}.devices")
    where = f"{at}.devices.results"
    out: list[Mapping[str, str]] = []
    for i, r in enumerate(_list(devices.get("results"), where, MAX_RESULTS)):
        r = _map(r, f"{where}[{i}]")
        entry = {k: _str(r.get(k), f"{where}[{i}].{k}") for k in ("driver", "pool", "device")}
        if entry["driver"] == driver:
            out.append(MappingProxyType(entry))
    return tuple(out)


# ------------------------------------------------------------------ slices
@dataclass(frozen=True, slots=True)
class SliceNUMA:
    """One ResourceSlice of the driver reduced to what a NUMA hint reads: its node, and
    ``reduced``, the slice with only pool, device names and ``numaNode`` attributes (the
    input of :func:`topology.claim_hints.claim_provider_hints`)."""

    node: str
    pool: str
    reduced: Mapping[str, Any]


def slice_numa(obj: Mapping[str, Any], driver: str) -> SliceNUMA | None:
    """The slice reduced to NUMA nodes, or None when it is another driver's or names no node."""
    _, name = _meta_name(obj, "resourceslice")
    at = f"resourceslice {name}: spec"
    spec = _map(obj.get("spec"), at)
    if spec.get("driver") != driver or not spec.get("nodeName"):
        return None
    node = _str(spec.get("nodeName"), f"{at}.nodeName")
    pool_obj = _map(spec.get("pool"), f"{at}.pool")
    pool = _str(pool_obj.get("name"), f"{at}.pool.name")
    devices: list[dict[str, Any]] = []
    for i, d in enumerate(_list(spec.get("devices"), f"{at}.devices", MAX_SLICE_DEVICES)):
        d = _map(d, f"{at}.devices[{i}]")
        device = _str(d.get("name"), f"{at}.devices[{i}].name")
        attributes = _map(d.get("attributes"), f"{at}.devices[{i}].attributes")
        value = _map(attributes.get("numaNode"), f"{at}.devices[{i}].attributes.numaNode")
        number = value.get("int")
        known = isinstance(number, int) and not isinstance(number, bool) and 0 <= number < _MAX_NUMA
        devices.append({"name": device, "attributes": {"numaNode": {"int": number}} if known else {}})
    reduced = {"spec": {"driver": driver, "pool": {"name": pool}, "devices": devices}}
    return SliceNUMA(node, pool, reduced)
