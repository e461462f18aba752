"""The pod request model: what a pod asks for, as the topology-aware fit sees it.

Parsed from a pod object exactly as the Kubernetes API serialises it (camelCase,
``spec.initContainers`` / ``spec.containers`` / ``resources.requests`` and ``.limits``).
Amounts are ints in the canonical unit of :mod:`topology.quantity` (millicores for
cpu). Like the API server, a resource with a limit but no request gets the limit as
its request. The QoS class is computed here by the standard Kubernetes rules, never
read from the object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from scheduler.errors import PodSpecError
from topology.quantity import CPU, QuantityError, parse_amount

__all__ = [
    "MEMORY",
    "ContainerRequest",
    "PodRequest",
    "QOSClass",
    "Resources",
    "is_host_level_resource",
    "is_hugepages",
    "is_native_resource",
    "parse_pod",
]

MEMORY = "memory"
#: Resources with no NUMA affinity of their own besides non-native ones.
_STORAGE = frozenset({"ephemeral-storage", "storage"})
#: Only these decide the QoS class (kubelet ``supportedQoSComputeResources``).
_QOS_RESOURCES = (CPU, MEMORY)

#: A resource list: resource name -> amount in its canonical unit.
Resources = Mapping[str, int]


class QOSClass(StrEnum):
    """Kubernetes pod QoS classes."""

    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


def is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def is_native_resource(name: str) -> bool:
    """Native: no domain prefix, or a ``kubernetes.io/`` one."""
    return "/" not in name or "kubernetes.io/" in name


def is_host_level_resource(name: str) -> bool:
    """Resources that may legitimately have no NUMA affinity: storage and non-native ones."""
    return name in _STORAGE or not is_native_resource(name)


@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """One container's requests and limits (canonical amounts)."""

    name: str
    requests: Resources = field(default_factory=lambda: MappingProxyType({}))
    limits: Resources = field(default_factory=lambda: MappingProxyType({}))

    @property
    def has_integer_cpus(self) -> bool:
        """A whole number of CPUs, request equal to limit: what the static CPU policy pins."""
        cpu = self.requests.get(CPU, 0)
        return cpu > 0 and cpu % 1000 == 0 and self.limits.get(CPU) == cpu


def _qos(containers: Iterable[ContainerRequest]) -> QOSClass:
    """Kubernetes ``GetPodQOS``: sums over all containers, only cpu and memory count."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for c in containers:
        for name in _QOS_RESOURCES:
            if c.requests.get(name, 0) > 0:
                requests[name] = requests.get(name, 0) + c.requests[name]
            if c.limits.get(name, 0) > 0:
                limits[name] = limits.get(name, 0) + c.limits[name]
        if not all(c.limits.get(name, 0) > 0 for name in _QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return QOSClass.BEST_EFFORT
    if guaranteed and requests == limits:
        return QOSClass.GUARANTEED
    return QOSClass.BURSTABLE


@dataclass(frozen=True, slots=True)
class PodRequest:
    """A pod's containers and QoS class.

    >>> pod = parse_pod({"spec": {"containers": [{"name": "a", "resources":
    ...     {"limits": {"cpu": "2", "memory": "1Gi"}}}]}})
    >>> pod.qos.value, dict(pod.effective_request())
    ('Guaranteed', {'cpu': 2000, 'memory': 1073741824})
    """

    containers: tuple[ContainerRequest, ...]
    init_containers: tuple[ContainerRequest, ...] = ()
    name: str = ""
    namespace: str = ""
    uid: str = ""
    qos: QOSClass = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "qos", _qos(self.init_containers + self.containers))

    @property
    def guaranteed(self) -> bool:
        return self.qos is QOSClass.GUARANTEED

    def all_containers(self) -> tuple[ContainerRequest, ...]:
        """Init containers first, then app containers: the order kubelet admits them in."""
        return self.init_containers + self.containers

    def effective_request(self) -> Resources:
        """Per resource, max(largest init container, sum of app containers); no overhead."""
        total: dict[str, int] = {}
        for c in self.containers:
            for name, amount in c.requests.items():
                total[name] = total.get(name, 0) + amount
        for c in self.init_containers:
            for name, amount in c.requests.items():
                total[name] = max(total.get(name, 0), amount)
        return MappingProxyType(total)

    def requests_non_native(self) -> bool:
        """Whether any container asks for a non-native (device, extended) resource."""
        return any(
            amount > 0 and not is_native_resource(name)
            for c in self.all_containers()
            for name, amount in c.requests.items()
        )


# ------------------------------------------------------------------ parsing
def parse_pod(obj: object) -> PodRequest:
    """Parse a pod object (``v1.Pod`` JSON as a dict); errors name the JSON path."""
    pod = _mapping(obj, "")
    meta = _mapping(pod.get("metadata", {}), "metadata")
    spec = _mapping(pod.get("spec"), "spec")
    return PodRequest(
        containers=_containers(spec, "containers", required=True),
        init_containers=_containers(spec, "initContainers", required=False),
        name=_opt_str(meta, "name", "metadata"),
        namespace=_opt_str(meta, "namespace", "metadata"),
        uid=_opt_str(meta, "uid", "metadata"),
    )


def _containers(spec: Mapping[str, Any], key: str, *, required: bool) -> tuple[ContainerRequest, ...]:
    raw = spec.get(key)
    if raw is None and not required:
        return ()
    if not isinstance(raw, list):
        raise PodSpecError(f"spec.{key}", "a list of containers", raw)
    return tuple(_container(c, f"spec.{key}[{i}]") for i, c in enumerate(raw))


def _container(obj: object, path: str) -> ContainerRequest:
    c = _mapping(obj, path)
    name = c.get("name")
    if not isinstance(name, str) or not name:
        raise PodSpecError(f"{path}.name", "a non-empty container name", name)
    res = _mapping(c.get("resources") or {}, f"{path}.resources")
    limits = _resource_list(res.get("limits"), f"{path}.resources.limits")
    requests = {**limits, **_resource_list(res.get("requests"), f"{path}.resources.requests")}
    return ContainerRequest(name, MappingProxyType(requests), MappingProxyType(limits))


def _resource_list(obj: object, path: str) -> dict[str, int]:
    if obj is None:
        return {}
    raw = _mapping(obj, path)
    out: dict[str, int] = {}
    for name, quantity in raw.items():
        if not isinstance(name, str) or not name:
            raise PodSpecError(path, "resource names as non-empty strings", name)
        try:
            out[name] = parse_amount(name, quantity, field=f"{path}[{name!r}]")
        except QuantityError as e:
            raise PodSpecError(
                e.field, "a non-negative Kubernetes quantity ('2', '500m', '1Gi')", quantity
            ) from e
    return out


def _mapping(obj: object, path: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise PodSpecError(path or "object", "an object", obj)
    return obj


def _opt_str(d: Mapping[str, Any], key: str, path: str) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise PodSpecError(f"{path}.{key}", "a string", value)
    return value
