"""The DRA plugin's checkpoint: which claims it prepared and with what, across restarts.

A JSON file (``{"version": 1, "checksum": <crc32 of the claims text>, "claims": {uid:
record}}``) written atomically (temp file, fsync, rename, fsync of the folder). A missing
file is an empty checkpoint; a file that is too large, not JSON, of another version or
whose checksum does not match is refused with :class:`ClaimCheckpointError` naming the file
and the way out (no claim is prepared on a node whose state is unknown).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from cpumanager.atomic_file import write_atomic
from deviceplugin.errors import DevicePluginError

__all__ = ["MAX_BYTES", "ClaimCheckpointError", "load", "save"]

#: The largest checkpoint read (a node prepares at most a few hundred claims).
MAX_BYTES = 16 * 1024 * 1024
_VERSION = 1


class ClaimCheckpointError(DevicePluginError):
    """The checkpoint file cannot be used."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"DRA plugin checkpoint {path}: {detail}; drain the node's DRA pods and delete the file "
            "before restarting the node agent"
        )


def _text(claims: dict[str, Any]) -> str:
    return json.dumps(claims, sort_keys=True, separators=(",", ":"))


def load(path: Path) -> dict[str, Any]:
    """The claims recorded in *path* ({} when it does not exist)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    if len(raw) > MAX_BYTES:
        raise ClaimCheckpointError(path, f"larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ClaimCheckpointError(path, f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != _VERSION or not isinstance(doc.get("claims"), dict):
        raise ClaimCheckpointError(
            path, f'expected {{"version": {_VERSION}, "checksum": N, "claims": {{...}}}}'
        )
    claims: dict[str, Any] = doc["claims"]
    if doc.get("checksum") != zlib.crc32(_text(claims).encode()):
        raise ClaimCheckpointError(path, "checksum mismatch (the file was changed or half-written)")
    return claims


def save(path: Path, claims: dict[str, Any]) -> None:
    """Write *claims* to *path* atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": _VERSION, "checksum": zlib.crc32(_text(claims).encode()), "claims": claims}
    write_atomic(path, json.dumps(doc, sort_keys=True).encode(), what="the DRA claim checkpoint")
