"""NVIDIA GPUs through NVML: XID health events and the link table of GetPreferredAllocation.

Only used with the ``nvidia`` extra (``pip install 'topolet[nvidia]'``, the ``pynvml``
module of ``nvidia-ml-py``); :func:`load_nvml` says so when it is missing. Everything here
takes the NVML module as an argument, so the node agent passes the real one and tests pass a
stand-in with the same functions, constants and error semantics.

* :func:`discover_links`: for every pair of GPUs, the PCIe relationship NVML reports as their
  common ancestor (``nvmlDeviceGetTopologyCommonAncestor``) and the number of enabled NVLink
  lanes whose remote end is the peer's PCI bus id. On NVSwitch systems the remote end is the
  switch, so no lanes count and the score falls back to PCIe, as NVIDIA's allocator does.
* :class:`NVMLXidHealth`: a :class:`~deviceplugin.resources.HealthSource` that registers for
  critical XID (and ECC) events on every GPU and turns them into health events:

  - a GPU whose event registration fails (too old, not supported) is Unhealthy at once;
  - a critical XID not in the ignored set makes that GPU Unhealthy; the application XIDs
    13, 31, 43, 45, 68 and 109 (:data:`DEFAULT_IGNORED_XIDS`) are errors of the program on
    the GPU, not of the GPU, and are ignored;
  - an event whose GPU cannot be resolved, ``GPU_IS_LOST`` or any unexpected wait error
    makes every GPU Unhealthy; ``UNKNOWN``/``NOT_SUPPORTED``/timeouts are transient;
    ``UNINITIALIZED`` stops the watch.

  Recovery: an XID is not undone by NVML, so a GPU made Unhealthy by an XID stays so until
  the plugin restarts (after the GPU was reset). udev ``add``/``bind`` events (the other
  health source) still mark a re-attached GPU Healthy.

Device ids are PCI addresses as sysfs writes them (``0000:3b:00.0``); NVML's bus ids
(``00000000:3B:00.0``) are mapped with :func:`pci_address`.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from deviceplugin.errors import DevicePluginConfigError, DevicePluginError
from deviceplugin.gpu_allocation import MAX_NVLINKS, NVML_TOPOLOGY_LEVELS, GPULink
from deviceplugin.resources import HealthEvent, HealthQueue

__all__ = [
    "DEFAULT_IGNORED_XIDS",
    "NVMLUnavailableError",
    "NVMLXidHealth",
    "discover_links",
    "load_nvml",
    "pci_address",
]

log = logging.getLogger(__name__)

#: Application XIDs: graphics engine exception, page fault, GPU stopped processing,
#: preemptive cleanup, video processor exception, context switch timeout.
DEFAULT_IGNORED_XIDS: frozenset[int] = frozenset({13, 31, 43, 45, 68, 109})
#: NVML return codes the watch loop tells apart.
_UNINITIALIZED, _NOT_SUPPORTED, _TIMEOUT, _GPU_IS_LOST, _UNKNOWN = 1, 3, 10, 15, 999
#: NVML event types: single-bit ECC, double-bit ECC, critical XID.
_SINGLE_BIT_ECC, _DOUBLE_BIT_ECC, _XID_CRITICAL = 0x1, 0x2, 0x8


class NVMLUnavailableError(DevicePluginError):
    """NVML cannot be used here (bindings not installed, or no driver library)."""


def load_nvml() -> ModuleType:
    """The initialised ``pynvml`` module, or :class:`NVMLUnavailableError` saying why not."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        raise NVMLUnavailableError(
            "NVML: the pynvml module is not installed; install the extra: pip install 'topolet[nvidia]'"
        ) from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        raise NVMLUnavailableError(
            f"NVML: nvmlInit failed ({err}); is the NVIDIA driver installed and libnvidia-ml.so.1 "
            "on the library path?"
        ) from None
    return nvml


