"""The NodeResourceTopology (``topology.node.k8s.io/v1alpha2``) model: pure values, no I/O.

This is where the node side and the cluster side meet. The node agent turns a
:class:`~topology.model.Topology` into an NRT object with :func:`build_nrt`; the
scheduler reads NRT objects with :meth:`NodeResourceTopology.from_dict`, asks
:meth:`~NodeResourceTopology.topology_manager` which kubelet policy/scope the node runs
and :meth:`~NodeResourceTopology.numa_cells` what each NUMA node still has.

The wire shape is the CRD's, key for key (camelCase, empty optional lists omitted as
Go's ``omitempty`` does). Quantities become ints in their canonical unit (see
:mod:`topology.quantity`: millicores for cpu, bytes, counts) and are written back as
plain quantity strings. NUMA ids are sparse: everything is keyed by id or kept in
zone order, never indexed by id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from topology.cpuset import CPUSet
from topology.errors import TopologyError
from topology.model import Topology
from topology.quantity import CPU, format_amount, parse_amount

__all__ = [
    "API_VERSION",
    "ATTR_MAX_NUMA_NODES",
    "ATTR_POLICY",
    "ATTR_SCOPE",
    "KIND",
    "MAX_NUMA_ID",
    "POLICIES",
    "SCOPES",
    "ZONE_TYPE_NODE",
    "AttributeInfo",
    "CostInfo",
    "NRTError",
    "NodeResourceTopology",
    "NumaCell",
    "ResourceInfo",
    "TopologyManagerConfig",
    "Zone",
    "build_nrt",
    "config_from_attributes",
    "config_from_topology_policies",
    "is_valid_policy",
    "is_valid_scope",
    "numa_id_from_zone_name",
    "zone_name",
]

API_VERSION = "topology.node.k8s.io/v1alpha2"
KIND = "NodeResourceTopology"
#: The only well-known zone type: a NUMA node (noderesourcetopology-api ``ZoneTypeNUMANode``).
ZONE_TYPE_NODE = "Node"
#: Zones with a larger id are ignored by consumers (scheduler-plugins ``maxNUMAId``).
MAX_NUMA_ID = 64
ATTR_POLICY = "topologyManagerPolicy"
ATTR_SCOPE = "topologyManagerScope"
ATTR_MAX_NUMA_NODES = "topologyManagerMaxNUMANodes"
#: kubelet ``--topology-manager-policy`` spellings, case-sensitive.
POLICIES = ("none", "best-effort", "restricted", "single-numa-node")
#: kubelet ``--topology-manager-scope`` spellings, case-sensitive.
SCOPES = ("container", "pod")
#: kubelet's default for ``max-allowable-numa-nodes`` and its hard upper bound.
DEFAULT_MAX_NUMA_NODES = 8
_MAX_NUMA_NODES_CAP = 1024
#: The deprecated top-level ``topologyPolicies`` values and the (policy, scope) they mean.
_LEGACY_POLICIES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "SingleNUMANodeContainerLevel": ("single-numa-node", "container"),
        "SingleNUMANodePodLevel": ("single-numa-node", "pod"),
        "BestEffortContainerLevel": ("best-effort", "container"),
        "BestEffortPodLevel": ("best-effort", "pod"),
        "RestrictedContainerLevel": ("restricted", "container"),
        "RestrictedPodLevel": ("restricted", "pod"),
    }
)
_ZONE_NAME = re.compile(r"node-([0-9]+)")


class NRTError(TopologyError, ValueError):
    """An NRT object (or a request to build one) is malformed; names the field."""

    def __init__(self, field: str, expected: str, given: object = None) -> None:
        self.field = field
        self.expected = expected
        got = "" if given is None else f", got {given!r}"
        super().__init__(f"{field}: expected {expected}{got}")


def zone_name(numa_id: int) -> str:
    """The zone name of NUMA node *numa_id*: ``node-<id>``."""
    return f"node-{numa_id}"


def numa_id_from_zone_name(name: str) -> int | None:
    """The NUMA id in ``node-<decimal>``; None for any other spelling (``Node-1``, ``node6``)."""
    m = _ZONE_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ values
@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One resource of a zone, amounts in the canonical unit (millicores for cpu)."""

    name: str
    capacity: int
    allocatable: int
    available: int

    @staticmethod
    def from_dict(obj: object, path: str) -> ResourceInfo:
        d = _mapping(obj, path)
        name = _string(d, "name", path)
        amounts = [_amount(name, d, key, path) for key in ("capacity", "allocatable", "available")]
        return ResourceInfo(name, *amounts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capacity": format_amount(self.name, self.capacity),
            "allocatable": format_amount(self.name, self.allocatable),
            "available": format_amount(self.name, self.available),
        }


