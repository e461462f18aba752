"""Errors raised by the device plugins. One hierarchy for this boundary.

Every error names the request or model field at fault and the accepted form, so that a
``GetPreferredAllocation`` failure logged by the server tells an operator what to fix.
The gRPC adapter translates these into status codes in one place; none of them
subclasses a gRPC type.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DeviceAllocationError",
    "DevicePluginConfigError",
    "DevicePluginError",
    "GPUModelError",
    "InsufficientDevicesError",
    "InvalidRequestError",
    "UnknownDeviceError",
    "quote_ids",
]


#: An error quotes at most this many ids, each cut to _MAX_ID_CHARS: kubelet must get the
#: reason whole, and gRPC refuses status messages beyond its metadata limit (8 KiB).
_MAX_IDS = 8
_MAX_ID_CHARS = 64


def quote_ids(ids: Iterable[str]) -> str:
    """Device ids as a bracketed, comma-separated list of quoted ids; a long list shows
    its first ids and how many more there are, a long id its start and its length."""
    shown: list[str] = []
    more = 0
    for i in ids:
        if len(shown) == _MAX_IDS:
            more += 1
            continue
        shown.append(repr(i) if len(i) <= _MAX_ID_CHARS else f"{i[:_MAX_ID_CHARS]!r}... ({len(i)} chars)")
    return "[" + ", ".join(shown) + (f", ... and {more} more" if more else "") + "]"


class DevicePluginError(Exception):
    """Base class of device-plugin errors."""


class DevicePluginConfigError(DevicePluginError):
    """A setting has a value outside its accepted set (e.g. an unknown policy name)."""

    def __init__(self, setting: str, value: str, accepted: Iterable[str]) -> None:
        self.setting = setting
        self.value = value
        self.accepted = tuple(accepted)
        super().__init__(
            f"{setting}: unknown value {value!r}; accepted values are {', '.join(self.accepted)}"
        )


class GPUModelError(DevicePluginError):
    """The GPU model handed to an allocator is inconsistent (duplicate id, bad link)."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        super().__init__(f"GPU model {field}: {detail}")


class DeviceAllocationError(DevicePluginError):
    """A preferred-allocation request cannot be answered.

    ``field`` is the name of the ``ContainerPreferredAllocationRequest`` field at fault
    (``available_deviceIDs``, ``must_include_deviceIDs`` or ``allocation_size``).
    """

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        super().__init__(f"{field}: {detail}")


class UnknownDeviceError(DeviceAllocationError):
    """A request names device ids that the plugin does not advertise."""

    def __init__(self, field: str, unknown: Iterable[str], known: Iterable[str]) -> None:
        self.unknown = tuple(unknown)
        self.known = tuple(known)
        super().__init__(
            field,
            f"unknown device id(s) {quote_ids(self.unknown)}; "
            f"expected ids advertised by ListAndWatch: {quote_ids(self.known)}",
        )


class InvalidRequestError(DeviceAllocationError):
    """A request is malformed: duplicate ids, a non-positive size, must-include ids that
    are not available or more must-include ids than the allocation size."""


class InsufficientDevicesError(DeviceAllocationError):
    """Fewer devices are available than the allocation size, or no valid set fits."""

    def __init__(self, field: str, detail: str, *, requested: int, available: int) -> None:
        self.requested = requested
        self.available = available
        super().__init__(field, detail)