def pci_address(bus_id: str | bytes) -> str:
    """NVML's ``00000000:3B:00.0`` as sysfs names it: ``0000:3b:00.0``."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    domain, sep, rest = text.partition(":")
    if not sep or not rest:
        raise DevicePluginConfigError("NVML PCI bus id", repr(text), ["DDDDDDDD:BB:DD.F"])
    return f"{int(domain, 16):04x}:{rest.lower()}"


def _error_code(nvml: Any, err: BaseException) -> int | None:
    return getattr(err, "value", None) if isinstance(err, nvml.NVMLError) else None


def _nvlinks(nvml: Any, handle: Any, peer: str) -> int:
    """Enabled NVLink lanes of *handle* whose remote end is the GPU at *peer*."""
    count = 0
    for link in range(MAX_NVLINKS):
        try:
            if nvml.nvmlDeviceGetNvLinkState(handle, link) != nvml.NVML_FEATURE_ENABLED:
                continue
            remote = pci_address(nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId)
        except nvml.NVMLError:
            continue  # no such lane, or NVLink not supported on this GPU
        count += remote == peer
    return count


def discover_links(nvml: Any, addresses: Sequence[str]) -> dict[tuple[str, str], GPULink]:
    """The link between every pair of the GPUs at *addresses* (NVML must be initialised)."""
    handles = {a: nvml.nvmlDeviceGetHandleByPciBusId(a) for a in addresses}
    links: dict[tuple[str, str], GPULink] = {}
    for i, a in enumerate(addresses):
        for b in addresses[i + 1 :]:
            try:
                level = nvml.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b])
                pcie = NVML_TOPOLOGY_LEVELS.get(int(level))
            except nvml.NVMLError as err:
                log.warning("NVML has no PCIe relationship for %s-%s: %s", a, b, err)
                pcie = None
            lanes = min(_nvlinks(nvml, handles[a], b), MAX_NVLINKS)
            links[(a, b)] = GPULink(pcie, lanes)
    return links


class NVMLXidHealth:
    """Health of NVIDIA GPUs from NVML events (see the module docstring)."""

    def __init__(
        self,
        device_ids: Iterable[str],
        nvml: Any,
        *,
        ignored_xids: frozenset[int] = DEFAULT_IGNORED_XIDS,
        wait_ms: int = 500,
        maxsize: int = 1024,
    ) -> None:
        self.device_ids = tuple(device_ids)
        self.nvml = nvml
        self.ignored_xids = ignored_xids
        self.wait_ms = wait_ms
        self.queue = HealthQueue(maxsize)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def get(self, timeout: float) -> HealthEvent | None:
        return self.queue.get(timeout)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            event_set = self._register()
            self._thread = threading.Thread(
                target=self._watch, args=(event_set,), name="nvml-xid-health", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self.wait_ms / 1000 + 1)

    def _unhealthy(self, ids: Iterable[str], why: str) -> None:
        for device_id in ids:
            log.warning("GPU %s is unhealthy: %s", device_id, why)
            self.queue.put(HealthEvent(device_id, False))

    def _register(self) -> Any:
        nvml = self.nvml
        event_set = nvml.nvmlEventSetCreate()
        wanted = _XID_CRITICAL | _DOUBLE_BIT_ECC | _SINGLE_BIT_ECC
        for device_id in self.device_ids:
            try:
                handle = nvml.nvmlDeviceGetHandleByPciBusId(device_id)
                mask = nvml.nvmlDeviceGetSupportedEventTypes(handle) & wanted
                nvml.nvmlDeviceRegisterEvents(handle, mask, event_set)
            except nvml.NVMLError as err:
                why = (
                    "too old to support health checking"
                    if _error_code(nvml, err) == _NOT_SUPPORTED
                    else f"cannot watch its events: {err}"
                )
                self._unhealthy([device_id], why)
        return event_set

    def _watch(self, event_set: Any) -> None:
        nvml = self.nvml
        try:
            while not self._stop.is_set():
                try:
                    data = nvml.nvmlEventSetWait_v2(event_set, self.wait_ms)
                except nvml.NVMLError as err:
                    if not self._on_wait_error(_error_code(nvml, err), err):
                        return
                    continue
                self._on_event(data)
        finally:
            try:
                nvml.nvmlEventSetFree(event_set)
            except nvml.NVMLError as err:
                log.debug("freeing the NVML event set: %s", err)

    def _on_wait_error(self, code: int | None, err: BaseException) -> bool:
        """Handle a failed wait; False when the watch must end."""
        if code in (_TIMEOUT, _UNKNOWN, _NOT_SUPPORTED):
            return True
        if code == _UNINITIALIZED:
            log.error("NVML is no longer initialised; GPU health checking stops")
            return False
        self._unhealthy(self.device_ids, f"NVML event wait failed: {err}")
        return True

    def _on_event(self, data: Any) -> None:
        if data.eventType != _XID_CRITICAL:
            log.info("NVML event type %#x (not a critical XID) ignored", data.eventType)
            return
        xid = int(data.eventData)
        if xid in self.ignored_xids:
            log.info("application XID %d ignored", xid)
            return
        try:
            address = pci_address(self.nvml.nvmlDeviceGetPciInfo(data.device).busId)
        except (self.nvml.NVMLError, DevicePluginConfigError) as err:
            self._unhealthy(self.device_ids, f"XID {xid} on a GPU NVML cannot name ({err})")
            return
        if address in self.device_ids:
            self._unhealthy([address], f"critical XID {xid}")
        else:
            log.info("XID %d on %s, which this resource does not serve", xid, address)
