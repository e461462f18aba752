"""Whose view of the machine: ``discover()`` restricts to the caller's cpuset cgroup (v1
and v2, as hwloc) and marks the rest; ``whole_machine=True`` (agent, describe) never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakesysfs import dual_socket_no_ht, write_fake_sysfs
from topology.cpuset import CPUSet
from topology.sysfs import discover


def _v2(root: Path, *, with_legacy_cpuset_file: bool) -> None:
    (root / "proc" / "self").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "self" / "cgroup").write_text("0::/agent.slice\n")
    if with_legacy_cpuset_file:  # v2-only kernels still have /proc/self/cpuset
        (root / "proc" / "self" / "cpuset").write_text("/agent.slice\n")
    (root / "proc" / "mounts").write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")
    cg = root / "sys" / "fs" / "cgroup" / "agent.slice"
    cg.mkdir(parents=True)
    (cg / "cpuset.cpus.effective").write_text("0-1\n")
    (cg / "cpuset.mems.effective").write_text("0\n")


def _v1(root: Path) -> None:
    (root / "proc" / "self").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "self" / "cpuset").write_text("/agent\n")
    (root / "proc" / "self" / "cgroup").write_text("5:cpuset:/agent\n0::/\n")
    (root / "proc" / "mounts").write_text(
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0\n"
    )
    cg = root / "sys" / "fs" / "cgroup" / "cpuset" / "agent"
    cg.mkdir(parents=True)
    (cg / "cpuset.cpus").write_text("0-1\n")
    (cg / "cpuset.mems").write_text("0\n")


@pytest.mark.parametrize("layout", ["v1", "v2", "v2-with-proc-self-cpuset"])
def test_restricted_view_for_discover_whole_machine_for_the_agent(tmp_path: Path, layout: str) -> None:
    root = write_fake_sysfs(tmp_path, dual_socket_no_ht)
    if layout == "v1":
        _v1(root)
    else:
        _v2(root, with_legacy_cpuset_file=layout.endswith("cpuset"))
    restricted = discover(root)
    assert restricted.online_cpus == CPUSet.of(0, 1)
    assert restricted.disallowed_cpus == CPUSet.range(2, 7)
    whole = discover(root, whole_machine=True)
    assert whole.online_cpus == CPUSet.range(0, 7)
    assert whole.disallowed_cpus == CPUSet()
    assert sorted(whole.numa_nodes) == [0, 1]
