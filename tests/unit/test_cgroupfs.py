"""cgroup writer: id validation, containment under the root, and v2 layout on a v2-shaped tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpumanager.cgroup_errors import CgroupError, InvalidIdentifierError
from cpumanager.cgroupfs import CgroupV2Cpuset, ContainerCgroup, validate_container_id, validate_pod_uid
from topology.cpuset import CPUSet


@pytest.mark.parametrize(
    "uid",
    ["../etc", "/abs/path", "a\x00b", "..", ".", "a/b", "", "x" * 200, "pod uid"],
    ids=["dotdot", "absolute", "nul", "dotdot-only", "dot", "slash", "empty", "too-long", "space"],
)
def test_bad_pod_uid_rejected(uid: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="pod UID"):
        validate_pod_uid(uid)


@pytest.mark.parametrize(
    "cid",
    ["../../x", "/etc/passwd", "ab\x00c", "..", "containerd://../x", "a/b"],
    ids=["dotdot", "absolute", "nul", "dotdot-only", "scheme-dotdot", "slash"],
)
def test_bad_container_id_rejected(cid: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="container id"):
        validate_container_id(cid)


def test_runtime_prefix_stripped() -> None:
    assert validate_container_id("containerd://0123abcd") == "0123abcd"


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "kubepods").symlink_to(outside)
    writer = CgroupV2Cpuset(root)
    ref = ContainerCgroup(pod_uid="u1", container_id="c1")
    with pytest.raises(InvalidIdentifierError, match="under"):
        writer.write(ref, CPUSet.of(0))
    assert list(outside.iterdir()) == []


def _v2_tree(root: Path) -> None:
    """A tree laid out exactly as cgroup v2's root: controllers and subtree control."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cpuset.cpus.effective").write_text("0-7\n")
    (root / "cpuset.mems.effective").write_text("0-1\n")


def _mkdir_v2(path: Path) -> None:
    """What the kernel does on mkdir in cgroup v2: interface files appear."""
    for name in ("cgroup.procs", "cgroup.subtree_control", "cpuset.cpus", "cpuset.mems"):
        (path / name).write_text("")


class FakeKernelV2(CgroupV2Cpuset):
    """Populates interface files on mkdir as the kernel would; everything else is real."""

    def _init_new(self, path: Path) -> None:
        _mkdir_v2(path)
        super()._init_new(path)


@pytest.mark.parametrize("driver", ["cgroupfs", "systemd"])
def test_v2_write_layout(tmp_path: Path, driver: str) -> None:
    _v2_tree(tmp_path)
    w = FakeKernelV2(tmp_path, driver=driver)  # type: ignore[arg-type]
    ref = ContainerCgroup(pod_uid="1234-abcd", container_id="feed", qos="burstable", runtime="crio")
    path = w.ensure(ref, CPUSet.parse("2-3"), CPUSet.of(1))
    assert (path / "cpuset.cpus").read_text() == "2-3"
    assert (path / "cpuset.mems").read_text() == "1"
    # Every ancestor enabled the cpuset controller for its children.
    for parent in list(path.relative_to(tmp_path).parents)[:-1]:
        assert "+cpuset" in (tmp_path / parent / "cgroup.subtree_control").read_text()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpuset"
    assert w.write(ref, CPUSet.parse("4-5")) is True
    assert w.read(ref) == CPUSet.parse("4-5")


def test_vanished_cgroup_is_not_an_error(tmp_path: Path) -> None:
    _v2_tree(tmp_path)
    w = CgroupV2Cpuset(tmp_path)
    assert w.write(ContainerCgroup(pod_uid="gone", container_id="c"), CPUSet.of(1)) is False


def test_empty_cpuset_refused(tmp_path: Path) -> None:
    _v2_tree(tmp_path)
    w = FakeKernelV2(tmp_path)
    ref = ContainerCgroup(pod_uid="u", container_id="c")
    w.ensure(ref, CPUSet.of(0), CPUSet.of(0))
    with pytest.raises(CgroupError, match="empty cpuset"):
        w.write(ref, CPUSet())
