"""CDI spec files for prepared claims: one file per claim, written and removed atomically.

The spec of claim ``<uid>`` (kind ``k8s.gpu.topolet.io/claim``) holds one device per
allocated GPU, named ``<uid>-<device name>`` (the claim UID in the name: runtimes
cache specs, and two claims must never share a name). Each device's edits add its own
device nodes, the driver's control nodes (``/dev/nvidiactl`` ...), and the env variable of
its vendor (``NVIDIA_VISIBLE_DEVICES``, else ``TOPOLET_VISIBLE_DEVICES``) listing every GPU
allocated for the same request(s), UUIDs when known, so a container given several of them
sees one consistent value. The file is ``<cdi dir>/gpu.topolet.io-<uid>.json``.

``cdiVersion`` is the lowest version that allows what the spec uses, as the CDI library
demands: device node paths and env are 0.3.0, but a device name that starts with a digit
(a UID may) needs 0.5.0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpumanager.atomic_file import write_atomic

__all__ = [
    "CDI_KIND",
    "CDI_VERSION",
    "CDIDevice",
    "cdi_id",
    "claim_spec",
    "remove_spec",
    "spec_path",
    "write_spec",
]

CDI_KIND = "k8s.gpu.topolet.io/claim"
#: The oldest CDI version runtimes accept, and the one that allows names starting with a digit.
CDI_VERSION, CDI_VERSION_DIGIT_NAMES = "0.3.0", "0.5.0"


@dataclass(frozen=True, slots=True)
class CDIDevice:
    """One allocated GPU as its CDI entry needs it."""

    name: str  # the ResourceSlice device name
    requests: tuple[str, ...]
    nodes: tuple[str, ...]  # its own device nodes
    visible_id: str  # what the env variable lists for it (UUID, else PCI address)
    env_name: str


def cdi_id(uid: str, device: str) -> str:
    """The fully qualified CDI device id of *device* in claim *uid*."""
    return f"{CDI_KIND}={uid}-{device}"


def claim_spec(uid: str, devices: Sequence[CDIDevice], control_nodes: Sequence[str]) -> dict[str, Any]:
    """The CDI spec of claim *uid* (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for d in devices:
        peers = [p.visible_id for p in devices if set(p.requests) & set(d.requests) or p is d]
        nodes = dict.fromkeys([*d.nodes, *control_nodes])
        out.append(
            {
                "name": f"{uid}-{d.name}",
                "containerEdits": {
                    "env": [f"{d.env_name}={','.join(peers)}"],
                    "deviceNodes": [{"path": n} for n in nodes],
                },
            }
        )
    digit = any(d["name"][:1].isdigit() for d in out)
    return {"cdiVersion": CDI_VERSION_DIGIT_NAMES if digit else CDI_VERSION, "kind": CDI_KIND, "devices": out}


def spec_path(cdi_dir: Path, driver: str, uid: str) -> Path:
    return cdi_dir / f"{driver}-{uid}.json"


def write_spec(path: Path, spec: Mapping[str, Any]) -> None:
    """Write *spec* to *path* atomically (temp file, fsync, rename, fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(spec, indent=2, sort_keys=True).encode(), mode=0o644, what="the CDI spec")


def remove_spec(path: Path) -> bool:
    """Remove the spec file; False when it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
