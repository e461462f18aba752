"""The node's GPUs as ``resource.k8s.io/v1`` ResourceSlices for DRA driver ``gpu.topolet.io``.

Pure: a :class:`~topology.model.Topology` (with the attributes of
:mod:`topology.gpu_attributes`) in, JSON-ready objects out.

* One pool per node, named after the node; its slices carry ``nodeName`` and
  ``pool.generation``; at most :data:`MAX_DEVICES_PER_SLICE` (128) devices per slice, so a
  larger node gets several slices with equal ``resourceSliceCount``.
* Device names: ``gpu-<pci address with ':' and '.' as '-'>`` (``gpu-0000-17-00-0``), a
  DNS label that stays the same when another GPU fails or leaves, and that
  :func:`address_of` maps back.
* Attributes, in the driver's own domain unless prefixed: ``vendor``, ``productName``,
  ``uuid``, ``pciAddress`` (strings), ``numaNode`` (int; Kubernetes 1.34 has no standard
  NUMA attribute), ``driverVersion`` and ``cudaComputeCapability`` (semver versions), and
  the standard ``resource.kubernetes.io/pcieRoot``; capacity ``memory``. An attribute
  whose value is unknown is left out (a CEL selector guards with ``"memory" in ...``);
  nothing is guessed.
* Unhealthy GPUs are left out of the slice.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from topology.model import PCIDevice, Topology

__all__ = [
    "API_VERSION",
    "DRIVER",
    "MAX_DEVICES_PER_SLICE",
    "PCIE_ROOT",
    "address_of",
    "build_resource_slices",
    "device_name",
    "gpu_numa_node",
    "numa_of_device",
    "quantity",
    "semver",
    "slice_devices",
]

API_VERSION = "resource.k8s.io/v1"
DRIVER = "gpu.topolet.io"
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
MAX_DEVICES_PER_SLICE = 128
_MAX_STRING = 64
_ADDRESS = re.compile(r"([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])")
_NAME = re.compile(r"gpu-([0-9a-f]{4,8})-([0-9a-f]{2})-([0-9a-f]{2})-([0-7])")
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def device_name(address: str) -> str:
    """``0000:17:00.0`` → ``gpu-0000-17-00-0``; ValueError for a malformed address."""
    m = _ADDRESS.fullmatch(address.lower())
    if m is None:
        raise ValueError(f"PCI address {address!r}: expected DDDD:BB:DD.F (hex)")
    return "gpu-" + "-".join(m.groups())


def address_of(name: str) -> str | None:
    """The PCI address a device name stands for, or None when it is not one of ours."""
    m = _NAME.fullmatch(name)
    return f"{m[1]}:{m[2]}:{m[3]}.{m[4]}" if m else None


def semver(text: str | None) -> str | None:
    """A semantic version (2.0) for a driver's dotted version: ``535.104.05`` →
    ``535.104.5``, ``8.0`` → ``8.0.0``; None when *text* is not 1-3 dotted numbers."""
    m = _VERSION.fullmatch(text or "")
    if m is None:
        return None
    return ".".join(str(int(part or 0)) for part in m.groups())


def quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity: ``80Gi`` when exact, else ``Mi``/``Ki``/plain."""
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def gpu_numa_node(dev: PCIDevice) -> int | None:
    """The kernel's ``numa_node`` first (what kubelet uses), else the locality's node."""
    return dev.kernel_numa_node if dev.kernel_numa_node is not None else dev.numa_node


def numa_of_device(topo: Topology, name: str) -> int | None:
    """The NUMA node of the GPU a slice device name stands for (what podresources reports
    for a claim: driver, pool, device), or None when it is not one of this node's GPUs or
    has no NUMA node. This is how a claim's GPU places exclusive CPUs."""
    address = address_of(name)
    for dev in topo.gpus():
        if dev.address == address:
            return gpu_numa_node(dev)
    return None


def _string(value: str | None) -> dict[str, str] | None:
    return {"string": value} if value and len(value) <= _MAX_STRING else None


def _device(dev: PCIDevice) -> dict[str, Any]:
    numa = gpu_numa_node(dev)
    version, cc = semver(dev.driver_version), semver(dev.compute_capability)
    candidates: dict[str, dict[str, Any] | None] = {
        "vendor": _string(dev.vendor_name),
        "productName": _string(dev.product_name),
        "uuid": _string(dev.uuid),
        "pciAddress": _string(dev.address),
        "numaNode": {"int": numa} if numa is not None else None,
        "driverVersion": {"version": version} if version else None,
        "cudaComputeCapability": {"version": cc} if cc else None,
        PCIE_ROOT: _string(dev.pcie_root),
    }
    out: dict[str, Any] = {
        "name": device_name(dev.address),
        "attributes": {k: v for k, v in candidates.items() if v is not None},
    }
    if dev.memory_bytes:
        out["capacity"] = {"memory": {"value": quantity(dev.memory_bytes)}}
    return out


def slice_devices(gpus: Sequence[PCIDevice], unhealthy: Collection[str] = ()) -> list[dict[str, Any]]:
    """The slice entries of the healthy GPUs among *gpus*, by PCI address."""
    return [_device(d) for d in sorted(gpus, key=lambda d: d.address) if d.address not in unhealthy]


def build_resource_slices(
    topo: Topology,
    *,
    node_name: str,
    generation: int = 1,
    unhealthy: Collection[str] = (),
    node_uid: str | None = None,
    driver: str = DRIVER,
) -> list[dict[str, Any]]:
    """The ResourceSlice objects of this node's pool (at least one, maybe with no devices).

    Names are left to the API server (``generateName: <node>-<driver>-``); with
    *node_uid* each slice is owned by its Node, so deleting the node deletes them.
    """
    if not _DNS_SUBDOMAIN.fullmatch(node_name):
        raise ValueError(
            f"node name {node_name[:80]!r}: expected a DNS subdomain (a-z, 0-9, '-', '.'; at most 253)"
        )
    devices = slice_devices(topo.gpus(), unhealthy)
    chunks = [devices[i : i + MAX_DEVICES_PER_SLICE] for i in range(0, len(devices), MAX_DEVICES_PER_SLICE)]
    chunks = chunks or [[]]
    meta: dict[str, Any] = {"generateName": f"{node_name}-{driver}-"}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ResourceSlice",
            "metadata": dict(meta),
            "spec": {
                "driver": driver,
                "pool": {"name": node_name, "generation": generation, "resourceSliceCount": len(chunks)},
                "nodeName": node_name,
                "devices": chunk,
            },
        }
        for chunk in chunks
    ]
