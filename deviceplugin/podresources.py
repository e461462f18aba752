"""A thin client of kubelet's Pod Resources API v1 (gRPC adapter).

``List`` tells which running container holds which devices and exclusive CPUs;
``GetAllocatableResources`` tells what kubelet can hand out. Answers come back as typed,
frozen dataclasses. Fields that older kubelets do not send are simply empty.
Reference: shared/reference/deviceplugin.md §1.6.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from deviceplugin.api.podresources.v1 import api_pb2, api_pb2_grpc
from deviceplugin.errors import DevicePluginError
from topology.cpuset import CPUSet

__all__ = [
    "POD_RESOURCES_SOCKET",
    "AllocatableResources",
    "ContainerDevices",
    "ContainerResources",
    "PodResources",
    "PodResourcesClient",
    "PodResourcesError",
]

POD_RESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


class PodResourcesError(DevicePluginError):
    """A Pod Resources call failed (kubelet down, rate limited, ...)."""


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    resource_name: str
    device_ids: tuple[str, ...]
    numa_nodes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerResources:
    name: str
    devices: tuple[ContainerDevices, ...] = ()
    cpus: CPUSet = field(default_factory=CPUSet)


@dataclass(frozen=True, slots=True)
class PodResources:
    name: str
    namespace: str
    containers: tuple[ContainerResources, ...] = ()


@dataclass(frozen=True, slots=True)
class AllocatableResources:
    devices: tuple[ContainerDevices, ...] = ()
    cpus: CPUSet = field(default_factory=CPUSet)


def _devices(items: Any) -> tuple[ContainerDevices, ...]:
    return tuple(
        ContainerDevices(d.resource_name, tuple(d.device_ids), tuple(n.ID for n in d.topology.nodes))
        for d in items
    )


def _pod(p: Any) -> PodResources:
    return PodResources(
        p.name,
        p.namespace,
        tuple(ContainerResources(c.name, _devices(c.devices), CPUSet.of(*c.cpu_ids)) for c in p.containers),
    )


class PodResourcesClient:
    """``List`` and ``GetAllocatableResources`` over the pod-resources unix socket.

    >>> with PodResourcesClient() as client:                # doctest: +SKIP
    ...     pods = client.list()
    """

    def __init__(self, socket: Path | str = POD_RESOURCES_SOCKET, *, timeout: float = 5.0) -> None:
        self.socket = Path(socket)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix://{self.socket}")
        self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)

    def _call(self, name: str, request: Any) -> Any:
        try:
            return getattr(self._stub, name)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise PodResourcesError(
                f"podresources {name} on {self.socket} failed: {e.code().name}: {e.details()}"
            ) from e

    def list(self) -> list[PodResources]:
        """Every running pod with the devices and exclusive CPUs of its containers."""
        reply = self._call("List", api_pb2.ListPodResourcesRequest())
        return [_pod(p) for p in reply.pod_resources]

    def allocatable(self) -> AllocatableResources:
        """Healthy devices and all allocatable CPUs of the node."""
        reply = self._call("GetAllocatableResources", api_pb2.AllocatableResourcesRequest())
        return AllocatableResources(_devices(reply.devices), CPUSet.of(*reply.cpu_ids))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PodResourcesClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def device_numa_nodes(
    pods: Iterable[PodResources], namespace: str, pod_name: str, container: str
) -> frozenset[int] | None:
    """The NUMA nodes of every device (any resource) podresources lists for one container,
    or None when it holds none with a known NUMA node."""
    nodes: set[int] = set()
    for pod in pods:
        if pod.namespace != namespace or pod.name != pod_name:
            continue
        for c in pod.containers:
            if c.name == container:
                for d in c.devices:
                    nodes.update(d.numa_nodes)
    return frozenset(nodes) or None
