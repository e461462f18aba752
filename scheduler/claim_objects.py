"""The DRA objects the extender reads, parsed and bounded (pure).

* :func:`pod_claims`: which ResourceClaims a pod holds (``spec.resourceClaims``: a claim
  named directly by ``resourceClaimName``, or one generated from a template, whose name
  kube-controller-manager writes into ``status.resourceClaimStatuses``) and which of its
  containers use each (``resources.claims``). A pod entry whose claim is not generated
  yet names no claim.
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

#: ``spec.resourceClaims`` and ``status.resourceClaimStatuses`` entries of one pod.
MAX_POD_CLAIMS = 32
#: Allocation results of one claim (the API's ``AllocationResultsMaxSize``).
MAX_RESULTS = 32
#: Devices of one ResourceSlice (the API's ``ResourceSliceMaxDevices``).
MAX_SLICE_DEVICES = 128
_MAX_NAME = 253
_MAX_CONTAINERS = 256
_MAX_NUMA = 1024


class ClaimObjectError(InputError):
    """A ResourceClaim or ResourceSlice is malformed; the message names the object and field."""


def _str(value: object, where: str, fail: type[Exception], *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise _error(fail, where, f"a name of 1-{_MAX_NAME} characters", value)
    return value


def _error(fail: type[Exception], where: str, expected: str, given: object) -> Exception:
    shown = repr(given)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if fail is PodSpecError:
        return PodSpecError(where, expected, shown)
    return fail(f"{where}: expected {expected}, got {shown}")


def _list(value: object, where: str, limit: int, fail: type[Exception]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _error(fail, where, "a list", value)
    if len(value) > limit:
        raise _error(fail, where, f"at most {limit} entries", f"{len(value)} entries")
    return value


def _map(value: object, where: str, fail: type[Exception]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _error(fail, where, "an object", value)
    return value


# ------------------------------------------------------------------ pods
@dataclass(frozen=True, slots=True)
class PodClaims:
    """A pod's claims: ``names`` maps each ``spec.resourceClaims`` entry to its
    ResourceClaim's name (entries not generated yet are absent); ``used_by`` maps a
    container to the entries its ``resources.claims`` names."""

    namespace: str
    names: Mapping[str, str]
    used_by: Mapping[str, frozenset[str]]

    @property
    def claim_names(self) -> frozenset[str]:
        return frozenset(self.names.values())

    def entries_of(self, container: str) -> frozenset[str]:
        return self.used_by.get(container, frozenset())


def _container_claims(spec: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for key in ("initContainers", "containers"):
        for i, c in enumerate(_list(spec.get(key), f"spec.{key}", _MAX_CONTAINERS, PodSpecError)):
            c = _map(c, f"spec.{key}[{i}]", PodSpecError)
            res = _map(c.get("resources"), f"spec.{key}[{i}].resources", PodSpecError)
            where = f"spec.{key}[{i}].resources.claims"
            refs = _list(res.get("claims"), where, MAX_POD_CLAIMS, PodSpecError)
            names = frozenset(
                _str(_map(r, f"{where}[{j}]", PodSpecError).get("name"), f"{where}[{j}].name", PodSpecError)
                for j, r in enumerate(refs)
            )
            if names and isinstance(c.get("name"), str):
                out[c["name"]] = names
    return out


def pod_claims(raw_pod: Mapping[str, Any]) -> PodClaims | None:
    """The pod's claims, or None when it has none (errors: :class:`PodSpecError`)."""
    spec = _map(raw_pod.get("spec"), "spec", PodSpecError)
    entries = _list(spec.get("resourceClaims"), "spec.resourceClaims", MAX_POD_CLAIMS, PodSpecError)
    if not entries:
        return None
    status = _map(raw_pod.get("status"), "status", PodSpecError)
    generated: dict[str, str] = {}
    where = "status.resourceClaimStatuses"
    for i, s in enumerate(_list(status.get("resourceClaimStatuses"), where, MAX_POD_CLAIMS, PodSpecError)):
        s = _map(s, f"{where}[{i}]", PodSpecError)
        entry = _str(s.get("name"), f"{where}[{i}].name", PodSpecError)
        claim = _str(
            s.get("resourceClaimName"), f"{where}[{i}].resourceClaimName", PodSpecError, optional=True
        )
        if claim:
            generated[entry] = claim
    names: dict[str, str] = {}
    for i, e in enumerate(entries):
        e = _map(e, f"spec.resourceClaims[{i}]", PodSpecError)
        entry = _str(e.get("name"), f"spec.resourceClaims[{i}].name", PodSpecError)
        direct = e.get("resourceClaimName")
        if direct is not None:
            names[entry] = _str(direct, f"spec.resourceClaims[{i}].resourceClaimName", PodSpecError)
        elif entry in generated:
            names[entry] = generated[entry]
    meta = _map(raw_pod.get("metadata"), "metadata", PodSpecError)
    namespace = _str(meta.get("namespace"), "metadata.namespace", PodSpecError, optional=True)
    return PodClaims(namespace, MappingProxyType(names), MappingProxyType(_container_claims(spec)))


