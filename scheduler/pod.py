"""The pod request model as the topology-aware fit sees it: :mod:`kube.pod`, the one pod model.

:class:`PodRequest` and :class:`ContainerRequest` are the shared model's
:class:`~kube.pod.Pod` and :class:`~kube.pod.Container` (QoS class, defaulting of requests
to limits, exclusive CPUs, init-container and sidecar counting all live there).
:func:`parse_pod` is the shared parser with its errors reported as the scheduler's
:class:`~scheduler.errors.PodSpecError`, which the extender answers with HTTP 400.
"""

from __future__ import annotations

from kube.pod import (
    MEMORY,
    Container,
    ContainerKind,
    InvalidPodError,
    Pod,
    QOSClass,
    Resources,
    is_host_level_resource,
    is_hugepages,
    is_native_resource,
)
from kube.pod import parse_pod as _parse_pod
from scheduler.errors import PodSpecError

__all__ = [
    "MEMORY",
    "ContainerKind",
    "ContainerRequest",
    "PodRequest",
    "QOSClass",
    "Resources",
    "is_host_level_resource",
    "is_hugepages",
    "is_native_resource",
    "parse_pod",
]

#: One container's requests and limits (the shared model's container).
ContainerRequest = Container
#: A pod's containers and QoS class (the shared model's pod).
PodRequest = Pod


def parse_pod(obj: object) -> PodRequest:
    """Parse a pod object (``v1.Pod`` JSON as a dict); errors name the JSON path.

    >>> pod = parse_pod({"spec": {"containers": [{"name": "a", "resources":
    ...     {"limits": {"cpu": "2", "memory": "1Gi"}}}]}})
    >>> pod.qos.value, dict(pod.effective_request())
    ('Guaranteed', {'cpu': 2000, 'memory': 1073741824})
    """
    try:
        return _parse_pod(obj)
    except InvalidPodError as e:
        raise PodSpecError(e.field, e.expected, e.given) from e
