"""hwloc sysfs snapshots (the topology conformance set) as extracted directories for tests.

The set lives in ``<repo>/../shared/conformance/hwloc``: ``expected/NAME.json`` describes a
case and names the single top folder of ``snapshots/NAME.tar.bz2`` (``tarball_top_dir``,
not always NAME); that folder is the root to give :func:`topology.sysfs.discover`.

Use :func:`extract_snapshot` directly, or the session-scoped ``hwloc_snapshot`` fixture of
``tests/conftest.py``, which extracts each snapshot at most once per test session.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

__all__ = ["HWLOC_DIR", "case", "extract_snapshot", "snapshot_names"]

#: The hwloc conformance directory (expected/, snapshots/).
HWLOC_DIR = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "hwloc"


def snapshot_names() -> list[str]:
    """Names of every case present, sorted (one per ``expected/*.json``)."""
    return sorted(p.stem for p in (HWLOC_DIR / "expected").glob("*.json"))


def case(name: str) -> dict[str, Any]:
    """The expected JSON of case *name*."""
    data: dict[str, Any] = json.loads((HWLOC_DIR / "expected" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def extract_snapshot(name: str, dest: Path) -> Path:
    """Extract snapshot *name* into *dest* and return the root to discover.

    >>> root = extract_snapshot("2arm-2c", tmp_path)   # doctest: +SKIP
    >>> discover(root).num_cpus                          # doctest: +SKIP
    2
    """
    with tarfile.open(HWLOC_DIR / "snapshots" / f"{name}.tar.bz2") as tar:
        tar.extractall(dest, filter="data")
    root = dest / str(case(name)["tarball_top_dir"])
    if not root.is_dir():
        raise FileNotFoundError(2, "tarball_top_dir not found after extraction", str(root))
    return root
