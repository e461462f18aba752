"""`topolet run` on the real kernel: two processes, one Guaranteed with 1 exclusive CPU.

Checks /proc/<pid>/status Cpus_allowed_list of the real processes: the Guaranteed one is
alone on its CPU, the shared one leaves that CPU, and gets it back when the Guaranteed
one exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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


def allowed(pid: int) -> CPUSet:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return CPUSet.parse(line.split(":", 1)[1])
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    assert check()


def child_of(proc: subprocess.Popen[bytes]) -> int:
    """The pid of the command started by a `topolet run` process."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    wait_for(lambda: children.read_text().strip() != "")
    return int(children.read_text().split()[0])


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    cg = f"/sys/fs/cgroup/cpuset/topolet-test-{tmp_path.name[-12:]}"

    def start(*args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "topolet", "run", "--state-dir", str(tmp_path), "--cgroup-root", cg, *args]
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    if Path(cg).exists():
        for d in sorted((q for q in Path(cg).rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
            d.rmdir()
        Path(cg).rmdir()


def status(state_dir: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "topolet",
            "cpumanager",
            "status",
            "--state-dir",
            str(state_dir),
            "--format",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(len(ONLINE) < 2, reason="needs at least 2 CPUs")
def test_guaranteed_gets_exclusive_cpu_and_returns_it(
    runner: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    shared_run = runner("--cpus", "500m", "--name", "shared", "--", "sleep", "60")
    shared = child_of(shared_run)
    wait_for(lambda: allowed(shared) == ONLINE)

    excl_run = runner("--cpus", "1", "--guaranteed", "--name", "excl", "--", "sleep", "60")
    excl = child_of(excl_run)
    wait_for(lambda: len(allowed(excl)) == 1)
    mine = allowed(excl)
    assert mine <= ONLINE
    reserved = CPUSet.parse(str(status(tmp_path)["reserved"]))
    assert mine.isdisjoint(reserved)
    wait_for(lambda: allowed(shared) == ONLINE - mine)
    st = status(tmp_path)
    assert st["shared"] == str(ONLINE - mine)
    assignments = st["assignments"]
    assert isinstance(assignments, list)
    assert [a["cpus"] for a in assignments] == [str(mine)]

    excl_run.send_signal(signal.SIGTERM)  # forwarded to the command; it exits, cpus return
    assert excl_run.wait(10) in (143, -15, 128 + 15)
    wait_for(lambda: allowed(shared) == ONLINE)
    st = status(tmp_path)
    assert st["shared"] == str(ONLINE) and st["assignments"] == []


def test_run_refuses_bad_quantity(runner: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = runner("--cpus", "lots", "--", "true")
    assert p.wait(20) == 1
