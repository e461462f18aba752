"""The session's end-to-end cluster (see :mod:`tests.e2e.cluster`).

Needs Go to build the control plane (once; cached outside the repository). Without Go the
e2e tests are skipped and the run ends with a banner saying so; with
``TOPOLET_E2E_REQUIRED=1`` (CI) a missing Go fails them instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.build import BuildError, ensure_binaries
from tests.e2e.cluster import NODES, E2ECluster

_NO_GO = (
    "END-TO-END TESTS SKIPPED: Go is not installed, so the real etcd, kube-apiserver and "
    "kube-scheduler cannot be built. Install Go >= 1.24 and run: python tests/e2e/build.py"
)
_skipped: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.write_sep("!", "e2e", red=True, bold=True)
        terminalreporter.write_line(_skipped[0], red=True, bold=True)


@pytest.fixture(scope="session")
def e2e_bin() -> Path:
    if shutil.which("go") is None:
        if os.environ.get("TOPOLET_E2E_REQUIRED") == "1":
            pytest.fail(_NO_GO.replace("SKIPPED", "FAILED (TOPOLET_E2E_REQUIRED=1)"))
        _skipped.append(_NO_GO)
        pytest.skip(_NO_GO)
    try:
        return ensure_binaries()
    except BuildError as err:
        pytest.fail(f"building the e2e control plane failed: {err}")


@pytest.fixture(scope="session")
def cluster(
    e2e_bin: Path, hwloc_snapshot: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2ECluster]:
    roots = {name: hwloc_snapshot(snap) for name, snap in NODES.items()}
    c = E2ECluster(tmp_path_factory.mktemp("e2e-cluster"), roots, bin_dir=e2e_bin)
    try:
        c.up()
    except Exception:
        c.down()
        raise
    yield c
    c.down()
