"""The one pod model: what a pod asks for, counted the way kubelet counts it (pure, no I/O).

The node (the CPU manager's pod source), the scheduler extender and the simulator all
read pods through :func:`parse_pod`, so they cannot disagree about the same pod:

* **Defaulting.** As the API server does (``SetDefaults_Pod``), a resource with a limit
  and no request gets the limit as its request, in init and app containers alike.
* **QoS class** (:func:`compute_qos`, kubelet's ``ComputePodQOS``): only ``cpu`` and
  ``memory`` count, and only amounts above zero. BestEffort when no container requests or
  limits either; Guaranteed when every container (init containers included) has a cpu
  *and* a memory limit and, summed over the pod, the requests equal the limits for the
  same set of resources; Burstable otherwise. Pod-level ``spec.resources`` (the
  ``PodLevelResources`` feature) is not modelled.
* **Exclusive CPUs** (:func:`exclusive_cpus`, the static policy's ``guaranteedCPUs``): a
  container of a Guaranteed pod whose cpu request is a whole number of CPUs (checked in
  millicores: ``977m`` gives 0) gets that many CPUs of its own; every other container
  runs on the shared pool.
* **Container kinds** (:class:`ContainerKind`): app containers; init containers, which
  run one after another and finish before the app starts, so later containers may
  reuse their CPUs; and sidecars, init containers with ``restartPolicy: Always``, which
  keep running beside everything started after them.
* **Effective request** (:meth:`Pod.effective_request`, kubelet's ``PodRequests`` and the
  static policy's ``podGuaranteedCPUs``): per resource, the larger of the peak while the
  init containers run (each init container plus the sidecars started before it) and
  the long-running total (app containers plus all sidecars).
* **Hugepages** (:attr:`Container.hugepages`, bytes per ``hugepages-<size>``) and
  **devices** (:attr:`Container.devices`, extended resources such as ``nvidia.com/gpu``).

Amounts are ints in the canonical units of :mod:`topology.quantity`: millicores for cpu,
bytes for memory and hugepages, a count for devices (fractions round up, as Kubernetes'
``Quantity.Value()`` and ``MilliValue()`` do). QoS compares these rounded amounts, so it
differs from kubelet's exact comparison only for sub-millicore cpu or sub-byte memory
quantities, which no real pod uses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from topology.hint_generators import pod_effective_request
from topology.quantity import CPU, QuantityError, parse_amount

__all__ = [
    "HUGEPAGES_PREFIX",
    "MEMORY",
    "RESTART_ALWAYS",
    "CgroupQoS",
    "Container",
    "ContainerKind",
    "InvalidPodError",
    "Pod",
    "QOSClass",
    "Resources",
    "compute_qos",
    "exclusive_cpus",
    "is_host_level_resource",
    "is_hugepages",
    "is_native_resource",
    "parse_pod",
]

MEMORY = "memory"
HUGEPAGES_PREFIX = "hugepages-"
#: An init container with this ``restartPolicy`` is a sidecar.
RESTART_ALWAYS = "Always"
#: Only these decide the QoS class (kubelet's ``supportedQoSComputeResources``).
_QOS_RESOURCES = (CPU, MEMORY)
#: Resources with no NUMA affinity of their own besides non-native ones.
_STORAGE = frozenset({"ephemeral-storage", "storage"})

#: A resource list: resource name -> amount in its canonical unit.
Resources = Mapping[str, int]
#: The QoS class as kubelet spells its cgroup (``kubepods/burstable`` …).
CgroupQoS = Literal["guaranteed", "burstable", "besteffort"]

_EMPTY: Resources = MappingProxyType({})


class InvalidPodError(ValueError):
    """A pod object is malformed. ``field`` is the JSON path, ``expected`` the accepted form."""

    def __init__(self, field: str, expected: str, given: object = None) -> None:
        self.field = field
        self.expected = expected
        self.given = given
        got = "" if given is None else f", got {given!r}"
        super().__init__(f"pod {field}: expected {expected}{got}")


class QOSClass(StrEnum):
    """Kubernetes pod QoS classes, spelled as ``status.qosClass`` spells them."""

    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"

    @property
    def cgroup(self) -> CgroupQoS:
        """The class as the cgroup hierarchy spells it (``kubepods/<this>``)."""
        if self is QOSClass.GUARANTEED:
            return "guaranteed"
        return "burstable" if self is QOSClass.BURSTABLE else "besteffort"


class ContainerKind(enum.Enum):
    """Where a container sits in its pod, which decides whether its CPUs can be reused."""

    APP = "app"
    INIT = "init"
    """A regular init container: it has finished before the app containers start."""
    SIDECAR = "sidecar"
    """A restartable init container (``restartPolicy: Always``): runs beside the app."""


def is_hugepages(name: str) -> bool:
    return name.startswith(HUGEPAGES_PREFIX)


def is_native_resource(name: str) -> bool:
    """Native: no domain prefix, or a ``kubernetes.io/`` one."""
    return "/" not in name or "kubernetes.io/" in name


def is_host_level_resource(name: str) -> bool:
    """Resources that may legitimately have no NUMA affinity: storage and non-native ones."""
    return name in _STORAGE or not is_native_resource(name)


@dataclass(frozen=True, slots=True)
class Container:
    """One container's requests and limits (canonical amounts) and its kind.

    A limit without a request defaults the request, as the API server does, whether the
    container comes from :func:`parse_pod` or is built directly.
    """

    name: str
    requests: Resources = field(default_factory=lambda: _EMPTY)
    limits: Resources = field(default_factory=lambda: _EMPTY)
    kind: ContainerKind = ContainerKind.APP

    def __post_init__(self) -> None:
        if any(name not in self.requests for name in self.limits):
            object.__setattr__(self, "requests", MappingProxyType({**self.limits, **self.requests}))

    @property
    def hugepages(self) -> Resources:
        """``hugepages-<size>`` requests above zero, in bytes."""
        return MappingProxyType({n: a for n, a in self.requests.items() if a > 0 and is_hugepages(n)})

    @property
    def devices(self) -> Resources:
        """Extended (non-native) resource requests above zero: GPUs, NICs, exclusive-CPU claims."""
        return MappingProxyType(
            {n: a for n, a in self.requests.items() if a > 0 and not is_native_resource(n)}
        )


def compute_qos(containers: Iterable[Container]) -> QOSClass:
    """kubelet's ``ComputePodQOS`` over every container of a pod, init containers included."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for c in containers:
        for name in _QOS_RESOURCES:
            if c.requests.get(name, 0) > 0:
                requests[name] = requests.get(name, 0) + c.requests[name]
        limited = 0
        for name in _QOS_RESOURCES:
            if c.limits.get(name, 0) > 0:
                limits[name] = limits.get(name, 0) + c.limits[name]
                limited += 1
        if limited < len(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return QOSClass.BEST_EFFORT
    if guaranteed and requests == limits:
        return QOSClass.GUARANTEED
    return QOSClass.BURSTABLE


def exclusive_cpus(qos: QOSClass, container: Container) -> int:
    """kubelet's ``guaranteedCPUs``: the container's whole-CPU request in a Guaranteed pod,
    else 0 (it runs on the shared pool)."""
    cpu = container.requests.get(CPU, 0)
    if qos is not QOSClass.GUARANTEED or cpu <= 0 or cpu % 1000:
        return 0
    return cpu // 1000


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod's containers, QoS class and effective request.

    >>> pod = parse_pod({"spec": {"containers": [{"name": "a", "resources":
    ...     {"limits": {"cpu": "2", "memory": "1Gi"}}}]}})
    >>> pod.qos.value, dict(pod.effective_request()), pod.exclusive_cpus("a")
    ('Guaranteed', {'cpu': 2000, 'memory': 1073741824}, 2)
    """

    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    name: str = ""
    namespace: str = ""
    uid: str = ""
    qos: QOSClass = field(init=False)
    _effective: Resources = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "qos", compute_qos(self.init_containers + self.containers))
        # the order of the old per-call sum: app containers' resources first, then init ones
        names = dict.fromkeys(n for c in self.containers + self.init_containers for n in c.requests)
        effective = {
            n: pod_effective_request(
                init=[(c.requests.get(n, 0), c.kind is ContainerKind.SIDECAR) for c in self.init_containers],
                app=[c.requests.get(n, 0) for c in self.containers],
            )
            for n in names
        }
        object.__setattr__(self, "_effective", MappingProxyType(effective))

    @property
    def guaranteed(self) -> bool:
        return self.qos is QOSClass.GUARANTEED

    def all_containers(self) -> tuple[Container, ...]:
        """Init containers first, then app containers: the order kubelet admits them in."""
        return self.init_containers + self.containers

    def container(self, name: str) -> Container:
        for c in self.all_containers():
            if c.name == name:
                return c
        raise KeyError(f"pod {self.namespace}/{self.name} has no container {name!r}")

    def effective_request(self) -> Resources:
        """Per resource: max(peak while init containers run, app containers + sidecars)."""
        return self._effective

    def exclusive_cpus(self, container: Container | str) -> int:
        """Exclusive CPUs of one container (:func:`exclusive_cpus` under this pod's QoS)."""
        c = self.container(container) if isinstance(container, str) else container
        return exclusive_cpus(self.qos, c)

    def pod_exclusive_cpus(self) -> int:
        """Exclusive CPUs of the whole pod, as the static policy counts them for pod-scope
        hints (``podGuaranteedCPUs``): the effective request over per-container counts."""
        return pod_effective_request(
            init=[(self.exclusive_cpus(c), c.kind is ContainerKind.SIDECAR) for c in self.init_containers],
            app=[self.exclusive_cpus(c) for c in self.containers],
        )

    def requests_non_native(self) -> bool:
        """Whether any container asks for a non-native (device, extended) resource."""
        return any(c.devices for c in self.all_containers())


# ------------------------------------------------------------------ parsing
def parse_pod(obj: object) -> Pod:
    """Build the model from a pod object (``v1.Pod`` JSON as the API server returns it,
    camelCase, as a dict); errors name the JSON path."""
    pod = _mapping(obj, "")
    meta = _mapping(pod.get("metadata", {}), "metadata")
    spec = _mapping(pod.get("spec"), "spec")
    return Pod(
        containers=_containers(spec, "containers", required=True),
        init_containers=_containers(spec, "initContainers", required=False),
        name=_opt_str(meta, "name", "metadata"),
        namespace=_opt_str(meta, "namespace", "metadata"),
        uid=_opt_str(meta, "uid", "metadata"),
    )


def _containers(spec: Mapping[str, Any], key: str, *, required: bool) -> tuple[Container, ...]:
    raw = spec.get(key)
    if raw is None and not required:
        return ()
    if not isinstance(raw, list):
        raise InvalidPodError(f"spec.{key}", "a list of containers", raw)
    init = key == "initContainers"
    return tuple(_container(c, f"spec.{key}[{i}]", init) for i, c in enumerate(raw))


def _container(obj: object, path: str, init: bool) -> Container:
    c = _mapping(obj, path)
    name = c.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidPodError(f"{path}.name", "a non-empty container name", name)
    restart = c.get("restartPolicy")
    if restart is not None and not isinstance(restart, str):
        raise InvalidPodError(f"{path}.restartPolicy", "a string such as 'Always'", restart)
    kind = ContainerKind.APP
    if init:
        kind = ContainerKind.SIDECAR if restart == RESTART_ALWAYS else ContainerKind.INIT
    res = _mapping(c.get("resources") or {}, f"{path}.resources")
    limits = _resource_list(res.get("limits"), f"{path}.resources.limits")
    requests = {**limits, **_resource_list(res.get("requests"), f"{path}.resources.requests")}
    return Container(name, MappingProxyType(requests), MappingProxyType(limits), kind)


def _resource_list(obj: object, path: str) -> dict[str, int]:
    if obj is None:
        return {}
    raw = _mapping(obj, path)
    out: dict[str, int] = {}
    for name, quantity in raw.items():
        if not isinstance(name, str) or not name:
            raise InvalidPodError(path, "resource names as non-empty strings", name)
        try:
            out[name] = parse_amount(name, quantity, field=f"{path}[{name!r}]")
        except QuantityError as e:
            raise InvalidPodError(
                e.field, "a non-negative Kubernetes quantity ('2', '500m', '1Gi')", quantity
            ) from e
    return out


def _mapping(obj: object, path: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidPodError(path or "object", "an object", obj)
    return obj


def _opt_str(d: Mapping[str, Any], key: str, path: str) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise InvalidPodError(f"{path}.{key}", "a string", value)
    return value
