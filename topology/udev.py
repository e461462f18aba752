"""PCI devices and GPU hot-plug events from udev (pyudev), for the live system only.

:func:`enumerate_pci` lists the PCI functions udev knows, as :class:`~topology.model.PCIDevice`
values carrying the same facts sysfs holds (address, vendor, device, class, driver, the
kernel's ``numa_node`` and ``local_cpus``). udev knows nothing of sockets or of which NUMA
node covers a device's CPUs, so ``numa_node`` and ``kernel_numa_node`` both carry the
kernel's attribute (None for ``-1``) and ``package`` is None; :func:`topology.sysfs.discover`
gives the full locality.

:class:`GPUMonitor` watches udev add/remove/change events of PCI GPUs and of their DRM
device nodes on a background thread and calls ``callback(action, device)``: a
:class:`PCIDevice` when the device can still be read, its PCI address when it is gone.
The pyudev context and monitor are constructor parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from threading import Lock

import pyudev

from topology.cpuset import CPUSet, CPUSetParseError
from topology.errors import DiscoveryError
from topology.model import PCIDevice

__all__ = ["EventCallback", "GPUMonitor", "enumerate_pci", "pci_device_from_udev"]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, "PCIDevice | str"], None]
"""``callback(action, device)``: action is udev's (``add``, ``remove``, ``change``,
``bind``, ``unbind``); device is a PCIDevice, or the PCI address when it is gone."""

#: Subsystems whose events can concern a GPU: the PCI function itself, its DRM nodes,
#: and the capability nodes of the NVIDIA driver (MIG).
GPU_SUBSYSTEMS: tuple[str, ...] = ("pci", "drm", "nvidia-caps")


def _attr_text(dev: pyudev.Device, name: str) -> str | None:
    raw = dev.attributes.get(name)
    if raw is None:
        return None
    text: str = raw.decode("ascii", "replace").replace("\x00", "").strip()
    return text


def _attr_int(dev: pyudev.Device, name: str) -> int | None:
    text = _attr_text(dev, name)
    if text is None or text == "":
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise DiscoveryError(
            Path(dev.sys_path, name), "an integer", f"udev attribute read {text[:40]!r}"
        ) from None


def _local_cpus(dev: pyudev.Device) -> CPUSet:
    mask = _attr_text(dev, "local_cpus")
    try:
        if mask is not None:
            return CPUSet.parse_mask(mask)
        cpulist = _attr_text(dev, "local_cpulist")
        return CPUSet.parse(cpulist) if cpulist is not None else CPUSet()
    except CPUSetParseError as e:
        raise DiscoveryError(
            Path(dev.sys_path, "local_cpus"), "a hex CPU mask such as 'ff,00000000'", str(e)
        ) from e


def _drm_nodes(dev: pyudev.Device) -> tuple[str, ...]:
    nodes = {child.device_node for child in dev.children if child.subsystem == "drm" and child.device_node}
    return tuple(sorted(nodes))


def pci_device_from_udev(dev: pyudev.Device) -> PCIDevice:
    """The facts of one udev PCI device. Raises DiscoveryError naming the attribute
    when one is malformed or the class is missing."""
    class_code = _attr_int(dev, "class")
    if class_code is None:
        raise DiscoveryError(Path(dev.sys_path, "class"), "a 24-bit PCI class such as 0x030200")
    numa = _attr_int(dev, "numa_node")
    kernel_numa = numa if numa is not None and numa >= 0 else None
    return PCIDevice(
        address=dev.sys_name,
        vendor=_attr_int(dev, "vendor") or 0,
        device=_attr_int(dev, "device") or 0,
        class_code=class_code,
        driver=dev.driver,
        numa_node=kernel_numa,
        package=None,
        local_cpus=_local_cpus(dev),
        device_nodes=_drm_nodes(dev),
        kernel_numa_node=kernel_numa,
    )


def enumerate_pci(context: pyudev.Context | None = None) -> list[PCIDevice]:
    """Every PCI function udev lists, sorted by address."""
    ctx = context if context is not None else pyudev.Context()
    devices = [pci_device_from_udev(d) for d in ctx.list_devices(subsystem="pci")]
    return sorted(devices, key=lambda d: d.address)


def _probe_from_properties(dev: pyudev.Device) -> PCIDevice | None:
    """Address, vendor and class from the uevent properties alone (they survive removal,
    when the sysfs attributes are gone); None when the event lacks them."""
    props = dev.properties
    pci_class, pci_id = props.get("PCI_CLASS"), props.get("PCI_ID")
    if not pci_class or not pci_id:
        return None
    try:
        return PCIDevice(dev.sys_name, int(pci_id.split(":")[0], 16), 0, int(pci_class, 16))
    except ValueError:
        return None


class GPUMonitor:
    """Calls ``callback(action, device)`` for udev events of PCI GPUs and their device nodes.

    ``source`` is ``"udev"`` (events after udevd ran its rules, so device nodes exist) or
    ``"kernel"`` (raw kernel uevents, root only, no udevd needed). ``predicate`` decides
    which readable PCI devices are reported (GPUs by default). ``start()`` and ``stop()``
    are idempotent; the monitor can be started again after a stop. A callback that raises
    is logged and the monitor keeps running.
    """

    def __init__(
        self,
        callback: EventCallback,
        *,
        context: pyudev.Context | None = None,
        monitor: pyudev.Monitor | None = None,
        source: str = "udev",
        subsystems: Iterable[str] = GPU_SUBSYSTEMS,
        predicate: Callable[[PCIDevice], bool] | None = None,
    ) -> None:
        self._callback = callback
        self._context = context
        self._monitor = monitor
        self._source = source
        self._subsystems = tuple(subsystems)
        self._predicate = predicate
        self._observer: pyudev.MonitorObserver | None = None
        self._filtered = False
        self._lock = Lock()

    @property
    def running(self) -> bool:
        return self._observer is not None

    def start(self) -> None:
        """Start watching on a daemon thread (no-op when already running)."""
        with self._lock:
            if self._observer is not None:
                return
            monitor = self._ensure_monitor()
            # Bind the netlink socket now: the observer thread would do it later, and
            # events sent between start() returning and that moment would be lost.
            monitor.start()
            observer = pyudev.MonitorObserver(monitor, callback=self._on_device, name="topolet-gpu-monitor")
            observer.daemon = True
            observer.start()
            self._observer = observer

    def stop(self) -> None:
        """Stop the thread and wait for it (no-op when not running)."""
        with self._lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()

    def _ensure_monitor(self) -> pyudev.Monitor:
        if self._monitor is None:
            ctx = self._context if self._context is not None else pyudev.Context()
            self._monitor = pyudev.Monitor.from_netlink(ctx, source=self._source)
        if not self._filtered:
            for subsystem in self._subsystems:
                self._monitor.filter_by(subsystem)
            self._filtered = True
        return self._monitor

    # ------------------------------------------------------------------ events
    def _on_device(self, dev: pyudev.Device) -> None:
        try:
            event = self._event_for(dev)
            if event is not None:
                self._callback(*event)
        except Exception:
            log.exception("udev event for %s (%s) could not be handled", dev.sys_path, dev.action)

    def _event_for(self, dev: pyudev.Device) -> tuple[str, PCIDevice | str] | None:
        action = dev.action or "change"
        pci = dev if dev.subsystem == "pci" else dev.find_parent("pci")
        if pci is None:
            return None
        if action == "remove" or not Path(pci.sys_path).exists():
            return (action, pci.sys_name) if self._wanted_gone(pci) else None
        device = pci_device_from_udev(pci)
        return (action, device) if self._wanted(device) else None

    def _wanted(self, device: PCIDevice) -> bool:
        return self._predicate(device) if self._predicate is not None else device.is_gpu

    def _wanted_gone(self, pci: pyudev.Device) -> bool:
        probe = _probe_from_properties(pci)
        return probe is not None and self._wanted(probe)
