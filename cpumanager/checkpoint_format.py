"""The kubelet ``cpu_manager_state`` checkpoint: encode and decode, bit-exact.

topolet reads and writes the very file kubelet keeps, so the JSON layout and the
checksum must match kubelet's byte for byte (reference/kubelet-cpumanager.md §8.1):

* keys in order ``policyName``, ``defaultCpuSet``, ``entries`` (pod UID → container
  name → cpu-list; omitted when empty), ``checksum``;
* ``checksum`` is FNV-1a 32-bit over the go-spew ``%#v`` rendering of the checkpoint
  struct with its checksum set to 0 (sorted map keys, unquoted strings);
* the legacy V1 layout mapped container ID → cpu-list; it is still read, and
  :func:`migrate_v1` turns it into the current form.

Pure: text in, values out. The atomic file writer lives in its own adapter module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cpumanager.errors import StateValidationError
from topology.cpuset import CPUSet, CPUSetParseError

__all__ = [
    "CHECKPOINT_FILE_NAME",
    "CPUManagerCheckpoint",
    "CheckpointCorruptedError",
    "CheckpointError",
    "CheckpointPolicyMismatchError",
    "LegacyCheckpoint",
    "checksum_v1",
    "checksum_v2",
    "decode",
    "encode",
    "fnv1a_32",
    "migrate_v1",
    "render_v1",
    "render_v2",
]

#: The file name kubelet uses under its root directory.
CHECKPOINT_FILE_NAME = "cpu_manager_state"

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_UINT64_MAX = (1 << 64) - 1
_PREFIX = "could not restore state from checkpoint: "
# Go's encoding/json escapes these inside strings (HTML safety, JS line separators).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")

Entries = Mapping[str, Mapping[str, CPUSet]]


class _Pairs(tuple[tuple[str, Any], ...]):
    """A decoded JSON object, as its (key, value) pairs in document order."""


class CheckpointError(StateValidationError):
    """The checkpoint cannot be restored; the message says why and how to recover."""

    def __init__(self, detail: str) -> None:
        super().__init__(_PREFIX + detail, CHECKPOINT_FILE_NAME)


class CheckpointCorruptedError(CheckpointError):
    """The stored checksum does not match the content."""

    def __init__(self, stored: int, computed: int) -> None:
        self.stored = stored
        self.computed = computed
        super().__init__(f"checkpoint is corrupted (stored checksum {stored}, content hashes to {computed})")


class CheckpointPolicyMismatchError(CheckpointError):
    """The checkpoint was written under another CPU manager policy."""

    def __init__(self, configured: str, stored: str) -> None:
        self.configured = configured
        self.stored = stored
        super().__init__(f"configured policy {configured!r} differs from state checkpoint policy {stored!r}")


@dataclass(frozen=True, slots=True)
class CPUManagerCheckpoint:
    """The current (V2) checkpoint content: the shared pool and per-container CPUs."""

    policy_name: str
    default_cpu_set: CPUSet
    entries: Entries = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class LegacyCheckpoint:
    """A V1 checkpoint: CPUs keyed by container ID (runtime id, not name)."""

    policy_name: str
    default_cpu_set: CPUSet
    entries: Mapping[str, CPUSet] = field(default_factory=lambda: MappingProxyType({}))


# ----------------------------------------------------------------------------- checksum


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash of *data*."""
    h = _FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def _spew_map(items: Mapping[str, str]) -> str:
    return "map[" + " ".join(f"{k}:{items[k]}" for k in sorted(items)) + "]"


def render_v2(policy_name: str, default_cpu_set: str, entries: Mapping[str, Mapping[str, str]]) -> str:
    """The go-spew rendering kubelet hashes for a V2 checkpoint (checksum field 0)."""
    body = "map[" + " ".join(f"{pod}:{_spew_map(entries[pod])}" for pod in sorted(entries)) + "]"
    return (
        f"(*state.CPUManagerCheckpoint){{PolicyName:(string){policy_name} "
        f"DefaultCPUSet:(string){default_cpu_set} "
        f"Entries:(map[string]map[string]string){body} Checksum:(checksum.Checksum)0}}"
    )


def render_v1(policy_name: str, default_cpu_set: str, entries: Mapping[str, str]) -> str:
    """The rendering hashed for a V1 checkpoint (type name rewritten to the V2 one)."""
    return (
        f"(*state.CPUManagerCheckpoint){{PolicyName:(string){policy_name} "
        f"DefaultCPUSet:(string){default_cpu_set} "
        f"Entries:(map[string]string){_spew_map(entries)} Checksum:(checksum.Checksum)0}}"
    )


def checksum_v2(policy_name: str, default_cpu_set: str, entries: Mapping[str, Mapping[str, str]]) -> int:
    """kubelet's checksum of a V2 checkpoint, over the strings as stored."""
    return fnv1a_32(render_v2(policy_name, default_cpu_set, entries).encode())


def checksum_v1(policy_name: str, default_cpu_set: str, entries: Mapping[str, str]) -> int:
    """kubelet's checksum of a V1 checkpoint, over the strings as stored."""
    return fnv1a_32(render_v1(policy_name, default_cpu_set, entries).encode())


# ----------------------------------------------------------------------------- encode


def _go_json(value: object) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text)


def encode(checkpoint: CPUManagerCheckpoint) -> str:
    """The checkpoint as kubelet writes it: compact JSON with a valid checksum."""
    raw = {
        pod: {name: str(cpus) for name, cpus in sorted(containers.items())}
        for pod, containers in sorted(checkpoint.entries.items())
    }
    default = str(checkpoint.default_cpu_set)
    doc: dict[str, object] = {"policyName": checkpoint.policy_name, "defaultCpuSet": default}
    if raw:
        doc["entries"] = raw
    doc["checksum"] = checksum_v2(checkpoint.policy_name, default, raw)
    return _go_json(doc)


