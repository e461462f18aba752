"""A stand-in for the ``pynvml`` module, for machines without an NVIDIA GPU.

It offers the functions, constants and error type topolet calls, with NVML's documented
behaviour: handles looked up by PCI bus id (4- or 8-digit domain, any case), errors as
``NVMLError`` carrying the ``nvmlReturn_t`` code in ``.value``, ``nvmlEventSetWait_v2``
blocking up to its timeout and then failing with ``NVML_ERROR_TIMEOUT``, event data with
``device``, ``eventType`` and ``eventData`` (the XID), PCI info whose ``busId`` is the
8-digit upper-case form as bytes (as older bindings return it). Tests drive it with
:meth:`NVMLStandIn.inject_xid` and :meth:`NVMLStandIn.inject_wait_error`.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

TOPOLOGY_LEVEL = {"SINGLE_BOARD": 0, "PIX": 10, "PXB": 20, "PHB": 30, "NODE": 40, "SYS": 50}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        self.value = value
        super().__init__(f"NVML error {value}")


def _key(bus_id: str | bytes) -> str:
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    domain, _, rest = text.partition(":")
    return f"{int(domain, 16):08X}:{rest.upper()}"


@dataclass
class _GPU:
    bus_id: str  # 8-digit upper-case NVML form
    lanes: list[str] = field(default_factory=list)  # remote bus id of each NVLink lane
    events: int = 0x1 | 0x2 | 0x8
    register_error: int | None = None


@dataclass
class _PciInfo:
    busId: bytes


@dataclass
class _EventData:
    device: Any
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


class NVMLStandIn:
    """One machine's GPUs, as NVML would report them."""

    NVMLError = NVMLError
    NVML_FEATURE_ENABLED = 1
    NVML_FEATURE_DISABLED = 0

    def __init__(self, addresses: list[str]) -> None:
        self.gpus = {_key(a): _GPU(_key(a)) for a in addresses}
        self.levels: dict[frozenset[str], int] = {}
        self.initialised = False
        self.events: queue.Queue[_EventData | int] = queue.Queue()
        self.freed = False

    # -------------------------------------------------------------- topology setup
    def link(self, a: str, b: str, pcie: str | None, nvlinks: int) -> None:
        if pcie is not None:
            self.levels[frozenset((_key(a), _key(b)))] = TOPOLOGY_LEVEL[pcie]
        for _ in range(nvlinks):
            self.gpus[_key(a)].lanes.append(_key(b))
            self.gpus[_key(b)].lanes.append(_key(a))

    # -------------------------------------------------------------- test drivers
    def inject_xid(self, address: str | None, xid: int, event_type: int = 0x8) -> None:
        self.events.put(_EventData(_key(address) if address else "unknown-handle", event_type, xid))

    def inject_wait_error(self, code: int) -> None:
        self.events.put(code)

    # -------------------------------------------------------------- the pynvml surface
    def nvmlInit(self) -> None:
        self.initialised = True

    def _handle(self, handle: Any) -> _GPU:
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus.get(handle) if isinstance(handle, str) else None
        if gpu is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str | bytes) -> str:
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        key = _key(bus_id)
        if key not in self.gpus:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return key

    def nvmlDeviceGetPciInfo(self, handle: Any) -> _PciInfo:
        return _PciInfo(self._handle(handle).bus_id.encode())

    def nvmlDeviceGetTopologyCommonAncestor(self, a: Any, b: Any) -> int:
        self._handle(a), self._handle(b)
        level = self.levels.get(frozenset((a, b)))
        if level is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return level

    def nvmlDeviceGetNvLinkState(self, handle: Any, link: int) -> int:
        gpu = self._handle(handle)
        if not gpu.lanes:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if link >= len(gpu.lanes):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: Any, link: int) -> _PciInfo:
        gpu = self._handle(handle)
        if link >= len(gpu.lanes):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _PciInfo(gpu.lanes[link].encode())

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        return self._handle(handle).events

    def nvmlDeviceRegisterEvents(self, handle: Any, mask: int, event_set: object) -> None:
        gpu = self._handle(handle)
        if gpu.register_error is not None:
            raise NVMLError(gpu.register_error)

    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int) -> _EventData:
        try:
            item = self.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise NVMLError(NVML_ERROR_TIMEOUT) from None
        if isinstance(item, int):
            raise NVMLError(item)
        return item

    def nvmlEventSetFree(self, event_set: object) -> None:
        self.freed = True
