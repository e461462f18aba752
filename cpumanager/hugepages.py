"""Hugepages per NUMA node: accounting, hints and placement of ``hugepages-<size>`` requests.

Each NUMA node has a pool per page size (``HugePages.total`` from discovery, the kernel's
``nr_hugepages`` of that node). A container's request (``hugepages-2Mi: 1Gi``, in bytes)
is placed on a set of NUMA nodes and counted against those pools; what is left is what
topolet has not handed out (pages the kernel reports free but topolet gave away are not
free here). Placement rules:

* a container with exclusive CPUs gets its hugepages on the NUMA nodes of those CPUs
  (its ``cpuset.mems``), so memory and CPUs stay aligned;
* any other Guaranteed container gets the narrowest preferred hint (its ``cpuset.mems``
  is then set to those nodes);
* a Burstable or BestEffort container's memory is not pinned, so the kernel may take
  pages from any node: its request is counted against every node, lowest id first.

Within a node set, pages are taken node by node in ascending id order, as much as each
node has free (kubelet's memory manager does the same for multi-node allocations).

Hints come from the shared hint code (:func:`topology.hint_generators.memory_topology_hints`):
free amounts decide which node sets are hints, totals decide which are preferred.

The accounts are not stored: after a restart they are derived again from the running
containers (every pod source reports each container's request), and a container with
exclusive CPUs gets back exactly the nodes it had, since its CPUs come from the
checkpoint.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cpumanager.errors import HugePagesRequestError, InsufficientHugePagesError
from topology.cpuset import CPUSet
from topology.hint_generators import cpu_topology_hints, memory_topology_hints
from topology.hint_types import NUMAInfo, ProviderHints, TopologyHint
from topology.hints import BestEffortPolicy
from topology.model import HugePages, Topology
from topology.quantity import QuantityError, parse_quantity

__all__ = [
    "HUGEPAGES_PREFIX",
    "HugePageAccounts",
    "Placement",
    "aligned_affinity",
    "check_hugepages",
    "format_bytes",
    "nodes_for",
    "page_size_bytes",
    "parse_hugepages_requests",
]

HUGEPAGES_PREFIX = "hugepages-"

#: node id -> resource name -> bytes
Placement = dict[int, dict[str, int]]

_UNITS = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def format_bytes(amount: int) -> str:
    """Bytes in the largest binary unit that divides them exactly (``536870912`` → ``512Mi``)."""
    for suffix, unit in _UNITS:
        if amount and amount % unit == 0:
            return f"{amount // unit}{suffix}"
    return str(amount)


def page_size_bytes(resource: str) -> int:
    """The page size of a ``hugepages-<size>`` resource name (``hugepages-2Mi`` → 2097152)."""
    if not resource.startswith(HUGEPAGES_PREFIX):
        raise HugePagesRequestError(f"{resource!r} is not a hugepages resource (hugepages-<size>)")
    try:
        size = parse_quantity(resource[len(HUGEPAGES_PREFIX) :], field=resource)
    except QuantityError as e:
        raise HugePagesRequestError(f"{resource}: page size {e}") from e
    if size <= 0 or size.denominator != 1:
        raise HugePagesRequestError(f"{resource}: page size must be a positive whole number of bytes")
    return int(size)


def parse_hugepages_requests(raw: Mapping[str, str | int]) -> dict[str, int]:
    """``{"hugepages-2Mi": "1Gi"}`` → ``{"hugepages-2Mi": 1073741824}``; zero amounts are
    dropped. Each amount must be a whole number of pages of its size."""
    out: dict[str, int] = {}
    for resource, text in raw.items():
        page = page_size_bytes(resource)
        try:
            amount = parse_quantity(text, field=resource)
        except QuantityError as e:
            raise HugePagesRequestError(str(e)) from e
        if amount < 0 or amount % page != 0:
            raise HugePagesRequestError(
                f"{resource}: {text!r} is not a whole number of {format_bytes(page)} pages"
            )
        if amount:
            out[resource] = int(amount)
    return out


def check_hugepages(amounts: Mapping[str, int]) -> dict[str, int]:
    """Amounts already in bytes (the pod model's ``hugepages``), checked as
    :func:`parse_hugepages_requests` checks text: a known page size, a whole number of
    pages; zero amounts are dropped."""
    out: dict[str, int] = {}
    for resource, amount in amounts.items():
        page = page_size_bytes(resource)
        if amount < 0 or amount % page != 0:
            raise HugePagesRequestError(
                f"{resource}: {format_bytes(amount)} is not a whole number of {format_bytes(page)} pages"
            )
        if amount:
            out[resource] = amount
    return out


def _capacity(topo: Topology) -> dict[int, dict[str, int]]:
    return {
        node_id: {pool.resource_name: pool.total * pool.size_kb * 1024 for pool in _pools(node.hugepages)}
        for node_id, node in topo.numa_nodes.items()
    }


def _pools(pools: Mapping[int, HugePages]) -> list[HugePages]:
    return [pools[k] for k in sorted(pools)]


@dataclass
class HugePageAccounts:
    """Hugepage pools per NUMA node and what each container holds of them.

    >>> acc = HugePageAccounts.from_topology(topo)                  # doctest: +SKIP
    >>> acc.place(("uid", "app"), {"hugepages-2Mi": 2**30}, {0})    # doctest: +SKIP
    {0: {'hugepages-2Mi': 1073741824}}
    """

    capacity: Mapping[int, Mapping[str, int]]
    held: dict[tuple[str, str], Placement] = field(default_factory=dict)

    @classmethod
    def from_topology(cls, topo: Topology) -> HugePageAccounts:
        return cls(_capacity(topo))

    # ------------------------------------------------------------------ views
    def allocated(self) -> Placement:
        """Bytes handed out, per node and resource (every node and known resource listed)."""
        out: Placement = {n: {r: 0 for r in res} for n, res in self.capacity.items()}
        for placement in self.held.values():
            for node, res in placement.items():
                for name, amount in res.items():
                    out.setdefault(node, {})[name] = out.get(node, {}).get(name, 0) + amount
        return out

    def free(self) -> Placement:
        """Bytes not handed out, per node and resource."""
        used = self.allocated()
        return {
            n: {r: total - used.get(n, {}).get(r, 0) for r, total in res.items()}
            for n, res in self.capacity.items()
        }

    def holding(self, key: tuple[str, str]) -> Placement | None:
        return self.held.get(key)

    def nodes_of(self, key: tuple[str, str]) -> frozenset[int]:
        return frozenset(n for n, res in self.held.get(key, {}).items() if any(res.values()))

    # ------------------------------------------------------------------ hints
    def hints(self, request: Mapping[str, int]) -> list[TopologyHint]:
        """Node sets whose free pages cover *request*; preferred when as small as the
        smallest set whose totals cover it. Empty: it fits nowhere."""
        if not request:
            return []
        per_resource = memory_topology_hints(request, self.free(), allocatable=self.capacity)
        return next(iter(per_resource.values()))

    def provider_hints(self, request: Mapping[str, int]) -> dict[str, list[TopologyHint]]:
        """The hints keyed by resource name, as a topology-manager provider answers."""
        if not request:
            return {}
        return memory_topology_hints(request, self.free(), allocatable=self.capacity)

    def best_nodes(self, request: Mapping[str, int]) -> frozenset[int]:
        """The first preferred hint (narrowest, lowest ids), else the first hint; raises
        :class:`InsufficientHugePagesError` when no node set can hold the request."""
        hints = self.hints(request)
        preferred = [h for h in hints if h.preferred]
        for hint in preferred or hints:
            if hint.numa_affinity:
                return hint.numa_affinity
        raise self._error(request, sorted(self.capacity), "")

    # -------------------------------------------------------------- changes
    def place(
        self, key: tuple[str, str], request: Mapping[str, int], nodes: Iterable[int], *, why: str = ""
    ) -> Placement:
        """Count *request* against *nodes* (ascending id, as much as each has free) and
        record it for *key*. Idempotent: a key that holds pages keeps them. Raises
        :class:`InsufficientHugePagesError` with the numbers when the nodes cannot hold it."""
        if key in self.held:
            return self.held[key]
        order = sorted(set(nodes))
        free = self.free()
        for resource, want in request.items():
            if sum(free.get(n, {}).get(resource, 0) for n in order) < want:
                raise self._error(request, order, why)
        placement: Placement = {}
        for resource, want in request.items():
            for node in order:
                take = min(want, free.get(node, {}).get(resource, 0))
                if take:
                    placement.setdefault(node, {})[resource] = take
                    want -= take
        self.held[key] = placement
        return placement

    def release(self, key: tuple[str, str]) -> Placement:
        """Forget what *key* holds; returns it (empty when nothing)."""
        return self.held.pop(key, {})

    def _error(self, request: Mapping[str, int], nodes: list[int], why: str) -> InsufficientHugePagesError:
        free = self.free()
        short = {r: w for r, w in request.items() if sum(free.get(n, {}).get(r, 0) for n in nodes) < w}
        parts = []
        for resource, want in sorted((short or request).items()):
            per_node = ", ".join(
                f"{'NUMA node' if i == 0 else 'node'} {n} has "
                f"{format_bytes(free.get(n, {}).get(resource, 0))} free of "
                f"{format_bytes(self.capacity.get(n, {}).get(resource, 0))}"
                for i, n in enumerate(nodes)
            )
            where = f" on NUMA nodes {nodes}{why}" if why else ""
            parts.append(f"{resource}: {format_bytes(want)} requested{where}, {per_node}")
        return InsufficientHugePagesError("; ".join(parts), nodes)


def aligned_affinity(
    topo: Topology,
    accounts: HugePageAccounts,
    request: Mapping[str, int],
    *,
    available_cpus: CPUSet,
    num_cpus: int,
    device_nodes: Iterable[int] | None = None,
) -> frozenset[int] | None:
    """The NUMA nodes a Guaranteed container's exclusive CPUs should come from so that its
    hugepages fit beside them: CPU hints, hugepage hints (and the nodes of its devices)
    merged as the topology manager's ``best-effort`` policy merges them. None: no
    preference."""
    providers: list[ProviderHints] = [
        {"cpu": cpu_topology_hints(topo, available_cpus, CPUSet(), num_cpus)},
        accounts.provider_hints(request),
    ]
    if device_nodes is not None:
        providers.append({"devices": [TopologyHint(frozenset(device_nodes), True)]})
    hint, _ = BestEffortPolicy(NUMAInfo.from_topology(topo)).merge(providers)
    return hint.numa_affinity


def nodes_for(
    topo: Topology,
    accounts: HugePageAccounts,
    request: Mapping[str, int],
    *,
    exclusive: CPUSet | None,
    guaranteed: bool,
) -> tuple[frozenset[int], str]:
    """The NUMA nodes a container's hugepages go to (the placement rules above), and the
    reason to quote when they do not fit there."""
    if exclusive:
        return frozenset(topo.numa_nodes_of(exclusive)), f' (the NUMA nodes of its CPUs "{exclusive}")'
    if guaranteed:
        return accounts.best_nodes(request), ""
    return frozenset(topo.numa_nodes), " (its memory is not NUMA-pinned)"
