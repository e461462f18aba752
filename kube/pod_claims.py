"""Which ResourceClaims a pod holds and which of its containers use each (pure).

``spec.resourceClaims`` names a claim directly (``resourceClaimName``) or through a
template, whose generated claim's name kube-controller-manager writes into
``status.resourceClaimStatuses``; an entry whose claim is not generated yet names no
claim. A container uses the entries its ``resources.claims`` names.

The scheduler extender reads a pod's claims to predict where its GPUs and CPUs go; the
node's CPU manager reads them to place a container's exclusive CPUs beside the GPUs of
the claims it uses. Every list is bounded by the API's own limits and every name by its
length; a malformed or oversized pod raises :class:`~kube.pod.InvalidPodError` naming
the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kube.bounded import bounded_list, bounded_map, bounded_name
from kube.pod import InvalidPodError

__all__ = ["MAX_CONTAINERS", "MAX_POD_CLAIMS", "PodClaims", "pod_claims"]

#: ``spec.resourceClaims`` and ``status.resourceClaimStatuses`` entries of one pod, and
#: ``resources.claims`` of one container.
MAX_POD_CLAIMS = 32
#: Containers (init and app, each) read from one pod.
MAX_CONTAINERS = 256


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

    def claims_of(self, container: str) -> frozenset[str]:
        """The ResourceClaim names *container* uses (entries not generated yet left out)."""
        return frozenset(self.names[e] for e in self.entries_of(container) if e in self.names)


def _container_claims(spec: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    fail = InvalidPodError
    out: dict[str, frozenset[str]] = {}
    for key in ("initContainers", "containers"):
        for i, c in enumerate(bounded_list(spec.get(key), f"spec.{key}", MAX_CONTAINERS, fail)):
            c = bounded_map(c, f"spec.{key}[{i}]", fail)
            res = bounded_map(c.get("resources"), f"spec.{key}[{i}].resources", fail)
            where = f"spec.{key}[{i}].resources.claims"
            refs = bounded_list(res.get("claims"), where, MAX_POD_CLAIMS, fail)
            names = frozenset(
                bounded_name(bounded_map(r, f"{where}[{j}]", fail).get("name"), f"{where}[{j}].name", fail)
                for j, r in enumerate(refs)
            )
            if names and isinstance(c.get("name"), str):
                out[c["name"]] = names
    return out


def pod_claims(raw_pod: Mapping[str, Any]) -> PodClaims | None:
    """The pod's claims, or None when it has none (errors: :class:`~kube.pod.InvalidPodError`)."""
    fail = InvalidPodError
    spec = bounded_map(raw_pod.get("spec"), "spec", fail)
    entries = bounded_list(spec.get("resourceClaims"), "spec.resourceClaims", MAX_POD_CLAIMS, fail)
    if not entries:
        return None
    status = bounded_map(raw_pod.get("status"), "status", fail)
    generated: dict[str, str] = {}
    where = "status.resourceClaimStatuses"
    for i, s in enumerate(bounded_list(status.get("resourceClaimStatuses"), where, MAX_POD_CLAIMS, fail)):
        s = bounded_map(s, f"{where}[{i}]", fail)
        entry = bounded_name(s.get("name"), f"{where}[{i}].name", fail)
        claim = bounded_name(
            s.get("resourceClaimName"), f"{where}[{i}].resourceClaimName", fail, optional=True
        )
        if claim:
            generated[entry] = claim
    names: dict[str, str] = {}
    for i, e in enumerate(entries):
        e = bounded_map(e, f"spec.resourceClaims[{i}]", fail)
        entry = bounded_name(e.get("name"), f"spec.resourceClaims[{i}].name", fail)
        direct = e.get("resourceClaimName")
        if direct is not None:
            names[entry] = bounded_name(direct, f"spec.resourceClaims[{i}].resourceClaimName", fail)
        elif entry in generated:
            names[entry] = generated[entry]
    meta = bounded_map(raw_pod.get("metadata"), "metadata", fail)
    namespace = bounded_name(meta.get("namespace"), "metadata.namespace", fail, optional=True)
    return PodClaims(namespace, MappingProxyType(names), MappingProxyType(_container_claims(spec)))
