"""An 8-GPU, two-socket machine for the DRA tests: sysfs, the NVIDIA driver's procfs, NVML.

Two sockets with one NUMA node each (node 0: CPUs 0-7,16-23; node 1: 8-15,24-31) and eight
NVIDIA GPUs, two per PCIe root complex, four per node::

    node 0  pci0000:17  0000:17:00.0  0000:17:01.0   A100-SXM4-40GB  (minors 0, 1)
            pci0000:3a  0000:3a:00.0  0000:3a:01.0   A100-SXM4-80GB  (minors 2, 3)
    node 1  pci0000:86  0000:86:00.0  0000:86:01.0   A100-SXM4-40GB  (minors 4, 5)
            pci0000:b1  0000:b1:00.0  0000:b1:01.0   A100-SXM4-80GB  (minors 6, 7)

:func:`write_machine` writes the sysfs tree (via :mod:`tests.fakesysfs`), the driver's
``proc/driver/nvidia/gpus/<address>/information`` and ``version`` files, the module
version and the ``dev/nvidia*`` nodes (plain files: the tests only check they exist).
:class:`NVMLInfoStandIn` is the NVML stand-in that also answers the attribute queries
(name, UUID, memory, driver version, compute capability), as NVML does on such a machine.
No GPU is present on the machines these tests run on: this is the stand-in for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakesysfs import FakePCI, FakeSpec, write_fake_sysfs
from tests.nvml_standin import NVML_ERROR_NOT_SUPPORTED, NVMLError, NVMLStandIn

__all__ = ["DRIVER_VERSION", "GPUS", "SPEC", "FakeGPU", "NVMLInfoStandIn", "write_machine"]

DRIVER_VERSION = "535.104.05"
GiB = 2**30


@dataclass(frozen=True)
class FakeGPU:
    address: str
    numa: int
    minor: int
    product: str
    memory: int

    @property
    def uuid(self) -> str:
        return f"GPU-{self.minor:08x}-0000-4000-8000-0000000000{self.minor:02x}"

    @property
    def root(self) -> str:
        return "pci" + self.address.rsplit(":", 1)[0]


def _gpu(address: str, numa: int, minor: int, gib: int) -> FakeGPU:
    return FakeGPU(address, numa, minor, f"NVIDIA A100-SXM4-{gib}GB", gib * GiB)


GPUS: tuple[FakeGPU, ...] = (
    _gpu("0000:17:00.0", 0, 0, 40),
    _gpu("0000:17:01.0", 0, 1, 40),
    _gpu("0000:3a:00.0", 0, 2, 80),
    _gpu("0000:3a:01.0", 0, 3, 80),
    _gpu("0000:86:00.0", 1, 4, 40),
    _gpu("0000:86:01.0", 1, 5, 40),
    _gpu("0000:b1:00.0", 1, 6, 80),
    _gpu("0000:b1:01.0", 1, 7, 80),
)

SPEC = FakeSpec(
    sockets=(0, 1),
    cores_per_socket=8,
    threads_per_core=2,
    pci=(
        *(FakePCI(g.address, 0x10DE, 0x20B0, 0x030200, numa_node=g.numa, driver="nvidia") for g in GPUS),
        FakePCI("0000:18:00.0", 0x15B3, 0x101B, 0x020000, numa_node=0, driver="mlx5_core"),
    ),
)


def write_machine(root: Path, *, with_driver_files: bool = True) -> Path:
    """Write the machine under *root* and return *root*."""
    write_fake_sysfs(root, SPEC)
    if not with_driver_files:
        return root
    for g in GPUS:
        info = root / "proc/driver/nvidia/gpus" / g.address / "information"
        info.parent.mkdir(parents=True, exist_ok=True)
        info.write_text(
            f"Model: \t\t {g.product}\nIRQ:   \t\t 100\nGPU UUID: \t {g.uuid}\n"
            f"Video BIOS: \t 92.00.25.00.08\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n"
            f"Bus Location: \t {g.address}\nDevice Minor: \t {g.minor}\n"
        )
        (root / "dev").mkdir(exist_ok=True)
        (root / f"dev/nvidia{g.minor}").write_text("")
    for node in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (root / "dev" / node).write_text("")
    (root / "proc/driver/nvidia/version").write_text(
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {DRIVER_VERSION}  Sat Aug 19 01:15:15 UTC 2023\n"
        "GCC version:  gcc version 12.2.0\n"
    )
    return root


@dataclass
class _Memory:
    total: int
    free: int
    used: int


class NVMLInfoStandIn(NVMLStandIn):
    """:class:`tests.nvml_standin.NVMLStandIn` plus the attribute queries, for :data:`GPUS`.
    ``unsupported`` names queries (``"memory"``, ``"cc"``, ...) that fail ``NOT_SUPPORTED``."""

    def __init__(
        self, gpus: tuple[FakeGPU, ...] = GPUS, *, unsupported: frozenset[str] = frozenset()
    ) -> None:
        super().__init__([g.address for g in gpus])
        self.by_handle = {self.nvmlDeviceGetHandleByPciBusIdUninit(g.address): g for g in gpus}
        self.unsupported = unsupported

    @staticmethod
    def nvmlDeviceGetHandleByPciBusIdUninit(address: str) -> str:
        domain, _, rest = address.partition(":")
        return f"{int(domain, 16):08X}:{rest.upper()}"

    def _info(self, handle: Any, what: str) -> FakeGPU:
        self._handle(handle)
        if what in self.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return self.by_handle[handle]

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._info(handle, "name").product

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._info(handle, "uuid").uuid

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> _Memory:
        total = self._info(handle, "memory").memory
        return _Memory(total, total, 0)

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        self._info(handle, "cc")
        return (8, 0)

    def nvmlSystemGetDriverVersion(self) -> str:
        if "driver" in self.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return DRIVER_VERSION
