"""The checkpoint file: kubelet-written files load, ours pass kubelet's checksum, bad files are
refused with remediation text, and one process at a time owns it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cpumanager.checkpoint import CheckpointLockedError, CheckpointStore, StateCorruptedError
from cpumanager.checkpoint_format import CPUManagerCheckpoint, checksum_v2
from cpumanager.cpu_topology import CPUTopology
from cpumanager.manager import CPUManager
from cpumanager.policy_static import StaticPolicy
from tests.fakesysfs import FakeSpec, write_fake_sysfs
from topology.cpuset import CPUSet
from topology.sysfs import discover

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def topo64(tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = FakeSpec(sockets=(0, 1), cores_per_socket=16, threads_per_core=2)
    return discover(write_fake_sysfs(tmp_path / "sys64", spec))


def test_kubelet_written_checkpoint_loads_and_validates(tmp_path: Path, topo64) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cpu_manager_state"
    shutil.copy(DATA / "kubelet_cpu_manager_state", path)
    store = CheckpointStore(path, policy_name="static")
    cp = store.load()
    assert isinstance(cp, CPUManagerCheckpoint)
    assert cp.default_cpu_set == CPUSet.parse("1,3,15-31,47-63")
    centos = cp.entries["e49ac32c-22a3-4c8c-8be3-721bd1fd9eaa"]["centos"]
    assert centos == CPUSet.parse("0,2,4-14,32,34,36-46")
    policy = StaticPolicy(CPUTopology.from_topology(topo64), num_reserved_cpus=1, reserved_cpus=CPUSet.of(1))
    mgr = CPUManager(topo64, policy, store=store)
    mgr.start()  # validates: reserved ⊆ shared, no overlap, union = online
    mgr.close()
    # Re-encoded by us, byte for byte what kubelet wrote.
    assert path.read_bytes() == (DATA / "kubelet_cpu_manager_state").read_bytes()


def test_our_checksum_is_kubelets(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static")
    store.save(CPUManagerCheckpoint("static", CPUSet.parse("0-3"), {"pod": {"app": CPUSet.parse("4-5")}}))
    doc = json.loads((tmp_path / "cpu_manager_state").read_text())
    assert doc["checksum"] == checksum_v2("static", "0-3", {"pod": {"app": "4-5"}})
    store.close()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "unusable"),
        ('{"policyName":"static","defaultCpuSet":"0-3","checksum":1337}', "corrupted"),
        ('{"policyName":"static","defaultCpuSet":"0-3;x","checksum":0}', "parse"),
    ],
    ids=["garbage", "wrong-checksum", "bad-cpuset"],
)
def test_bad_checkpoint_refused_with_remediation(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "cpu_manager_state"
    path.write_text(content)
    with pytest.raises(StateCorruptedError) as err:
        CheckpointStore(path, policy_name="static").load()
    msg = str(err.value)
    assert str(path) in msg and "drain this node and delete" in msg
    assert words.lower() in msg.lower()


def test_foreign_policy_refused(tmp_path: Path) -> None:
    path = tmp_path / "cpu_manager_state"
    CheckpointStore(path, policy_name="none").save(CPUManagerCheckpoint("none", CPUSet.parse("0-3")))
    with pytest.raises(StateCorruptedError, match=r"'static'.*'none'|policy"):
        CheckpointStore(path, policy_name="static").load()


def test_second_owner_is_refused(tmp_path: Path) -> None:
    a = CheckpointStore(tmp_path / "s", policy_name="static")
    a.open()
    with pytest.raises(CheckpointLockedError, match="in use"):
        CheckpointStore(tmp_path / "s", policy_name="static").open()
    a.close()
    CheckpointStore(tmp_path / "s", policy_name="static").open()


def test_inconsistent_state_refused_at_start(tmp_path: Path, topo64) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cpu_manager_state"
    # CPU 4 is both shared and exclusive.
    bad = CPUManagerCheckpoint("static", CPUSet.parse("0-63"), {"p": {"c": CPUSet.parse("4")}})
    CheckpointStore(path, policy_name="static").save(bad)
    mgr = CPUManager(
        topo64,
        StaticPolicy(CPUTopology.from_topology(topo64), num_reserved_cpus=1),
        store=CheckpointStore(path, policy_name="static"),
    )
    with pytest.raises(Exception, match="drain this node") as err:
        mgr.start()
    assert "4" in str(err.value)
