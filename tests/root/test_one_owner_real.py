"""One owner for every CPU, on the real kernel (cgroup v1 cpuset, real processes).

* ten concurrent ``topolet run --cpus 1 --guaranteed`` with one exclusive CPU free: the
  commands that saw CPU 1 alone never ran at the same time (their own
  ``/proc/self/status``), and nothing is left behind;
* ``topolet run`` never releases an entry it did not make (a Kubernetes pod's);
* a ``kill -9`` of a run leaves an orphan (record + cgroup) that the next run removes once
  its processes are gone, and not before;
* discovery inside a cpuset holding only CPU 0 sees the whole machine for the agent and
  ``describe``, and only CPU 0 (the rest marked) for ``discover``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpumanager.checkpoint import CheckpointStore
from cpumanager.checkpoint_format import CPUManagerCheckpoint
from topology.cpuset import CPUSet

V1 = Path("/sys/fs/cgroup/cpuset")
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and (V1 / "cpuset.cpus").exists()) and not os.environ.get("CI"),
        reason="needs root and the cgroup v1 cpuset hierarchy",
    ),
]
ONLINE = CPUSet.parse(Path("/sys/devices/system/cpu/online").read_text())
LAST = max(ONLINE)


def _rmtree_cgroup(root: Path) -> None:
    if not root.exists():
        return
    for d in sorted((q for q in root.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
        d.rmdir()
    root.rmdir()


def _dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir()] if root.exists() else []


@pytest.fixture
def cg(tmp_path: Path) -> Iterator[Path]:
    root = V1 / f"topolet-test-owner-{os.getpid()}-{tmp_path.name[-8:]}"
    yield root
    _rmtree_cgroup(root)


def topolet(state: Path, cg: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "topolet", "run", "--state-dir", str(state), "--cgroup-root", str(cg), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def checkpoint(state: Path) -> dict[str, object]:
    return json.loads((state / "cpu_manager_state").read_text())  # type: ignore[no-any-return]


def owners(state: Path) -> list[dict[str, object]]:
    return json.loads((state / "cpu_manager_state.owners").read_text())["owners"]  # type: ignore[no-any-return]


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    assert check()


@pytest.mark.skipif(len(ONLINE) < 2, reason="needs two online CPUs")
def test_ten_concurrent_runs_never_share_the_exclusive_cpu(tmp_path: Path, cg: Path) -> None:
    # One exclusive CPU free: every CPU but the last is reserved.
    reserved = str(ONLINE - CPUSet.of(LAST)) or "0"
    script = (
        "echo start $(date +%s%N); grep Cpus_allowed_list /proc/self/status; sleep 1; echo end $(date +%s%N)"
    )
    procs = [
        topolet(
            tmp_path,
            cg,
            "--reserved-cpus",
            reserved,
            "--cpus",
            "1",
            "--guaranteed",
            "--name",
            f"c{i}",
            "--",
            "sh",
            "-c",
            script,
        )
        for i in range(10)
    ]
    holders: list[tuple[int, int]] = []
    refused = 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        text = out.decode()
        if p.returncode != 0:
            assert "not admitted" in err.decode(), err.decode()
            refused += 1
            continue
        lines = dict(line.split(None, 1) for line in text.splitlines() if len(line.split()) == 2)
        allowed = CPUSet.parse(lines["Cpus_allowed_list:"].strip())
        assert allowed == CPUSet.of(LAST), text
        holders.append((int(lines["start"]), int(lines["end"])))
    assert holders, "no run got the exclusive CPU"
    holders.sort()
    for (_, end), (start, _) in itertools.pairwise(holders):
        assert end <= start, f"two runs held CPU {LAST} at once: {holders}"
    assert len(holders) + refused == 10
    assert _dirs(cg) == [] or all(not (d / "tasks").read_text().strip() for d in _dirs(cg))
    assert not [d for d in _dirs(cg) if d.name.startswith("pod")], "pod cgroups left behind"
    assert list((tmp_path / "standalone").glob("*.json")) == []
    assert "entries" not in checkpoint(tmp_path)
    assert owners(tmp_path) == []


def test_run_never_releases_a_foreign_entry(tmp_path: Path, cg: Path) -> None:
    free = ONLINE - CPUSet.of(LAST)
    CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").save(
        CPUManagerCheckpoint("static", free, {"podA": {"c": CPUSet.of(LAST)}})
    )
    p = topolet(tmp_path, cg, "--reserved-cpus", "0", "--cpus", "500m", "--", "true")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    assert checkpoint(tmp_path)["entries"] == {"podA": {"c": str(LAST)}}
    (row,) = owners(tmp_path)
    assert (row["podUID"], row["kind"], row["source"]) == ("podA", "pod", "kubernetes")
    assert "recovered" in str(row["why"])


def test_overlapping_entries_are_refused_with_a_remediation(tmp_path: Path, cg: Path) -> None:
    CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").save(
        CPUManagerCheckpoint(
            "static", CPUSet.of(0), {"podA": {"c": CPUSet.of(LAST)}, "podB": {"c": CPUSet.of(LAST)}}
        )
    )
    before = (tmp_path / "cpu_manager_state").read_bytes()
    state = ["--state-dir", str(tmp_path)]
    for args in (
        ["run", *state, "--cgroup-root", str(cg), "--cpus", "1", "--", "true"],
        ["cpumanager", "status", *state],
        ["describe", *state],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "topolet", *args], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert f"CPU {LAST} is exclusive to both pod podA" in r.stderr, r.stderr
        assert str(tmp_path / "cpu_manager_state") in r.stderr
        assert "Traceback" not in r.stderr
    assert (tmp_path / "cpu_manager_state").read_bytes() == before


@pytest.mark.skipif(len(ONLINE) < 2, reason="needs two online CPUs")
def test_kill_9_orphan_is_kept_while_it_runs_and_removed_after(tmp_path: Path, cg: Path) -> None:
    p = topolet(
        tmp_path,
        cg,
        "--reserved-cpus",
        "0",
        "--cpus",
        "1",
        "--guaranteed",
        "--name",
        "victim",
        "--",
        "sleep",
        "60",
    )
    children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
    wait_for(lambda: children.exists() and children.read_text().strip() != "")
    child = int(children.read_text().split()[0])
    os.kill(p.pid, signal.SIGKILL)  # the supervisor dies; its command runs on
    p.wait()
    (record,) = list((tmp_path / "standalone").glob("*.json"))
    shared = topolet(tmp_path, cg, "--reserved-cpus", "0", "--cpus", "100m", "--", "true")
    assert shared.wait(120) == 0
    assert record.exists(), "a run whose command still runs was swept"
    assert checkpoint(tmp_path)["entries"]  # still held
    os.kill(child, signal.SIGKILL)
    wait_for(
        lambda: (
            not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
        )
    )
    again = topolet(tmp_path, cg, "--reserved-cpus", "0", "--cpus", "100m", "--", "true")
    assert again.wait(120) == 0
    assert not record.exists()
    assert "entries" not in checkpoint(tmp_path)
    assert not [d for d in _dirs(cg) if d.name.startswith("pod")]


@pytest.mark.skipif(len(ONLINE) < 2, reason="needs two online CPUs")
def test_whole_machine_inside_a_cpuset_holding_only_cpu_0(tmp_path: Path, cg: Path) -> None:
    cg.mkdir()
    (cg / "cpuset.mems").write_text((V1 / "cpuset.mems").read_text())
    (cg / "cpuset.cpus").write_text("0")
    # A valid checkpoint that uses the last CPU exclusively: the agent must accept it.
    CheckpointStore(tmp_path / "cpu_manager_state", policy_name="static").save(
        CPUManagerCheckpoint("static", ONLINE - CPUSet.of(LAST), {"podA": {"c": CPUSet.of(LAST)}})
    )
    cfg = {
        "pod_source": "standalone",
        "state_dir": str(tmp_path),
        "cgroup_root": str(cg / "pods"),
        "cgroup_version": "v1",
        "exclusive_cpu_resource_name": "",
        "gpu_resource_names": {},
        "watch_udev": False,
        "device_plugin_dir": str(tmp_path / "dp"),
        "metrics_bind_address": "127.0.0.1:0",
        "pod_resources_socket": str(tmp_path / "none.sock"),
    }
    code = f"""
