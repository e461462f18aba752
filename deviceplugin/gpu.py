"""GPUs as kubelet extended resources, built from the topology model (no NVML needed).

:func:`discover_gpus` picks the GPUs of a :class:`~topology.model.Topology` (display, 3D
and accelerator class functions of a GPU vendor, or any display function that the NVIDIA
driver lists under ``<root>/proc/driver/nvidia/gpus/``) and :func:`gpu_resources` makes
one :class:`GPUResource` per vendor: ``nvidia.com/gpu``, ``amd.com/gpu``,
``gpu.intel.com/i915`` (names overridable).

* Device ids are PCI addresses (``0000:3b:00.0``); NUMA node: the kernel's ``numa_node``,
  else the node that covers the device's local CPUs, else none (no TopologyInfo).
* ``Allocate``: NVIDIA GPUs get ``/dev/nvidia<minor>`` (the minor from the driver's
  ``information`` file, line ``Device Minor:``) plus ``/dev/nvidiactl``, ``/dev/nvidia-uvm``,
  ``/dev/nvidia-uvm-tools`` and ``/dev/nvidia-modeset`` when present, and
  ``NVIDIA_VISIBLE_DEVICES``; other GPUs get their ``/dev/dri/renderD*`` nodes (``card*``
  when they have no render node; AMD also ``/dev/kfd``) and ``TOPOLET_VISIBLE_DEVICES``.
  Every answer carries the annotation ``topolet.io/gpus``.
* ``GetPreferredAllocation``: :func:`deviceplugin.gpu_allocation.preferred_allocation`
  (fewest NUMA nodes first, then link scores when links are given).
* Health: :class:`UdevGPUHealth` turns udev events into health events: ``remove`` and
  ``unbind`` make a GPU Unhealthy, ``add`` and ``bind`` make it Healthy again (a GPU that
  comes back, e.g. after a PCI reset or a driver reload, is offered again).

``root`` is where ``proc/`` and ``dev/`` are read (``/`` on a node, a snapshot in tests);
device-spec host paths are always the node's own ``/dev/...`` paths.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deviceplugin.errors import DevicePluginConfigError
from deviceplugin.gpu_allocation import GPU, GPULink, GPUTopology, preferred_allocation
from deviceplugin.resources import ContainerAllocation, Device, DeviceSpec, HealthEvent, HealthQueue
from topology.model import GPU_CLASSES, PCIDevice, Topology

__all__ = [
    "GPU_ANNOTATION",
    "NVIDIA_CONTROL_NODES",
    "VENDOR_RESOURCES",
    "GPUDevice",
    "GPUResource",
    "UdevGPUHealth",
    "discover_gpus",
    "gpu_resources",
    "nvidia_minor",
]

log = logging.getLogger(__name__)

VENDOR_RESOURCES: Mapping[str, str] = {
    "nvidia": "nvidia.com/gpu",
    "amd": "amd.com/gpu",
    "intel": "gpu.intel.com/i915",
}
NVIDIA_CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
GPU_ANNOTATION = "topolet.io/gpus"
_NVIDIA_GPUS = "proc/driver/nvidia/gpus"
_MINOR = re.compile(r"^Device Minor:\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class GPUDevice:
    """One GPU as the plugin offers it. ``nodes`` are its own host device nodes."""

    id: str
    vendor: str
    numa_node: int | None
    nodes: tuple[str, ...]
    pci: PCIDevice


def nvidia_minor(root: Path, address: str) -> int | None:
    """The driver's minor number of the GPU at ``address`` (``/dev/nvidia<minor>``), None
    when the driver does not say."""
    try:
        text = (root / _NVIDIA_GPUS / address / "information").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    m = _MINOR.search(text)
    return int(m[1]) if m else None


def _nvidia_listed(root: Path) -> frozenset[str]:
    d = root / _NVIDIA_GPUS
    return frozenset(p.name for p in d.iterdir()) if d.is_dir() else frozenset()


def _vendor(dev: PCIDevice, nvidia_listed: frozenset[str]) -> str | None:
    if dev.vendor_name is not None:
        return dev.vendor_name
    if dev.address in nvidia_listed or dev.driver == "nvidia":
        return "nvidia"  # the vendor file is missing, the driver claims the device
    return None


def _own_nodes(root: Path, dev: PCIDevice, vendor: str) -> tuple[str, ...]:
    if vendor == "nvidia":
        minor = nvidia_minor(root, dev.address)
        if minor is None:
            log.warning(
                "GPU %s: no 'Device Minor:' in %s; its /dev/nvidia<minor> node is not passed",
                dev.address,
                root / _NVIDIA_GPUS / dev.address / "information",
            )
            return ()
        return (f"/dev/nvidia{minor}",)
    render = tuple(n for n in dev.device_nodes if Path(n).name.startswith("renderD"))
    nodes = render or tuple(n for n in dev.device_nodes if Path(n).name.startswith("card"))
    return (*nodes, "/dev/kfd") if vendor == "amd" and (root / "dev/kfd").exists() else nodes


def discover_gpus(
    topology: Topology,
    *,
    root: Path | str = "/",
    predicate: Callable[[PCIDevice], bool] | None = None,
    default_vendor: str | None = None,
) -> list[GPUDevice]:
    """The GPUs of ``topology``, by PCI address. ``predicate`` widens or narrows the choice
    (e.g. any display function); a chosen device of no known vendor gets ``default_vendor``
    and is skipped when that is None."""
    root = Path(root)
    listed = _nvidia_listed(root)
    out = []
    for dev in topology.pci_devices:
        vendor = _vendor(dev, listed) if dev.class_id in GPU_CLASSES else None
        chosen = predicate(dev) if predicate is not None else vendor is not None
        vendor = vendor or default_vendor
        if not chosen or vendor is None:
            continue
        numa = dev.kernel_numa_node if dev.kernel_numa_node is not None else dev.numa_node
        out.append(GPUDevice(dev.address, vendor, numa, _own_nodes(root, dev, vendor), dev))
    return out


class GPUResource:
    """One vendor's GPUs as a kubelet resource (see the module docstring)."""

    def __init__(
        self,
        gpus: Sequence[GPUDevice],
        resource_name: str,
        *,
        root: Path | str = "/",
        links: Mapping[tuple[str, str], GPULink] | None = None,
    ) -> None:
        self._name = resource_name
        self.root = Path(root)
        self.gpus = {g.id: g for g in gpus}
        self.topology = GPUTopology([GPU(g.id, i, g.numa_node) for i, g in enumerate(gpus)], links or {})
        nvidia = any(g.vendor == "nvidia" for g in gpus)
        self.env_name = "NVIDIA_VISIBLE_DEVICES" if nvidia else "TOPOLET_VISIBLE_DEVICES"
        self.control_nodes = (
            tuple(n for n in NVIDIA_CONTROL_NODES if (self.root / n.lstrip("/")).exists()) if nvidia else ()
        )

    @property
    def resource_name(self) -> str:
        return self._name

    def subscribe(self, callback: Callable[[], None]) -> None:
        """The GPU list is fixed; health changes come from the health source."""

    def devices(self) -> list[Device]:
        return [Device(g.id, True, () if g.numa_node is None else (g.numa_node,)) for g in self.gpus.values()]

    def preferred_allocation(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        return preferred_allocation(self.topology, available, must_include, size)

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        ids = sorted(device_ids, key=list(self.gpus).index)
        nodes = [n for i in ids for n in self.gpus[i].nodes]
        specs = tuple(DeviceSpec(n, n, "rw") for n in dict.fromkeys([*nodes, *self.control_nodes]))
        joined = ",".join(ids)
        return ContainerAllocation(
            envs={self.env_name: joined}, devices=specs, annotations={GPU_ANNOTATION: joined}
        )

    def pre_start(self, device_ids: Sequence[str]) -> None:
        """Nothing to prepare."""


def gpu_resources(
    topology: Topology,
    *,
    root: Path | str = "/",
    resource_names: Mapping[str, str] | None = None,
    gpus: Iterable[GPUDevice] | None = None,
) -> list[GPUResource]:
    """One :class:`GPUResource` per vendor present, named by ``resource_names`` (vendor →
    name) over :data:`VENDOR_RESOURCES`."""
    names = {**VENDOR_RESOURCES, **(resource_names or {})}
    by_vendor: dict[str, list[GPUDevice]] = {}
    for g in gpus if gpus is not None else discover_gpus(topology, root=root):
        by_vendor.setdefault(g.vendor, []).append(g)
    if unnamed := sorted(set(by_vendor) - set(names)):
        raise DevicePluginConfigError("GPU resource name of vendor", unnamed[0], sorted(names))
    return [GPUResource(gs, names[v], root=root) for v, gs in sorted(by_vendor.items())]


class _Monitor(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class UdevGPUHealth:
    """Health of a resource's GPUs from udev events (a :class:`HealthSource`).

    ``monitor_factory(callback)`` builds the event source; by default a
    :class:`topology.udev.GPUMonitor` calling :meth:`on_udev_event`.
    """

    def __init__(
        self,
        device_ids: Iterable[str],
        *,
        monitor_factory: Callable[[Callable[[str, PCIDevice | str], None]], _Monitor] | None = None,
        maxsize: int = 1024,
    ) -> None:
        self.device_ids = frozenset(device_ids)
        self.queue = HealthQueue(maxsize)
        self._factory = monitor_factory
        self._monitor: _Monitor | None = None
        self._lock = threading.Lock()

    def on_udev_event(self, action: str, device: PCIDevice | str) -> None:
        """Turn one udev event into a health event for a GPU of ours (others are ignored)."""
        address = device if isinstance(device, str) else device.address
        if address not in self.device_ids:
            return
        if action in ("remove", "unbind"):
            self.queue.put(HealthEvent(address, False))
        elif action in ("add", "bind"):
            self.queue.put(HealthEvent(address, True))

    def start(self) -> None:
        with self._lock:
            if self._monitor is not None:
                return
            if self._factory is None:
                from topology.udev import GPUMonitor

                self._monitor = GPUMonitor(self.on_udev_event)
            else:
                self._monitor = self._factory(self.on_udev_event)
            self._monitor.start()

    def stop(self) -> None:
        with self._lock:
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()

    def get(self, timeout: float) -> HealthEvent | None:
        return self.queue.get(timeout)
