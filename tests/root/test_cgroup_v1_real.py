"""cgroup v1 cpuset writer on the real kernel: real processes, checked in /proc/<pid>/status."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpumanager.cgroupfs import CgroupV1Cpuset, ContainerCgroup
from topology.cpuset import CPUSet

V1 = Path("/sys/fs/cgroup/cpuset")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and (V1 / "cpuset.cpus").exists()) and not os.environ.get("CI"),
        reason="needs root and a cgroup v1 cpuset hierarchy at /sys/fs/cgroup/cpuset",
    ),
]


def allowed_list(pid: int) -> CPUSet:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return CPUSet.parse(line.split(":", 1)[1])
    raise AssertionError("no Cpus_allowed_list")


def _rm_tree(path: Path) -> None:
    for d in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        d.rmdir()
    path.rmdir()


@pytest.fixture
def v1_root() -> Iterator[Path]:
    """A private sub-hierarchy of the real cpuset cgroup, removed afterwards."""
    root = V1 / f"topolet-test-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    for name in ("cpuset.mems", "cpuset.cpus"):
        (root / name).write_text((V1 / name).read_text())
    try:
        yield root
    finally:
        _rm_tree(root)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


_EFFECTIVE = V1 / "cpuset.effective_cpus"
ALL = CPUSet.parse(_EFFECTIVE.read_text()) if _EFFECTIVE.exists() else CPUSet()


@pytest.mark.parametrize("driver", ["cgroupfs", "systemd"])
def test_pin_real_process_then_widen(v1_root: Path, sleeper: subprocess.Popen[bytes], driver: str) -> None:
    writer = CgroupV1Cpuset(v1_root, driver=driver)  # type: ignore[arg-type]
    ref = ContainerCgroup(pod_uid=str(uuid.uuid4()), container_id=uuid.uuid4().hex, qos="burstable")
    last = CPUSet.of(max(ALL))
    path = writer.ensure(ref, cpus=ALL, mems=CPUSet.of(0))
    writer.add_process(path, sleeper.pid)
    assert allowed_list(sleeper.pid) == ALL
    assert writer.write(ref, last, CPUSet.of(0)) is True
    assert allowed_list(sleeper.pid) == last
    assert writer.read(ref) == last
    assert writer.write(ref, ALL) is True
    assert allowed_list(sleeper.pid) == ALL
    # Move the process out so the cgroup can be removed.
    writer.add_process(v1_root, sleeper.pid)
    writer.remove(ref)
    assert writer.write(ref, last) is False  # vanished: not an error


def test_layout_paths_on_real_fs(v1_root: Path) -> None:
    uid = "0d3f4a7e-1b2c-4d5e-8f90-123456789abc"
    g = ContainerCgroup(pod_uid=uid, container_id="abc123", qos="guaranteed")
    b = ContainerCgroup(pod_uid=uid, container_id="abc123", qos="besteffort")
    made = CgroupV1Cpuset(v1_root).ensure(g, ALL, CPUSet.of(0))
    assert made == v1_root / "kubepods" / f"pod{uid}" / "abc123"
    sd = CgroupV1Cpuset(v1_root, driver="systemd").ensure(b, ALL, CPUSet.of(0))
    assert sd.relative_to(v1_root) == Path(
        "kubepods.slice",
        "kubepods-besteffort.slice",
        f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice",
        "cri-containerd-abc123.scope",
    )
