"""The live kubelet oracle, one process for the whole session (see tests/oracle_client.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.oracle_client import Oracle, OracleUnavailableError, build


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    """kubelet's own code behind JSON lines; skipped loudly (or failed, in CI) without Go."""
    try:
        binary = build()
    except OracleUnavailableError as e:
        if os.environ.get("TOPOLET_REQUIRE_ORACLE") == "1":
            pytest.fail(f"kubelet oracle required (TOPOLET_REQUIRE_ORACLE=1) but unavailable: {e}")
        pytest.skip(f"SKIPPED: the kubelet differential tests need Go to build tests/oracle: {e}")
    with Oracle(binary) as o:
        yield o
