"""hwloc sysfs snapshots (the topology conformance set) as extracted directories for tests.

The set is vendored in ``tests/conformance_data/hwloc`` (plus, when present, the outer copy
named by :func:`tests.conformance_sets.set_dirs`; a name found in both is the vendored one):
``expected/NAME.json`` describes a case and names the single top folder of
``snapshots/NAME.tar.bz2`` (``tarball_top_dir``, not always NAME); that folder is the root to
give :func:`topology.sysfs.discover`.

Use :func:`extract_snapshot` directly, or the session-scoped ``hwloc_snapshot`` fixture of
``tests/conftest.py``, which extracts each snapshot at most once per test session.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from tests.conformance_sets import VENDORED_DIR, set_dirs

__all__ = ["HWLOC_DIR", "case", "case_dir", "extract_snapshot", "snapshot_names"]

#: The vendored hwloc conformance directory (expected/, snapshots/).
HWLOC_DIR = VENDORED_DIR / "hwloc"


def _dirs_by_name() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in set_dirs("hwloc"):
        for p in sorted((d / "expected").glob("*.json")):
            found.setdefault(p.stem, d)
    return found


def snapshot_names() -> list[str]:
    """Names of every case present, sorted (one per ``expected/*.json`` of every copy)."""
    return sorted(_dirs_by_name())


def case_dir(name: str) -> Path:
    """The conformance directory holding case *name* (``expected/``, ``snapshots/``)."""
    try:
        return _dirs_by_name()[name]
    except KeyError:
        raise FileNotFoundError(2, "no hwloc case", name) from None


def case(name: str) -> dict[str, Any]:
    """The expected JSON of case *name*."""
    text = (case_dir(name) / "expected" / f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def extract_snapshot(name: str, dest: Path) -> Path:
    """Extract snapshot *name* into *dest* and return the root to discover.

    >>> root = extract_snapshot("2arm-2c", tmp_path)   # doctest: +SKIP
    >>> discover(root).num_cpus                          # doctest: +SKIP
    2
    """
    with tarfile.open(case_dir(name) / "snapshots" / f"{name}.tar.bz2") as tar:
        tar.extractall(dest, filter="data")
    root = dest / str(case(name)["tarball_top_dir"])
    if not root.is_dir():
        raise FileNotFoundError(2, "tarball_top_dir not found after extraction", str(root))
    return root
