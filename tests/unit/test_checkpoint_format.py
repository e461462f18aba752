"""The ``cpu_manager_state`` format beyond kubelet's vectors: round trips, Go's JSON
quirks (case-insensitive keys, HTML escaping), legacy V1 files and every refusal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpumanager.checkpoint_format import (
    CheckpointCorruptedError,
    CheckpointError,
    CheckpointPolicyMismatchError,
    CPUManagerCheckpoint,
    LegacyCheckpoint,
    checksum_v1,
    checksum_v2,
    decode,
    encode,
    fnv1a_32,
    migrate_v1,
)
from cpumanager.errors import CPUManagerError
from topology.cpuset import CPUSet

P = CPUSet.parse


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", 0x811C9DC5, id="empty/offset-basis"),
        pytest.param(b"a", 0xE40C292C, id="a"),
        pytest.param(b"foobar", 0xBF9CF968, id="foobar"),
    ],
)
def test_fnv1a_32_vectors(data: bytes, expected: int) -> None:
    assert fnv1a_32(data) == expected


def test_encode_layout_and_omitted_entries() -> None:
    text = encode(CPUManagerCheckpoint("static", P("0-7")))
    assert (
        text
        == f'{{"policyName":"static","defaultCpuSet":"0-7","checksum":{checksum_v2("static", "0-7", {})}}}'
    )


def test_encode_escapes_like_go() -> None:
    text = encode(CPUManagerCheckpoint("a<b>&c", P("0")))
    assert '"policyName":"a\\u003cb\\u003e\\u0026c"' in text
    assert decode(text).policy_name == "a<b>&c"


def test_keys_match_case_insensitively() -> None:
    checksum = checksum_v2("none", "1-3", {})
    text = json.dumps({"POLICYNAME": "none", "defaultCPUSet": "1-3", "Checksum": checksum, "extra": 1})
    decoded = decode(text)
    assert (decoded.policy_name, str(decoded.default_cpu_set)) == ("none", "1-3")


def test_zero_checksum_means_none_was_written() -> None:
    text = json.dumps(
        {"policyName": "static", "defaultCpuSet": "4-7", "entries": {"p": {"c": "0-3"}}, "checksum": 0}
    )
    decoded = decode(text)
    assert isinstance(decoded, CPUManagerCheckpoint)
    assert decoded.entries["p"]["c"] == P("0-3")


def test_v1_file_is_read_and_migrated() -> None:
    entries = {"containerid-1": "0-1", "containerid-2": "4"}
    text = json.dumps(
        {
            "policyName": "static",
            "defaultCpuSet": "2-3,5-7",
            "entries": entries,
            "checksum": checksum_v1("static", "2-3,5-7", entries),
        }
    )
    legacy = decode(text)
    assert isinstance(legacy, LegacyCheckpoint)
    migrated = migrate_v1(legacy, {"containerid-1": ("pod-a", "app"), "containerid-2": ("pod-b", "db")})
    assert {p: {c: str(s) for c, s in m.items()} for p, m in migrated.entries.items()} == {
        "pod-a": {"app": "0-1"},
        "pod-b": {"db": "4"},
    }
    with pytest.raises(CheckpointError, match="'containerid-2' of the V1 checkpoint is unknown"):
        migrate_v1(legacy, {"containerid-1": ("pod-a", "app")})


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        pytest.param("{not json", CheckpointError, "not valid JSON", id="malformed-json"),
        pytest.param("[1, 2]", CheckpointError, "must be a JSON object", id="not-an-object"),
        pytest.param(
            '{"policyName": 3}', CheckpointError, "'policyName' must be a string", id="policy-not-string"
        ),
        pytest.param(
            '{"policyName": "none", "defaultCpuSet": "1", "checksum": -1}',
            CheckpointError,
            "unsigned 64-bit",
            id="negative-checksum",
        ),
        pytest.param(
            '{"policyName": "none", "defaultCpuSet": "1", "entries": {"p": 5}, "checksum": 0}',
            CheckpointError,
            "'entries' must map pod UID",
            id="entries-wrong-shape",
        ),
        pytest.param(
            '{"policyName": "none", "defaultCpuSet": "1", "checksum": 7}',
            CheckpointCorruptedError,
            "checkpoint is corrupted",
            id="wrong-checksum",
        ),
        pytest.param(
            '{"policyName": "none", "defaultCpuSet": "3-1", "checksum": 0}',
            CheckpointError,
            'could not parse default cpu set "3-1"',
            id="descending-default-set",
        ),
    ],
)
def test_refusals(text: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as err:
        decode(text)
    message = str(err.value)
    assert message.startswith("could not restore state from checkpoint: ")
    assert "delete the CPU manager checkpoint file 'cpu_manager_state'" in message
    assert isinstance(err.value, CPUManagerError)


def test_policy_mismatch_is_refused() -> None:
    text = encode(CPUManagerCheckpoint("other", P("1-3")))
    with pytest.raises(CheckpointPolicyMismatchError, match="configured policy 'static' differs"):
        decode(text, policy_name="static")
    assert decode(text, policy_name="other").policy_name == "other"


cpusets = st.sets(st.integers(0, 127), max_size=12).map(CPUSet)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@given(
    policy=names,
    default=cpusets,
    entries=st.dictionaries(names, st.dictionaries(names, cpusets, min_size=1, max_size=3), max_size=3),
)
def test_round_trip(policy: str, default: CPUSet, entries: dict[str, dict[str, CPUSet]]) -> None:
    text = encode(CPUManagerCheckpoint(policy, default, entries))
    decoded = decode(text)
    assert isinstance(decoded, CPUManagerCheckpoint)
    assert (decoded.policy_name, decoded.default_cpu_set) == (policy, default)
    assert {p: dict(m) for p, m in decoded.entries.items()} == entries
    assert encode(decoded) == text
