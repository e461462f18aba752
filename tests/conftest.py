"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.snapshots import extract_snapshot


@pytest.fixture(scope="session")
def hwloc_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A function ``hwloc_snapshot(name) -> root`` giving the extracted hwloc snapshot *name*.

    Each snapshot is extracted at most once per session (into a session temp dir) and the
    same root is returned on later calls, so treat it as read-only::

        def test_two_cpus(hwloc_snapshot):
            topo = discover(hwloc_snapshot("2arm-2c"))
            assert topo.num_cpus == 2
    """
    base = tmp_path_factory.mktemp("hwloc")
    roots: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in roots:
            roots[name] = extract_snapshot(name, base / name)
        return roots[name]

    return get