import json
from pathlib import Path
from topolet.node_agent import NodeAgent
from topolet.node_config import NodeConfig
from topology.sysfs import discover
raw = {cfg!r}
paths = ("state_dir", "cgroup_root", "device_plugin_dir", "pod_resources_socket")
agent = NodeAgent(NodeConfig(**{{k: Path(v) if k in paths else v for k, v in raw.items()}}))
agent.start()
assert agent.manager is not None and agent.topology is not None
restricted = discover()
print(json.dumps({{
    "agent": str(agent.topology.online_cpus),
    "kept": str(agent.manager.state.get_cpuset("podA", "c")),
    "discover": str(restricted.online_cpus),
    "disallowed": str(restricted.disallowed_cpus),
}}))
agent.stop()
"""

    def join() -> None:
        (cg / "tasks").write_text(str(os.getpid()))

    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=join
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {
        "agent": str(ONLINE),
        "kept": str(LAST),
        "discover": "0",
        "disallowed": str(ONLINE - CPUSet.of(0)),
    }
    d = subprocess.run(
        [sys.executable, "-m", "topolet", "describe", "--state-dir", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=join,
    )
    assert d.returncode == 0, d.stderr
    doc = json.loads(d.stdout)
    assert doc["pools"]["online"] == str(ONLINE)
    assert doc["checkpoint"]["valid"] is True
