"""kubelet's ``cpu_manager_state`` checkpoint, case by case (``checkpoint_checksum_cases``).

Every case present is one test id. A case with ``expected_checksum`` checks the hashed
rendering and the checksum, then reads back a file written the way kubelet writes it; a
case with ``expected_error`` reads a file carrying ``stored_checksum`` and expects that
error.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cpumanager.checkpoint_format import (
    CheckpointError,
    CPUManagerCheckpoint,
    LegacyCheckpoint,
    checksum_v1,
    checksum_v2,
    decode,
    encode,
    render_v1,
    render_v2,
)
from tests.conformance.kubelet_fixtures import load_kubelet_cases
from topology.cpuset import CPUSet, CPUSetParseError

CASES: list[dict[str, Any]] = load_kubelet_cases()["checkpoint_checksum_cases"]


def _file(case: dict[str, Any], checksum: int) -> str:
    """The checkpoint as kubelet lays it out (V1 files carry no ``entries`` key when empty)."""
    doc: dict[str, Any] = {"policyName": case["policyName"], "defaultCpuSet": case["defaultCpuSet"]}
    if case["entries"]:
        doc["entries"] = case["entries"]
    doc["checksum"] = checksum
    return json.dumps(doc, separators=(",", ":"))


def _render(case: dict[str, Any]) -> tuple[str, int]:
    args = (case["policyName"], case["defaultCpuSet"], case["entries"])
    if case["format"] == "V1":
        return render_v1(*args), checksum_v1(*args)
    return render_v2(*args), checksum_v2(*args)


def _parses(text: str) -> bool:
    try:
        CPUSet.parse(text)
    except CPUSetParseError:
        return False
    return True


def _all_cpusets(case: dict[str, Any]) -> list[str]:
    values = [case["defaultCpuSet"]]
    for containers in case["entries"].values():
        values.extend(containers.values() if isinstance(containers, dict) else [containers])
    return values


CHECKSUM_CASES = [c for c in CASES if "expected_checksum" in c]
ERROR_CASES = [c for c in CASES if "expected_checksum" not in c]


@pytest.mark.parametrize("case", CHECKSUM_CASES, ids=[c["description"] for c in CHECKSUM_CASES])
def test_checksum(case: dict[str, Any]) -> None:
    rendered, checksum = _render(case)
    assert rendered == case["hashed_string"]
    assert checksum == case["expected_checksum"]
    text = _file(case, checksum)
    if not all(_parses(s) for s in _all_cpusets(case)):
        # kubelet parses the default set first, then each container's set, each with its own wording.
        default = case["defaultCpuSet"]
        want = "could not parse default cpu set" if not _parses(default) else "could not parse cpuset"
        with pytest.raises(CheckpointError) as err:
            decode(text)
        assert want in str(err.value)
        if not _parses(default):
            assert f"default cpu set {json.dumps(default)}" in str(err.value)  # quoted as Go's %q
        return
    decoded = decode(text)
    kind = LegacyCheckpoint if case["format"] == "V1" else CPUManagerCheckpoint
    assert isinstance(decoded, kind)
    assert decoded.policy_name == case["policyName"]
    assert str(decoded.default_cpu_set) == case["defaultCpuSet"]
    if isinstance(decoded, CPUManagerCheckpoint):
        got = {pod: {n: str(c) for n, c in ctrs.items()} for pod, ctrs in decoded.entries.items()}
        assert got == case["entries"]
        assert encode(decoded) == text  # written back byte for byte as kubelet writes it


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c["description"] for c in ERROR_CASES])
def test_restore_error(case: dict[str, Any]) -> None:
    with pytest.raises(CheckpointError) as err:
        decode(_file(case, case["stored_checksum"]))
    assert case["expected_error"] in str(err.value)


@pytest.mark.parametrize("fmt", ["V1", "V2"])
def test_unparsable_default_set_uses_kubelets_default_wording(fmt: str) -> None:
    base = next(c for c in CHECKSUM_CASES if c["format"] == fmt and all(_parses(s) for s in _all_cpusets(c)))
    case = {**base, "defaultCpuSet": "4-x"}
    _, checksum = _render(case)
    with pytest.raises(CheckpointError) as err:
        decode(_file(case, checksum))
    assert 'could not parse default cpu set "4-x"' in str(err.value)