# ----------------------------------------------------------------------------- decode

_FIELDS = {
    "policyname": "policyName",
    "defaultcpuset": "defaultCpuSet",
    "entries": "entries",
    "checksum": "checksum",
}


def _fields(text: str | bytes) -> dict[str, Any]:
    """Top-level fields, matched case-insensitively as Go does; unknown keys ignored."""
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint is not valid JSON ({e})") from e
    if not isinstance(pairs, _Pairs):
        raise CheckpointError(
            "checkpoint must be a JSON object with policyName, defaultCpuSet, entries, checksum"
        )
    found: dict[str, Any] = {}
    for key, value in pairs:
        name = _FIELDS.get(key.lower())
        if name is not None and value is not None:
            found[name] = value
    return found


def _string(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name, "")
    if not isinstance(value, str):
        raise CheckpointError(f"field {name!r} must be a string (a cpu-list such as '0-3,8'), got {value!r}")
    return value


def _checksum(fields: Mapping[str, Any]) -> int:
    value = fields.get("checksum", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT64_MAX:
        raise CheckpointError(f"field 'checksum' must be an unsigned 64-bit integer, got {value!r}")
    return value


def _string_map(value: object) -> dict[str, str] | None:
    if isinstance(value, _Pairs) and all(isinstance(v, str) for _, v in value):
        return dict(value)
    return None


def _entries_v2(value: object) -> dict[str, dict[str, str]] | None:
    if not isinstance(value, _Pairs):
        return None
    out: dict[str, dict[str, str]] = {}
    for pod, containers in value:
        inner = {} if containers is None else _string_map(containers)
        if inner is None:
            return None
        out[pod] = inner
    return out


def _verify(stored: int, computed: int) -> bool:
    return stored == 0 or stored == computed  # 0: written without a checksum


def _q(text: str) -> str:
    """*text* double-quoted as kubelet's messages quote it (Go's %q)."""
    return json.dumps(text, ensure_ascii=False)


def _parse(text: str, what: str) -> CPUSet:
    try:
        return CPUSet.parse(text)
    except CPUSetParseError as e:
        raise CheckpointError(f"could not parse {what}: {e}") from e


def decode(text: str | bytes, *, policy_name: str | None = None) -> CPUManagerCheckpoint | LegacyCheckpoint:
    """Read a checkpoint, verifying its checksum, as kubelet's restore does: the V1 layout
    is tried first, then V2. With *policy_name*, a checkpoint of another policy is refused.
    """
    fields = _fields(text)
    policy, default, stored = (
        _string(fields, "policyName"),
        _string(fields, "defaultCpuSet"),
        _checksum(fields),
    )
    raw_entries = fields.get("entries", _Pairs())
    v1 = _string_map(raw_entries)
    if v1 is not None and _verify(stored, checksum_v1(policy, default, v1)):
        return _build_v1(policy, default, v1, policy_name)
    v2 = _entries_v2(raw_entries)
    if v2 is None:
        raise CheckpointError(
            "field 'entries' must map pod UID to {container name: cpu-list}, got " + json.dumps(raw_entries)
        )
    computed = checksum_v2(policy, default, v2)
    if not _verify(stored, computed):
        raise CheckpointCorruptedError(stored, computed)
    return _build_v2(policy, default, v2, policy_name)


def _check_policy(stored: str, configured: str | None) -> None:
    if configured is not None and configured != stored:
        raise CheckpointPolicyMismatchError(configured, stored)


def _build_v1(
    policy: str, default: str, entries: Mapping[str, str], configured: str | None
) -> LegacyCheckpoint:
    _check_policy(policy, configured)
    cpus = _parse(default, f"default cpu set {_q(default)}")
    parsed = {cid: _parse(s, f"cpuset {_q(s)} for container id {_q(cid)}") for cid, s in entries.items()}
    return LegacyCheckpoint(policy, cpus, MappingProxyType(parsed))


def _build_v2(
    policy: str, default: str, entries: Mapping[str, Mapping[str, str]], configured: str | None
) -> CPUManagerCheckpoint:
    _check_policy(policy, configured)
    cpus = _parse(default, f"default cpu set {_q(default)}")
    parsed = {
        pod: MappingProxyType(
            {
                name: _parse(s, f"cpuset {_q(s)} for container {_q(name)} in pod {_q(pod)}")
                for name, s in ctrs.items()
            }
        )
        for pod, ctrs in entries.items()
    }
    return CPUManagerCheckpoint(policy, cpus, MappingProxyType(parsed))


def migrate_v1(legacy: LegacyCheckpoint, containers: Mapping[str, tuple[str, str]]) -> CPUManagerCheckpoint:
    """The V2 form of a V1 checkpoint, given the runtime's container ID → (pod UID,
    container name) map. An ID the map does not know is an error naming it."""
    entries: dict[str, dict[str, CPUSet]] = {}
    for cid, cpus in legacy.entries.items():
        if cid not in containers:
            raise CheckpointError(
                f"container id {cid!r} of the V1 checkpoint is unknown to the container runtime; "
                "cannot migrate it to pod/container form"
            )
        pod, name = containers[cid]
        entries.setdefault(pod, {})[name] = cpus
    frozen = {pod: MappingProxyType(ctrs) for pod, ctrs in entries.items()}
    return CPUManagerCheckpoint(legacy.policy_name, legacy.default_cpu_set, MappingProxyType(frozen))
