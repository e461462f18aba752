"""NVIDIA GPU attributes from NVML: product name, memory, UUID, driver version, compute capability.

:func:`with_nvml_attributes` overlays what NVML says on the attributes discovery read from
sysfs (:mod:`topology.gpu_attributes`): NVML is the only source of the memory size and the
CUDA compute capability of an NVIDIA GPU. It takes the NVML module as an argument
(:func:`deviceplugin.nvml.load_nvml` on a node, a stand-in in tests). A value NVML cannot
give (``NVMLError``, e.g. ``NOT_SUPPORTED``) keeps the sysfs value, or stays unknown (None);
a GPU NVML does not know is left as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from topology.model import PCIDevice, Topology

__all__ = ["nvml_attributes", "with_live_nvml", "with_nvml_attributes"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_CHARS = 64


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ask(nvml: Any, what: str, address: str, call: Callable[[], _T]) -> _T | None:
    try:
        return call()
    except nvml.NVMLError as err:
        log.info("NVML gives no %s for GPU %s: %s", what, address, err)
        return None


def _short(value: str | None) -> str | None:
    return value if value and len(value) <= _MAX_CHARS and value.isprintable() else None


def nvml_attributes(nvml: Any, dev: PCIDevice, driver_version: str | None) -> PCIDevice:
    """*dev* with the attributes NVML reports for it (NVML must be initialised)."""
    a = dev.address
    try:
        handle = nvml.nvmlDeviceGetHandleByPciBusId(a)
    except nvml.NVMLError as err:
        log.info("NVML does not know GPU %s (%s); keeping its sysfs attributes", a, err)
        return dev
    name = _ask(nvml, "product name", a, lambda: _short(_text(nvml.nvmlDeviceGetName(handle))))
    uuid = _ask(nvml, "UUID", a, lambda: _short(_text(nvml.nvmlDeviceGetUUID(handle))))
    memory = _ask(nvml, "memory size", a, lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total))
    cc = _ask(nvml, "compute capability", a, lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle))
    return dataclasses.replace(
        dev,
        product_name=name or dev.product_name,
        uuid=uuid or dev.uuid,
        memory_bytes=memory if memory and memory > 0 else dev.memory_bytes,
        driver_version=driver_version or dev.driver_version,
        compute_capability=f"{int(cc[0])}.{int(cc[1])}" if cc is not None else dev.compute_capability,
        attributes_source="nvml",
    )


def _nvidia(dev: PCIDevice, listed: Iterable[str]) -> bool:
    return dev.is_gpu and (dev.vendor == 0x10DE or dev.driver == "nvidia" or dev.address in listed)


def with_nvml_attributes(topo: Topology, nvml: Any, *, nvidia_listed: Iterable[str] = ()) -> Topology:
    """*topo* with every NVIDIA GPU's attributes taken from NVML where NVML has them."""
    listed = frozenset(nvidia_listed)
    version = _ask(
        nvml, "driver version", "(system)", lambda: _short(_text(nvml.nvmlSystemGetDriverVersion()))
    )
    devices = tuple(nvml_attributes(nvml, d, version) if _nvidia(d, listed) else d for d in topo.pci_devices)
    return dataclasses.replace(topo, pci_devices=devices)


def with_live_nvml(topo: Topology) -> Topology:
    """*topo* with NVML's attributes when this machine has NVML, else *topo* unchanged
    (the reason is logged: the ``nvidia`` extra or the driver is missing)."""
    from deviceplugin.nvml import NVMLUnavailableError, load_nvml

    if not any(d.is_gpu and d.vendor == 0x10DE for d in topo.pci_devices):
        return topo
    try:
        nvml = load_nvml()
    except NVMLUnavailableError as e:
        log.info("GPU memory and compute capability stay unknown: %s", e)
        return topo
    return with_nvml_attributes(topo, nvml)
