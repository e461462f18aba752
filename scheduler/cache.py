"""The extender's in-memory NRT mirror with reservations. Pure: no I/O, an injectable clock.

NRT objects are stale by design (publishers poll, and the extender is asked about pod
N+1 before pod N is bound), so on bind the extender *reserves* what the pod takes on
the chosen node's zones. The node's view is the published ``available`` minus its
reservations. A reservation ends:

* when a newer NRT object for that node accounts for it: every reserved amount is
  already gone from ``available`` compared with the object it was made against;
* when the pod is deleted (:meth:`NRTCache.release_pod`);
* after ``reservation_timeout_s`` on the injected clock (the publisher should have
  caught up by then).

Every change gives the node a new ``generation`` (unique across the cache), which is
what callers key their result caches on. All methods are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol

from scheduler.columns import ClusterColumns
from scheduler.views import NodeView
from topology.nrt import NodeResourceTopology, Zone

__all__ = ["NRTCache", "Reservation", "TopologyCache"]

Clock = Callable[[], float]
#: numa id -> resource -> amount.
Placement = Mapping[int, Mapping[str, int]]


class TopologyCache(Protocol):
    """What the extender reads and writes: node views, reservations, NRT updates."""

    def view(self, node: str) -> NodeView | None: ...

    def views(self) -> Mapping[str, NodeView]: ...

    def nodes(self) -> list[str]: ...

    def upsert(self, nrt: NodeResourceTopology) -> None: ...

    def delete(self, node: str) -> None: ...

    def reserve(self, node: str, pod_key: str, placement: Placement) -> None: ...

    def release_pod(self, pod_key: str) -> None: ...

    def holds(self, pod_key: str) -> bool: ...

    def holders(self, pod_key: str) -> frozenset[str]: ...

    def reservations(self, node: str | None = None) -> list[Reservation]: ...

    def fresh_columns(self) -> ClusterColumns | None: ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one pod holds on one node, and the ``available`` it was subtracted from."""

    pod_key: str
    node: str
    amounts: Placement
    baseline: Placement
    created: float


def _available(nrt: NodeResourceTopology) -> dict[int, dict[str, int]]:
    return {c.numa_id: dict(c.available) for c in nrt.numa_cells()}


def _accounted(res: Reservation, now: Mapping[int, Mapping[str, int]]) -> bool:
    for numa, row in res.amounts.items():
        for name, amount in row.items():
            base = res.baseline.get(numa, {}).get(name)
            current = now.get(numa, {}).get(name)
            if base is None or current is None:
                return True  # the zone or resource is gone: nothing left to hold
            if current > base - amount:
                return False
    return True


def _apply(nrt: NodeResourceTopology, reservations: Iterable[Reservation]) -> NodeResourceTopology:
    held: dict[tuple[int, str], int] = {}
    for res in reservations:
        for numa, row in res.amounts.items():
            for name, amount in row.items():
                held[(numa, name)] = held.get((numa, name), 0) + amount
    if not held:
        return nrt
    zones: list[Zone] = []
    for zone in nrt.zones:
        zone_numa = zone.numa_id
        if zone_numa is None:
            zones.append(zone)
            continue
        numa = zone_numa
        resources = tuple(
            replace(r, available=max(r.available - held.get((numa, r.name), 0), 0))
            if (numa, r.name) in held
            else r
            for r in zone.resources
        )
        zones.append(replace(zone, resources=resources))
    return replace(nrt, zones=tuple(zones))


