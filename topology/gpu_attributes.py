"""What a GPU is, read from sysfs and procfs: product, memory, UUID, driver version, PCIe root.

:func:`with_device_attributes` fills the attribute fields of
:class:`~topology.model.PCIDevice` from files a kernel driver publishes, read through a
:class:`~topology.sysfs.SysfsReader` (so a snapshot root works as the live one):

* every PCI function: ``pcie_root``, the first element under ``sys/devices/`` of the
  resolved ``sys/bus/pci/devices/<address>`` link (``pci0000:c1``), as Kubernetes derives
  ``resource.kubernetes.io/pcieRoot``;
* NVIDIA GPUs (the ``nvidia`` driver's ``proc/driver/nvidia/gpus/<address>/information``):
  ``Model:`` → product name, ``GPU UUID:`` → UUID; driver version from
  ``sys/module/nvidia/version`` (else the ``NVRM version:`` line of
  ``proc/driver/nvidia/version``). The driver does not publish the memory size in these
  files, so without NVML it stays unknown;
* AMD GPUs (``amdgpu``): ``product_name``, ``mem_info_vram_total`` (bytes of VRAM) and
  ``unique_id`` beside the device; driver version from ``sys/module/amdgpu/version``;
* any other GPU: the driver's ``sys/module/<driver>/version`` only.

A PCI BAR (``resource`` file) is an address window, not the memory: it is never used as
one. Whatever no file says stays None ("unknown"); compute capability is only known from
NVML (:mod:`deviceplugin.nvml_info`). A value that is not printable text of at most 64
characters (the longest a ResourceSlice attribute string may be) is treated as unknown.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable

from topology.model import PCIDevice
from topology.sysfs import SysfsReader

__all__ = ["MAX_VALUE_CHARS", "pcie_root", "read_gpu_attributes", "with_device_attributes"]

#: Longest attribute value kept (the ResourceSlice limit for strings and versions).
MAX_VALUE_CHARS = 64
_NVIDIA_GPUS = "proc/driver/nvidia/gpus"
_NVRM = re.compile(r"NVRM version:.*?\s(\d+(?:\.\d+){1,3})\s")
_VALUE = re.compile(rf"[\x20-\x7e]{{1,{MAX_VALUE_CHARS}}}")
_PCI_ROOT = re.compile(r"pci[0-9a-f]{4,8}:[0-9a-f]{2}")


def _clean(value: str | None) -> str | None:
    """*value* when it is printable ASCII of 1..64 characters, else None (unknown)."""
    if value is None:
        return None
    value = value.strip()
    return value if _VALUE.fullmatch(value) else None


def pcie_root(r: SysfsReader, address: str) -> str | None:
    """``pci<domain>:<bus>`` of the root complex above the PCI function at *address*, or
    None when the link does not resolve under ``sys/devices/pci*``."""
    devices = os.path.realpath(r.path("sys/devices"))
    target = os.path.realpath(r.path(f"sys/bus/pci/devices/{address}"))
    rel = os.path.relpath(target, devices)
    first = rel.split(os.sep, 1)[0]
    return first if _PCI_ROOT.fullmatch(first) else None


def _keyed_lines(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def _module_version(r: SysfsReader, driver: str | None) -> str | None:
    if not driver or "/" in driver or driver.startswith("."):
        return None
    return _clean(r.text(f"sys/module/{driver}/version"))


def _nvidia(r: SysfsReader, dev: PCIDevice) -> PCIDevice:
    info = _keyed_lines(r.text(f"{_NVIDIA_GPUS}/{dev.address}/information"))
    version = _module_version(r, "nvidia")
    if version is None:
        m = _NVRM.search(r.text("proc/driver/nvidia/version") or "")
        version = m.group(1) if m else None
    return dataclasses.replace(
        dev,
        product_name=_clean(info.get("Model")),
        uuid=_clean(info.get("GPU UUID")),
        driver_version=version,
        attributes_source="sysfs",
    )


def _amd(r: SysfsReader, dev: PCIDevice) -> PCIDevice:
    d = f"sys/bus/pci/devices/{dev.address}"
    vram = r.integer(f"{d}/mem_info_vram_total")
    return dataclasses.replace(
        dev,
        product_name=_clean(r.text(f"{d}/product_name")),
        memory_bytes=vram if vram is not None and vram > 0 else None,
        uuid=_clean(r.text(f"{d}/unique_id")),
        driver_version=_module_version(r, dev.driver),
        attributes_source="sysfs",
    )


def _is_nvidia(r: SysfsReader, dev: PCIDevice) -> bool:
    return dev.vendor == 0x10DE or dev.driver == "nvidia" or r.exists(f"{_NVIDIA_GPUS}/{dev.address}")


def read_gpu_attributes(r: SysfsReader, dev: PCIDevice) -> PCIDevice:
    """*dev* with its PCIe root and, for a GPU, the attributes its driver publishes."""
    dev = dataclasses.replace(dev, pcie_root=pcie_root(r, dev.address))
    if not dev.is_gpu:
        return dev
    if _is_nvidia(r, dev):
        return _nvidia(r, dev)
    if dev.vendor == 0x1002 or dev.driver == "amdgpu":
        return _amd(r, dev)
    return dataclasses.replace(dev, driver_version=_module_version(r, dev.driver), attributes_source="sysfs")


def with_device_attributes(r: SysfsReader, devices: Iterable[PCIDevice]) -> list[PCIDevice]:
    """Every device of *devices* with :func:`read_gpu_attributes` applied."""
    return [read_gpu_attributes(r, d) for d in devices]