@dataclass(frozen=True, slots=True)
class CostInfo:
    """The distance from a zone to the zone called ``name`` (SLIT style, 10 = local)."""

    name: str
    value: int

    @staticmethod
    def from_dict(obj: object, path: str) -> CostInfo:
        d = _mapping(obj, path)
        raw = d.get("value")
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise NRTError(f"{path}.value", "an integer distance", raw)
        return CostInfo(_string(d, "name", path), raw)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


@dataclass(frozen=True, slots=True)
class AttributeInfo:
    """A ``{name, value}`` string pair (top-level or per zone)."""

    name: str
    value: str

    @staticmethod
    def from_dict(obj: object, path: str) -> AttributeInfo:
        d = _mapping(obj, path)
        return AttributeInfo(_string(d, "name", path), _string(d, "value", path, allow_empty=True))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


@dataclass(frozen=True, slots=True)
class NumaCell:
    """What a consumer needs of one NUMA zone: its id, ``available`` per resource and the
    distance to other NUMA nodes keyed by NUMA id."""

    numa_id: int
    available: Mapping[str, int]
    costs: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone: a NUMA node when ``type == "Node"`` and the name is ``node-<id>``."""

    name: str
    type: str
    resources: tuple[ResourceInfo, ...] = ()
    costs: tuple[CostInfo, ...] = ()
    attributes: tuple[AttributeInfo, ...] = ()
    parent: str | None = None

    @property
    def numa_id(self) -> int | None:
        """The NUMA id, or None when this zone is not a NUMA node."""
        return numa_id_from_zone_name(self.name) if self.type == ZONE_TYPE_NODE else None

    def resource(self, name: str) -> ResourceInfo | None:
        return next((r for r in self.resources if r.name == name), None)

    def cell(self) -> NumaCell | None:
        """This zone as a :class:`NumaCell`; None unless it is a NUMA node."""
        numa = self.numa_id
        if numa is None:
            return None
        costs: dict[int, int] = {}
        for c in self.costs:
            other = numa_id_from_zone_name(c.name)
            if other is not None:
                costs[other] = c.value
        avail = {r.name: r.available for r in self.resources}
        return NumaCell(numa, MappingProxyType(avail), MappingProxyType(costs))

    @staticmethod
    def from_dict(obj: object, path: str) -> Zone:
        d = _mapping(obj, path)
        parent = d.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise NRTError(f"{path}.parent", "a string", parent)
        return Zone(
            name=_string(d, "name", path),
            type=_string(d, "type", path),
            resources=tuple(
                ResourceInfo.from_dict(r, p) for r, p in _items(d, "resources", path, required=False)
            ),
            costs=tuple(CostInfo.from_dict(c, p) for c, p in _items(d, "costs", path, required=False)),
            attributes=tuple(
                AttributeInfo.from_dict(a, p) for a, p in _items(d, "attributes", path, required=False)
            ),
            parent=parent or None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.parent:
            out["parent"] = self.parent
        if self.costs:
            out["costs"] = [c.to_dict() for c in self.costs]
        if self.attributes:
            out["attributes"] = [a.to_dict() for a in self.attributes]
        if self.resources:
            out["resources"] = [r.to_dict() for r in self.resources]
        return out


@dataclass(frozen=True, slots=True)
class TopologyManagerConfig:
    """The kubelet Topology Manager settings an NRT object advertises.

    ``""`` means unset (only while folding sources together); :meth:`defaults` is what a
    node that says nothing runs: policy ``none``, scope ``container``.
    """

    policy: str = ""
    scope: str = ""
    max_numa_nodes: int = DEFAULT_MAX_NUMA_NODES

    @staticmethod
    def defaults() -> TopologyManagerConfig:
        return TopologyManagerConfig(policy="none", scope="container")


def is_valid_policy(policy: str) -> bool:
    """True for the kubelet spellings in :data:`POLICIES` (case-sensitive)."""
    return policy in POLICIES


def is_valid_scope(scope: str) -> bool:
    """True for the kubelet spellings in :data:`SCOPES` (case-sensitive)."""
    return scope in SCOPES


def config_from_topology_policies(
    policies: Sequence[str] | None, base: TopologyManagerConfig
) -> TopologyManagerConfig:
    """Apply the deprecated ``topologyPolicies``: only the first entry counts; unknown
    values leave *base* as it is."""
    if not policies or policies[0] not in _LEGACY_POLICIES:
        return base
    policy, scope = _LEGACY_POLICIES[policies[0]]
    return replace(base, policy=policy, scope=scope)


def config_from_attributes(
    attributes: Sequence[AttributeInfo] | None, base: TopologyManagerConfig
) -> TopologyManagerConfig:
    """Apply the ``topologyManager*`` attributes; invalid values (``Pod``) are ignored."""
    conf = base
    for attr in attributes or ():
        if attr.name == ATTR_POLICY and is_valid_policy(attr.value):
            conf = replace(conf, policy=attr.value)
        elif attr.name == ATTR_SCOPE and is_valid_scope(attr.value):
            conf = replace(conf, scope=attr.value)
        elif attr.name == ATTR_MAX_NUMA_NODES and attr.value.isdigit():
            count = int(attr.value)
            if 1 < count <= _MAX_NUMA_NODES_CAP:
                conf = replace(conf, max_numa_nodes=count)
    return conf


@dataclass(frozen=True, slots=True)
class NodeResourceTopology:
    """One node's NRT object. ``name`` is the node name (the CRD is cluster-scoped).

    >>> nrt = NodeResourceTopology.from_dict(obj)        # doctest: +SKIP
    >>> nrt.topology_manager().policy, [c.numa_id for c in nrt.numa_cells()]  # doctest: +SKIP
    ('single-numa-node', [0, 1])
    """

    name: str
    zones: tuple[Zone, ...]
    attributes: tuple[AttributeInfo, ...] = ()
    #: Deprecated since v1alpha2; read for older publishers, written only when set.
    topology_policies: tuple[str, ...] = ()
    # Derived once: the scheduler asks for these on every filter/score call.
    _cells: tuple[NumaCell, ...] = field(init=False, repr=False, compare=False)
    _config: TopologyManagerConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cells = (z.cell() for z in self.zones)
        kept = tuple(c for c in cells if c is not None and c.numa_id <= MAX_NUMA_ID)
        conf = config_from_topology_policies(self.topology_policies, TopologyManagerConfig.defaults())
        object.__setattr__(self, "_cells", kept)
        object.__setattr__(self, "_config", config_from_attributes(self.attributes, conf))

    def attribute(self, name: str) -> str | None:
        return next((a.value for a in self.attributes if a.name == name), None)

    def topology_manager(self) -> TopologyManagerConfig:
        """Defaults, then ``topologyPolicies[0]``, then the attributes (attributes win)."""
        return self._config

    def numa_cells(self) -> tuple[NumaCell, ...]:
        """The NUMA zones in zone order, skipping other zones and ids above :data:`MAX_NUMA_ID`."""
        return self._cells

    def zone(self, name: str) -> Zone | None:
        return next((z for z in self.zones if z.name == name), None)

    @staticmethod
    def from_dict(obj: object) -> NodeResourceTopology:
        """Parse the wire form (JSON/YAML as the API server serves it)."""
        d = _mapping(obj, "NodeResourceTopology")
        for key, want in (("apiVersion", API_VERSION), ("kind", KIND)):
            if key in d and d[key] != want:
                raise NRTError(key, repr(want), d[key])
        meta = _mapping(d.get("metadata"), "metadata")
        policies = d.get("topologyPolicies") or []
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            raise NRTError("topologyPolicies", "a list of strings", policies)
        return NodeResourceTopology(
            name=_string(meta, "name", "metadata"),
            zones=tuple(Zone.from_dict(z, p) for z, p in _items(d, "zones", "", required=True)),
            attributes=tuple(
                AttributeInfo.from_dict(a, p) for a, p in _items(d, "attributes", "", required=False)
            ),
            topology_policies=tuple(policies),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": self.name}}
        if self.topology_policies:
            out["topologyPolicies"] = list(self.topology_policies)
        if self.attributes:
            out["attributes"] = [a.to_dict() for a in self.attributes]
        out["zones"] = [z.to_dict() for z in self.zones]
        return out


# ----------------------------------------------------------------- builder
def build_nrt(
    topo: Topology,
    *,
    node_name: str,
    policy: str = "none",
    scope: str = "container",
    reserved_cpus: CPUSet | None = None,
    extra_resources: Mapping[int, Mapping[str, int]] | None = None,
    available_by_numa: Mapping[int, Mapping[str, int]] | None = None,
) -> NodeResourceTopology:
    """The NRT object a node publishes: one ``node-<N>`` zone per NUMA node.

    Each zone has ``cpu`` (capacity = its online CPUs, allocatable = those not in
    *reserved_cpus*), ``memory`` when known, one ``hugepages-<size>`` per non-empty
    pool, and *extra_resources* (``{numa: {name: amount}}``, e.g. GPUs). Amounts are
    canonical (cpu in millicores). ``available`` is the allocatable amount unless
    *available_by_numa* (``{numa: {name: amount}}``) says otherwise. Costs come from the
    NUMA distances; the attributes carry *policy* and *scope*.
    """
    if not is_valid_policy(policy):
        raise NRTError("policy", f"one of {', '.join(POLICIES)}", policy)
    if not is_valid_scope(scope):
        raise NRTError("scope", f"one of {', '.join(SCOPES)}", scope)
    if not node_name:
        raise NRTError("node_name", "a non-empty node name", node_name)
    for source, table in (("extra_resources", extra_resources), ("available_by_numa", available_by_numa)):
        unknown = sorted(set(table or {}) - set(topo.numa_nodes))
        if unknown:
            raise NRTError(source, f"NUMA ids among {topo.numa_node_ids()}", unknown)
    zones = tuple(
        _build_zone(
            topo,
            numa,
            reserved=reserved_cpus or CPUSet(),
            extra=(extra_resources or {}).get(numa, {}),
            available=(available_by_numa or {}).get(numa, {}),
        )
        for numa in topo.numa_node_ids()
    )
    attributes = (AttributeInfo(ATTR_POLICY, policy), AttributeInfo(ATTR_SCOPE, scope))
    return NodeResourceTopology(name=node_name, zones=zones, attributes=attributes)


def _build_zone(
    topo: Topology, numa: int, *, reserved: CPUSet, extra: Mapping[str, int], available: Mapping[str, int]
) -> Zone:
    node = topo.numa_nodes[numa]
    cpus = topo.cpus_in_numa_nodes(numa) & topo.online_cpus
    amounts: dict[str, tuple[int, int]] = {CPU: (len(cpus) * 1000, len(cpus - reserved) * 1000)}
    if node.memory_bytes is not None:
        amounts["memory"] = (node.memory_bytes, node.memory_bytes)
    for size_kb in sorted(node.hugepages):
        pool = node.hugepages[size_kb]
        if pool.total > 0:
            total = pool.total * size_kb * 1024
            amounts[pool.resource_name] = (total, total)
    for name, amount in extra.items():
        if name in amounts or amount < 0:
            raise NRTError(f"extra_resources[{numa}][{name!r}]", "a new resource with an amount >= 0", amount)
        amounts[name] = (amount, amount)
    path = f"available_by_numa[{numa}]"
    resources = []
    for name, (capacity, allocatable) in amounts.items():
        avail = available.get(name, allocatable)
        if not 0 <= avail <= allocatable:
            raise NRTError(f"{path}[{name!r}]", f"an amount in 0..{allocatable} (allocatable)", avail)
        resources.append(ResourceInfo(name, capacity, allocatable, avail))
    unknown = sorted(set(available) - set(amounts))
    if unknown:
        raise NRTError(path, f"resources among {sorted(amounts)}", unknown)
    costs = tuple(CostInfo(zone_name(other), d) for other, d in sorted(node.distances.items()))
    return Zone(name=zone_name(numa), type=ZONE_TYPE_NODE, resources=tuple(resources), costs=costs)


# ----------------------------------------------------------- wire helpers
def _mapping(obj: object, path: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise NRTError(path, "an object", obj)
    return obj


def _string(d: Mapping[str, Any], key: str, path: str, *, allow_empty: bool = False) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not (value or allow_empty):
        raise NRTError(f"{path}.{key}" if path else key, "a non-empty string", value)
    return value


def _items(d: Mapping[str, Any], key: str, path: str, *, required: bool) -> list[tuple[object, str]]:
    where = f"{path}.{key}" if path else key
    value = d.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise NRTError(where, "a list", value)
    return [(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _amount(resource: str, d: Mapping[str, Any], key: str, path: str) -> int:
    where = f"{path}.{key}"
    if key not in d:
        raise NRTError(where, "a quantity (all of capacity, allocatable, available are required)")
    return parse_amount(resource, d[key], field=where)
