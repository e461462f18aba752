"""What the extender knows of DRA claims and slices, and the NUMA hint a pod's claims give.

:class:`ClaimIndex` mirrors (through the sources' list/watch) the allocation results of
driver ``gpu.topolet.io`` of every allocated ResourceClaim and the ``numaNode`` of every
device of the driver's ResourceSlices, per node. :meth:`ClaimIndex.hints` answers, for a
pod's claims on one node, a :class:`ClaimHints`: the hint of
:func:`topology.claim_hints.claim_provider_hints` (the NUMA nodes of the allocated
devices, preferred), for the pod and for each container that uses a claim. The fit merges
it with the CPU hints of checks that hold exclusive CPUs (:func:`scheduler.admission.admit`),
so those CPUs must fit on the GPUs' NUMA nodes.

No hint (None) for a claim that is not allocated (yet), for devices of another node or
without a ``numaNode``, and for claims never seen. The timing: kube-scheduler's
DynamicResources plugin allocates a claim in Reserve and writes it in PreBind, after the
extender's filter and prioritize, so a claim made for the pod is usually unallocated at
``/filter``; the hint applies to claims allocated already (shared claims, a pod retried
after allocation) and at ``/bind``, where :meth:`ClaimIndex.refresh` reads a claim the
watch has not delivered yet (the allocation PreBind wrote moments before).

Pure but for the optional injected ``fetch`` (the Kubernetes adapter in production).
Bounded: at most :data:`MAX_CLAIMS` claims and :data:`MAX_SLICES` slices are kept; beyond
that new ones are refused with a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from scheduler.claim_objects import ClaimObjectError, PodClaims, SliceNUMA, claim_allocation, slice_numa
from topology.claim_hints import claim_provider_hints
from topology.hint_types import ProviderHints
from topology.nrt import zone_name
from topology.resourceslice import DRIVER

__all__ = ["MAX_CLAIMS", "MAX_SLICES", "ClaimFetch", "ClaimHints", "ClaimIndex"]

log = logging.getLogger(__name__)

MAX_CLAIMS = 65536
MAX_SLICES = 16384
#: Reads one claim (namespace, name) from the API; None when it does not exist.
ClaimFetch = Callable[[str, str], "Mapping[str, Any] | None"]
Results = tuple[Mapping[str, str], ...]


@dataclass(frozen=True, slots=True)
class ClaimHints:
    """The claim devices' hint on one node: for the whole pod, and per container that uses
    a claim; ``where`` says which NUMA nodes hold them (for messages)."""

    pod: ProviderHints
    containers: Mapping[str, ProviderHints]
    where: str

    def for_container(self, container: str) -> ProviderHints | None:
        return self.containers.get(container)


class ClaimIndex:
    """Allocated claims and slice NUMA nodes of one driver (see the module docstring)."""

    def __init__(self, *, driver: str = DRIVER, fetch: ClaimFetch | None = None) -> None:
        self.driver = driver
        self.fetch = fetch
        self._claims: dict[tuple[str, str], Results] = {}
        self._slices: dict[str, SliceNUMA] = {}
        self._by_node: dict[str, dict[str, Mapping[str, Any]]] = {}  # node -> slice name -> reduced
        self._lock = threading.Lock()

    # ---------------------------------------------------------- mirroring
    def apply_claim(self, claim: Mapping[str, Any], *, deleted: bool = False) -> None:
        """One claim watch event; a malformed claim is dropped with one log line."""
        meta = claim.get("metadata")
        if not isinstance(meta, Mapping):
            return
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        try:
            results = None if deleted else claim_allocation(claim, self.driver)
        except ClaimObjectError as err:
            log.error("ignoring claim: %s", err)
            results = None
        with self._lock:
            if results is None:
                self._claims.pop(key, None)
            elif key in self._claims or len(self._claims) < MAX_CLAIMS:
                self._claims[key] = results
            else:
                log.error("claim %s/%s not kept: already %d claims", *key, MAX_CLAIMS)

    def apply_slice(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        """One slice watch event; a malformed slice is dropped with one log line."""
        meta = obj.get("metadata")
        name = str(meta.get("name") or "") if isinstance(meta, Mapping) else ""
        try:
            reduced = None if deleted else slice_numa(obj, self.driver)
        except ClaimObjectError as err:
            log.error("ignoring slice: %s", err)
            reduced = None
        with self._lock:
            old = self._slices.pop(name, None)
            if old is not None:
                on_node = self._by_node.get(old.node, {})
                on_node.pop(name, None)
                if not on_node:
                    self._by_node.pop(old.node, None)
            if reduced is None:
                return
            if len(self._slices) >= MAX_SLICES:
                log.error("resourceslice %s not kept: already %d slices", name, MAX_SLICES)
                return
            self._slices[name] = reduced
            self._by_node.setdefault(reduced.node, {})[name] = reduced.reduced

    def refresh(self, claims: PodClaims) -> None:
        """Read through ``fetch`` every claim of *claims* not known allocated (bind time)."""
        if self.fetch is None:
            return
        for name in sorted(claims.claim_names):
            with self._lock:
                known = (claims.namespace, name) in self._claims
            if known:
                continue
            obj = self.fetch(claims.namespace, name)
            if obj is not None:
                self.apply_claim(obj)

    # ---------------------------------------------------------- reading
    def allocated(self, claims: PodClaims) -> dict[str, Results]:
        """Pod claim entry -> the allocation results of the driver (allocated claims only)."""
        with self._lock:
            return {
                entry: self._claims[(claims.namespace, name)]
                for entry, name in claims.names.items()
                if (claims.namespace, name) in self._claims
            }

    def holds_devices(self, claims: PodClaims | None) -> bool:
        """Whether any claim of the pod is allocated devices of the driver."""
        return claims is not None and any(self.allocated(claims).values())

    def _node_slices(self, node: str) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self._by_node.get(node, {}).values())

    def hints(self, claims: PodClaims | None, node: str) -> ClaimHints | None:
        """The pod's claim hint on *node*; None when no allocated device there has a NUMA node."""
        if claims is None:
            return None
        by_entry = self.allocated(claims)
        if not any(by_entry.values()):
            return None
        slices = self._node_slices(node)
        if not slices:
            return None

        def hint(results: Iterable[Mapping[str, str]]) -> ProviderHints:
            out = claim_provider_hints(list(results), slices, driver=self.driver)
            return out if out and out.get(self.driver) else None

        pod = hint(r for rs in by_entry.values() for r in rs)
        if not pod:
            return None
        containers: dict[str, ProviderHints] = {}
        for container, entries in claims.used_by.items():
            one = hint(r for e in entries for r in by_entry.get(e, ()))
            if one:
                containers[container] = one
        numa = sorted({n for h in pod[self.driver] or () for n in h.numa_affinity or ()})
        where = f"{self.driver} devices of its claims on {', '.join(map(zone_name, numa))}"
        return ClaimHints(pod, MappingProxyType(containers), where)