class NRTCache:
    """NRT objects by node name, with reservations layered on top.

    >>> cache = NRTCache(clock=lambda: 0.0)
    >>> cache.upsert(nrt)                                   # doctest: +SKIP
    >>> cache.reserve("w1", "uid-1", {0: {"cpu": 4000}})    # doctest: +SKIP
    """

    def __init__(self, *, clock: Clock = time.monotonic, reservation_timeout_s: float = 120.0) -> None:
        self._clock = clock
        self._timeout = reservation_timeout_s
        self._lock = threading.RLock()
        self._nrts: dict[str, NodeResourceTopology] = {}
        self._reservations: dict[str, dict[str, Reservation]] = {}  # node -> pod key -> reservation
        self._held: dict[str, set[str]] = {}  # pod key -> nodes holding a reservation for it
        self._views: dict[str, NodeView] = {}
        self._generation = 0
        self._next_expiry = float("inf")
        #: The views as numpy columns, for the vectorised fit and score.
        self.columns = ClusterColumns()

    # ------------------------------------------------------------- reads
    def view(self, node: str) -> NodeView | None:
        """The node's effective view, or None when no NRT object names it."""
        if self._clock() >= self._next_expiry:
            self.expire()
        view = self._views.get(node)
        if view is not None:
            return view
        with self._lock:
            nrt = self._nrts.get(node)
            if nrt is None:
                return None
            return self._rebuild(node)

    def views(self) -> Mapping[str, NodeView]:
        """Every node's view by name: a read-only snapshot for one request."""
        if self._clock() >= self._next_expiry:
            self.expire()
        with self._lock:
            return MappingProxyType(dict(self._views))

    def fresh_columns(self) -> ClusterColumns:
        """The columns, after dropping reservations that have timed out."""
        if self._clock() >= self._next_expiry:
            self.expire()
        return self.columns

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._nrts)

    def reservations(self, node: str | None = None) -> list[Reservation]:
        with self._lock:
            tables = self._reservations.values() if node is None else [self._reservations.get(node, {})]
            return [r for table in tables for r in table.values()]

    def holds(self, pod_key: str) -> bool:
        """Whether any node holds a reservation for *pod_key*."""
        with self._lock:
            return pod_key in self._held

    def holders(self, pod_key: str) -> frozenset[str]:
        """The nodes holding a reservation for *pod_key* (one index lookup, no scan)."""
        with self._lock:
            return frozenset(self._held.get(pod_key, ()))

    # ------------------------------------------------------------ writes
    def upsert(self, nrt: NodeResourceTopology) -> None:
        """Store a (newer) NRT object; drop the reservations it accounts for."""
        with self._lock:
            self._nrts[nrt.name] = nrt
            now = _available(nrt)
            table = self._reservations.get(nrt.name, {})
            for key in [k for k, r in table.items() if _accounted(r, now)]:
                self._drop(nrt.name, key)
            self._rebuild(nrt.name)

    def replace_all(self, nrts: Iterable[NodeResourceTopology]) -> None:
        """A fresh list: upsert each, forget nodes that are no longer listed."""
        with self._lock:
            fresh = {n.name: n for n in nrts}
            for name in set(self._nrts) - set(fresh):
                self.delete(name)
            for nrt in fresh.values():
                self.upsert(nrt)

    def delete(self, node: str) -> None:
        with self._lock:
            self._nrts.pop(node, None)
            for key in list(self._reservations.get(node, {})):
                self._drop(node, key)
            self._reservations.pop(node, None)
            self._views.pop(node, None)
            self.columns.remove(node)

    def reserve(self, node: str, pod_key: str, placement: Placement) -> None:
        """Hold *placement* (numa id -> resource -> amount) on *node* for *pod_key*."""
        with self._lock:
            nrt = self._nrts.get(node)
            if nrt is None or not placement:
                return
            now = self._clock()
            frozen = {n: dict(row) for n, row in placement.items()}
            res = Reservation(pod_key, node, frozen, _available(nrt), now)
            self._reservations.setdefault(node, {})[pod_key] = res
            self._held.setdefault(pod_key, set()).add(node)
            self._next_expiry = min(self._next_expiry, now + self._timeout)
            self._rebuild(node)

    def release_pod(self, pod_key: str) -> None:
        """Drop every reservation of *pod_key* (the pod was deleted or its bind failed)."""
        with self._lock:
            for node in self._held.pop(pod_key, set()):
                if self._reservations.get(node, {}).pop(pod_key, None) is not None:
                    self._rebuild(node)

    def expire(self) -> None:
        """Drop reservations older than the timeout."""
        with self._lock:
            now = self._clock()
            horizon = now - self._timeout
            nearest = float("inf")
            for node, table in self._reservations.items():
                stale = [k for k, r in table.items() if r.created <= horizon]
                for key in stale:
                    self._drop(node, key)
                if stale:
                    self._rebuild(node)
                for r in table.values():
                    nearest = min(nearest, r.created + self._timeout)
            self._next_expiry = nearest

    # ---------------------------------------------------------- internal
    def _drop(self, node: str, pod_key: str) -> None:
        """Forget *pod_key*'s reservation on *node* (the caller rebuilds the view)."""
        self._reservations.get(node, {}).pop(pod_key, None)
        nodes = self._held.get(pod_key)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self._held[pod_key]

    def _rebuild(self, node: str) -> NodeView | None:
        nrt = self._nrts.get(node)
        if nrt is None:
            self._views.pop(node, None)
            self.columns.remove(node)
            return None
        self._generation += 1
        effective = _apply(nrt, self._reservations.get(node, {}).values())
        view = NodeView.build(effective, self._generation)
        self._views[node] = view
        self.columns.update(view)
        return view
