"""``topolet describe`` over a real checkpoint written from a real static-policy allocation
on an hwloc snapshot (2 sockets x 8 cores x 2 threads, 2048 x 2 MiB hugepages per node)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpumanager.checkpoint import CheckpointStore
from cpumanager.checkpoint_format import CPUManagerCheckpoint
from cpumanager.cpu_topology import CPUTopology
from cpumanager.policy_static import StaticPolicy
from cpumanager.state import MemoryState
from topolet import cmd_describe
from topolet.cli import CommandError
from topology.cpuset import CPUSet
from topology.sysfs import discover

SNAPSHOT = "32intel64-2p8co2t+8ve"
#: (pod UID, container, CPUs requested)
REQUESTS = [("pod-a", "app", 4), ("pod-b", "app", 2), ("pod-b", "sidecar", 1), ("pod-c", "db", 8)]


def _describe(root: Path, state_dir: Path, *extra: str, fmt: str = "json") -> None:
    parser = argparse.ArgumentParser(prog="topolet")
    cmd_describe.register(parser.add_subparsers())
    args = parser.parse_args(
        ["describe", "--root", str(root), "--state-dir", str(state_dir), "--format", fmt, *extra]
    )
    assert args.func(args) == 0


def _run(
    capsys: pytest.CaptureFixture[str], root: Path, state_dir: Path, *extra: str, fmt: str = "json"
) -> str:
    _describe(root, state_dir, *extra, fmt=fmt)
    return capsys.readouterr().out


@pytest.fixture
def root(hwloc_snapshot: Callable[[str], Path]) -> Path:
    return hwloc_snapshot(SNAPSHOT)


@pytest.fixture
def allocated(root: Path, tmp_path: Path) -> tuple[MemoryState, StaticPolicy]:
    """Allocate :data:`REQUESTS` with a static policy (1 reserved CPU, the node default)
    and save the state with the real checkpoint store in *tmp_path*."""
    policy = StaticPolicy(CPUTopology.from_topology(discover(root)), num_reserved_cpus=1)
    state = MemoryState()
    policy.start(state)
    for pod, container, n in REQUESTS:
        policy.allocate(state, pod, container, n)
    with CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static") as store:
        store.save(CPUManagerCheckpoint("static", state.get_default_cpuset(), state.assignments()))
    return state, policy


def test_json_reports_the_checkpoint(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    tmp_path: Path,
    allocated: tuple[MemoryState, StaticPolicy],
) -> None:
    state, policy = allocated
    doc: dict[str, Any] = json.loads(_run(capsys, root, tmp_path))
    assert doc["checkpoint"] == {
        "path": str(tmp_path / "cpu_manager_state"),
        "present": True,
        "valid": True,
        "problem": None,
    }
    assert doc["topology"] == {
        "cpus": 32,
        "sockets": 2,
        "numaNodes": 2,
        "threadsPerCore": 2,
        "online": "0-31",
    }
    held = CPUSet().union(*(c for cs in state.assignments().values() for c in cs.values()))
    assert doc["pools"] == {
        "online": "0-31",
        "reserved": str(policy.reserved_cpus),
        "shared": str(state.get_default_cpuset()),
        "isolated": "",
        "isolatedFree": "",
        "exclusive": str(held),
        "assignable": str(state.get_default_cpuset() - policy.reserved_cpus),
    }
    assert len(held) == sum(n for _, _, n in REQUESTS)
    socket0 = CPUSet.parse("0-7,16-23")
    rows = {(a["podUID"], a["container"]): a for a in doc["assignments"]}
    assert set(rows) == {(pod, c) for pod, c, _ in REQUESTS}
    for (pod, container), row in rows.items():
        cpus = CPUSet.parse(row["cpus"])
        assert cpus == state.get_cpuset(pod, container)
        expected_nodes = sorted({0 if cpu in socket0 else 1 for cpu in cpus})
        assert row["numaNodes"] == expected_nodes and row["sockets"] == expected_nodes


def test_json_reports_hugepages_and_fragmentation(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    tmp_path: Path,
    allocated: tuple[MemoryState, StaticPolicy],
) -> None:
    state, policy = allocated
    doc = json.loads(_run(capsys, root, tmp_path))
    two_mib = [h for h in doc["hugepages"] if h["sizeKiB"] == 2048]
    assert two_mib == [
        {"numaNode": n, "sizeKiB": 2048, "resource": "hugepages-2Mi", "total": 2048, "free": 2048}
        for n in (0, 1)
    ]
    assert {h["resource"] for h in doc["hugepages"]} == {"hugepages-2Mi", "hugepages-1Gi"}
    frag = doc["fragmentation"]
    assert frag["freeCPUs"] == len(state.get_default_cpuset() - policy.reserved_cpus) == 32 - 1 - 15
    assert 0.0 <= frag["score"] <= 1.0
    assert set(frag) >= {
        "freeWholeCores",
        "partlyFreeCores",
        "freeNUMANodes",
        "freeSockets",
        "largestNUMAFraction",
        "largestSocketFraction",
        "coreScore",
    }


def test_missing_checkpoint_shows_a_fresh_policys_pools(
    capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path
) -> None:
    doc = json.loads(_run(capsys, root, tmp_path / "empty", "--num-reserved-cpus", "2"))
    assert doc["checkpoint"]["present"] is False
    assert doc["assignments"] == []
    assert doc["pools"]["shared"] == "0-31" and doc["pools"]["exclusive"] == ""
    assert len(CPUSet.parse(doc["pools"]["reserved"])) == 2
    assert doc["fragmentation"]["freeCPUs"] == 30
    assert not (tmp_path / "empty" / "cpu_manager_state").exists()
    text = _run(capsys, root, tmp_path / "empty", fmt="table")
    assert "no checkpoint yet" in text


def test_checkpoint_that_does_not_fit_the_policy_is_flagged(
    capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path
) -> None:
    with CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static") as store:
        cp = CPUManagerCheckpoint("static", CPUSet.parse("0-15"), {"pod": {"app": CPUSet.parse("16-20")}})
        store.save(cp)
    doc = json.loads(_run(capsys, root, tmp_path))
    assert doc["checkpoint"]["valid"] is False
    assert "doesn't match with CPUs in state" in doc["checkpoint"]["problem"]


def test_corrupt_checkpoint_is_a_command_error(root: Path, tmp_path: Path) -> None:
    (tmp_path / "cpu_manager_state").write_text('{"policyName":"static","checksum":1}')
    with pytest.raises(CommandError, match="cpu_manager_state"):
        _describe(root, tmp_path)


def test_tables_list_every_assignment(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    tmp_path: Path,
    allocated: tuple[MemoryState, StaticPolicy],
) -> None:
    text = _run(capsys, root, tmp_path, fmt="table")
    for title in ("CPU pools", "exclusive assignments", "hugepages per NUMA node", "fragmentation"):
        assert title in text
    for pod, container, _ in REQUESTS:
        assert pod in text and container in text
