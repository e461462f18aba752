"""What a device plugin serves, independent of the wire: resources and health sources (pure).

The gRPC server (:mod:`deviceplugin.server`) talks to two interfaces and knows nothing of
GPUs or CPUs:

* :class:`ResourceManager`: one extended resource (``nvidia.com/gpu``,
  ``topolet.io/exclusive-cpus``): its devices, the preferred choice among them and what a
  container gets when kubelet allocates some of them;
* :class:`HealthSource`: a stream of :class:`HealthEvent` values (device id, healthy) from
  the outside world (udev, a driver), held in a bounded queue until the server reads them.

:class:`HealthQueue` is that bounded queue. It coalesces: a device has at most one pending
event (the latest), so a burst of flapping never grows the queue beyond one entry per
device, and the newest state of a device is never lost behind an older one.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = [
    "ContainerAllocation",
    "Device",
    "DeviceSpec",
    "HealthEvent",
    "HealthQueue",
    "HealthSource",
    "Mount",
    "ResourceManager",
    "allocate_request",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Device:
    """One advertised device. ``numa_nodes`` is empty when the NUMA node is unknown (kubelet
    then gets no TopologyInfo, never node -1)."""

    id: str
    healthy: bool = True
    numa_nodes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device node the container runtime exposes in the container (``permissions`` any of
    ``r``, ``w``, ``m``)."""

    container_path: str
    host_path: str
    permissions: str = "rw"


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path mounted into the container."""

    container_path: str
    host_path: str
    read_only: bool = True


def _frozen(values: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True, slots=True)
class ContainerAllocation:
    """What one container gets for the devices kubelet allocated to it."""

    envs: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    devices: tuple[DeviceSpec, ...] = ()
    mounts: tuple[Mount, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: _frozen(None))

    def __post_init__(self) -> None:
        object.__setattr__(self, "envs", _frozen(self.envs))
        object.__setattr__(self, "annotations", _frozen(self.annotations))


@runtime_checkable
class ResourceManager(Protocol):
    """One extended resource as a device plugin advertises and allocates it.

    Requests that cannot be answered raise a :class:`~deviceplugin.errors.DeviceAllocationError`
    (:class:`~deviceplugin.errors.InsufficientDevicesError` when too few devices are free);
    the server turns them into gRPC statuses.
    """

    @property
    def resource_name(self) -> str:
        """The extended resource name, ``domain/name``."""
        ...

    def devices(self) -> list[Device]:
        """The full current device list (kubelet replaces its view with every list)."""
        ...

    def preferred_allocation(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        """``size`` ids of ``available`` holding every ``must_include`` id, best first."""
        ...

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        """What a container holding ``device_ids`` gets; records the allocation if needed."""
        ...

    def pre_start(self, device_ids: Sequence[str]) -> None:
        """Prepare the devices before the container starts (may do nothing)."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever :meth:`devices` may have changed."""
        ...


@runtime_checkable
class AtomicAllocator(Protocol):
    """A resource that answers all the containers of one ``Allocate`` at once, so that a
    refused request leaves nothing allocated."""

    def allocate_all(self, requests: Sequence[Sequence[str]]) -> list[ContainerAllocation]: ...


def allocate_request(
    resource: ResourceManager, requests: Sequence[Sequence[str]]
) -> list[ContainerAllocation]:
    """What each container of one ``Allocate`` gets: all or nothing where the resource
    records allocations (:class:`AtomicAllocator`), else container by container."""
    if isinstance(resource, AtomicAllocator):
        return resource.allocate_all(requests)
    return [resource.allocate(ids) for ids in requests]


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A device turned healthy or unhealthy."""

    device_id: str
    healthy: bool


@runtime_checkable
class HealthSource(Protocol):
    """Health events of a resource's devices. ``start``/``stop`` are idempotent."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def get(self, timeout: float) -> HealthEvent | None:
        """The next event, or None after ``timeout`` seconds without one."""
        ...


class HealthQueue:
    """A bounded, coalescing queue of health events, safe across threads.

    At most ``maxsize`` devices have a pending event; a new event for a device that already
    has one replaces it (and moves to the back). When the queue is full, the oldest pending
    event is dropped with a warning.

    >>> q = HealthQueue(maxsize=4)
    >>> q.put(HealthEvent("gpu0", False)); q.put(HealthEvent("gpu0", True))
    >>> q.get(timeout=0), q.get(timeout=0)
    (HealthEvent(device_id='gpu0', healthy=True), None)
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize: got {maxsize}, expected a positive number of pending events")
        self.maxsize = maxsize
        self._pending: OrderedDict[str, HealthEvent] = OrderedDict()
        self._cond = threading.Condition()

    def put(self, event: HealthEvent) -> None:
        with self._cond:
            self._pending.pop(event.device_id, None)
            if len(self._pending) >= self.maxsize:
                dropped, _ = self._pending.popitem(last=False)
                log.warning(
                    "health queue full (%d devices pending): dropped the event of %s", self.maxsize, dropped
                )
            self._pending[event.device_id] = event
            self._cond.notify()

    def get(self, timeout: float) -> HealthEvent | None:
        with self._cond:
            if not self._pending and timeout > 0:
                self._cond.wait_for(lambda: bool(self._pending), timeout)
            if not self._pending:
                return None
            _, event = self._pending.popitem(last=False)
            return event

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)