# ------------------------------------------------------------------ claims
def _meta_name(obj: Mapping[str, Any], kind: str) -> tuple[str, str]:
    meta = _map(obj.get("metadata"), f"{kind} metadata", ClaimObjectError)
    name = _str(meta.get("name"), f"{kind} metadata.name", ClaimObjectError)
    namespace = _str(
        meta.get("namespace"), f"{kind} {name}: metadata.namespace", ClaimObjectError, optional=True
    )
    return namespace, name


def claim_allocation(claim: Mapping[str, Any], driver: str) -> tuple[Mapping[str, str], ...] | None:
    """The allocation results of *driver* (``driver``, ``pool``, ``device``), or None when
    the claim is not allocated."""
    namespace, name = _meta_name(claim, "resourceclaim")
    at = f"resourceclaim {namespace}/{name}: status.allocation"
    status = _map(claim.get("status"), f"resourceclaim {namespace}/{name}: status", ClaimObjectError)
    allocation = status.get("allocation")
    if allocation is None:
        return None
    devices = _map(_map(allocation, at, ClaimObjectError).get("devices"), f"{at}.devices", ClaimObjectError)
    where = f"{at}.devices.results"
    out: list[Mapping[str, str]] = []
    for i, r in enumerate(_list(devices.get("results"), where, MAX_RESULTS, ClaimObjectError)):
        r = _map(r, f"{where}[{i}]", ClaimObjectError)
        entry = {
            k: _str(r.get(k), f"{where}[{i}].{k}", ClaimObjectError) for k in ("driver", "pool", "device")
        }
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
    spec = _map(obj.get("spec"), at, ClaimObjectError)
    if spec.get("driver") != driver or not spec.get("nodeName"):
        return None
    node = _str(spec.get("nodeName"), f"{at}.nodeName", ClaimObjectError)
    pool_obj = _map(spec.get("pool"), f"{at}.pool", ClaimObjectError)
    pool = _str(pool_obj.get("name"), f"{at}.pool.name", ClaimObjectError)
    devices: list[dict[str, Any]] = []
    for i, d in enumerate(_list(spec.get("devices"), f"{at}.devices", MAX_SLICE_DEVICES, ClaimObjectError)):
        d = _map(d, f"{at}.devices[{i}]", ClaimObjectError)
        device = _str(d.get("name"), f"{at}.devices[{i}].name", ClaimObjectError)
        attributes = _map(d.get("attributes"), f"{at}.devices[{i}].attributes", ClaimObjectError)
        value = _map(attributes.get("numaNode"), f"{at}.devices[{i}].attributes.numaNode", ClaimObjectError)
        number = value.get("int")
        known = isinstance(number, int) and not isinstance(number, bool) and 0 <= number < _MAX_NUMA
        devices.append({"name": device, "attributes": {"numaNode": {"int": number}} if known else {}})
    reduced = {"spec": {"driver": driver, "pool": {"name": pool}, "devices": devices}}
    return SliceNUMA(node, pool, reduced)
