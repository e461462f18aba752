"""Errors raised by the device plugins. One hierarchy for this boundary.

Every error names the request or model field at fault and the accepted form, so that a
``GetPreferredAllocation`` failure logged by the server tells an operator what to fix.
The gRPC adapter translates these into status codes in one place; none of them
subclasses a gRPC type.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AllocationError",
    "ConfigError",
    "DevicePluginError",
    "GPUModelError",
    "InsufficientDevicesError",
    "InvalidRequestError",
    "UnknownDeviceError",
]


def _quote(ids: Iterable[str]) -> str:
    """Device ids as a bracketed, comma-separated list of quoted ids."""
    return "[" + ", ".join(repr(i) for i in ids) + "]"


class DevicePluginError(Exception):
    """Base class of device-plugin errors."""


class ConfigError(DevicePluginError):
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


class AllocationError(DevicePluginError):
    """A preferred-allocation request cannot be answered.

    ``field`` is the name of the ``ContainerPreferredAllocationRequest`` field at fault
    (``available_deviceIDs``, ``must_include_deviceIDs`` or ``allocation_size``).
    """

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        super().__init__(f"{field}: {detail}")


class UnknownDeviceError(AllocationError):
    """A request names device ids that the plugin does not advertise."""

    def __init__(self, field: str, unknown: Iterable[str], known: Iterable[str]) -> None:
        self.unknown = tuple(unknown)
        self.known = tuple(known)
        super().__init__(
            field,
            f"unknown device id(s) {_quote(self.unknown)}; "
            f"expected ids advertised by ListAndWatch: {_quote(self.known)}",
        )


class InvalidRequestError(AllocationError):
    """A request is malformed: duplicate ids, a non-positive size, must-include ids that
    are not available or more must-include ids than the allocation size."""


class InsufficientDevicesError(AllocationError):
    """Fewer devices are available than the allocation size, or no valid set fits."""

    def __init__(self, field: str, detail: str, *, requested: int, available: int) -> None:
        self.requested = requested
        self.available = available
        super().__init__(field, detail)
