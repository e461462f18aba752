"""Every state file topolet writes goes through one atomic writer; on a really full disk
(a 16 KiB tmpfs, filled) the error names the file, the old contents survive and no
temporary file is left behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpumanager.atomic_file import write_atomic
from cpumanager.cgroupfs import CgroupV1Cpuset
from cpumanager.standalone import StandaloneRecord, StandaloneSource

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs"),
]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path) -> None:
    fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_full_disk_names_the_file_and_keeps_the_old_contents(small_disk: Path) -> None:
    target = small_disk / "cpu_manager_state"
    write_atomic(target, b"old")
    _fill(small_disk)
    with pytest.raises(OSError) as refused:
        write_atomic(target, b"x" * 65536, what="the checkpoint")
    assert refused.value.errno == errno.ENOSPC
    assert refused.value.filename == str(target)
    assert str(target) in str(refused.value) and "the checkpoint" in str(refused.value)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in small_disk.iterdir()) == ["cpu_manager_state", "fill"]


def test_run_record_on_a_full_disk_names_its_file(small_disk: Path, tmp_path: Path) -> None:
    source = StandaloneSource(small_disk / "state", CgroupV1Cpuset(tmp_path / "cg"))
    (small_disk / "state").mkdir()
    _fill(small_disk)
    record = StandaloneRecord(
        pod_uid="0" * 8 + "-1111-2222-3333-" + "4" * 12, name="web", exclusive_cpus=1, qos="guaranteed"
    )
    with pytest.raises(OSError) as refused:
        source.add(record)
    assert refused.value.errno == errno.ENOSPC
    assert str(small_disk / "state") in str(refused.value.filename)
    assert "the run record" in str(refused.value)
    assert not any((small_disk / "state").rglob("*.json*")), "no record and no temporary file left"


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, json.dumps({"a": 1}).encode())
    write_atomic(target, json.dumps({"a": 2}).encode())
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
