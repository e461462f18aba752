"""The isolation benchmark with cgroup placement on the real kernel.

While a scenario runs, /proc/<pid>/status of the real processes shows where the CPU
manager put them: with the static policy the Guaranteed victim alone on its exclusive
CPU and the aggressor's workers on the shared pool; with the policy off everyone on every
CPU. Afterwards the private cgroup root is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.aggressor import group_members
from bench.isolation import SCENARIOS, Running, run
from topology.cpuset import CPUSet

V1 = Path("/sys/fs/cgroup/cpuset")
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and (V1 / "cpuset.cpus").exists()),
        reason="needs root and the cgroup v1 cpuset hierarchy",
    ),
]
ONLINE = CPUSet.parse(Path("/sys/devices/system/cpu/online").read_text())


def status_field(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key} for pid {pid}")


def allowed(pid: int) -> CPUSet:
    return CPUSet.parse(status_field(pid, "Cpus_allowed_list"))


@pytest.mark.skipif(len(ONLINE) < 2, reason="needs at least 2 CPUs")
def test_victims_and_aggressor_sit_where_the_cpu_manager_put_them(tmp_path: Path) -> None:
    root = V1 / f"topolet-bench-{os.getpid()}"
    observed: list[tuple[str, str, CPUSet, str]] = []

    def look(r: Running) -> None:
        assert r.aggressor_pgid is not None
        for name, pid in r.victims.items():
            observed.append((r.scenario.name, name, allowed(pid), Path(f"/proc/{pid}/cpuset").read_text()))
        for pid in group_members(r.aggressor_pgid):
            cgroup = Path(f"/proc/{pid}/cpuset").read_text()
            observed.append((r.scenario.name, "aggressor", allowed(pid), cgroup))
        assert root.is_dir()

    picked = [s for s in SCENARIOS if s.aggressor]
    report = run(
        runs=1,
        kernels=["blackscholes-like"],
        scale=0.6,
        placement="cgroup",
        aggressor="auto",
        out=tmp_path,
        progress=False,
        scenarios=picked,
        on_start=look,
    )
    assert report.placement == "cgroup"
    # One reserved CPU (the lowest) stays in the shared pool; the victim takes the next one.
    exclusive = ONLINE - CPUSet([min(ONLINE)])
    want = {
        ("aggressor/static-on", "victim"): CPUSet([min(exclusive)]),
        ("aggressor/static-on", "aggressor"): ONLINE - CPUSet([min(exclusive)]),
        ("colocated/static-on", "guaranteed"): CPUSet([min(exclusive)]),
        ("colocated/static-on", "burstable"): ONLINE - CPUSet([min(exclusive)]),
        ("colocated/static-on", "aggressor"): ONLINE - CPUSet([min(exclusive)]),
        ("aggressor/static-off", "victim"): ONLINE,
        ("aggressor/static-off", "aggressor"): ONLINE,
        ("colocated/static-off", "burstable"): ONLINE,
    }
    seen = {(sc, name) for sc, name, _, _ in observed}
    assert set(want) <= seen
    for sc, name, cpus, cgroup in observed:
        if (sc, name) in want:
            assert cpus == want[(sc, name)], f"{sc} {name}: {cpus}"
        assert cgroup.startswith(f"/{root.name}/kubepods/"), cgroup
    assert not root.exists()
    acct = Path("/sys/fs/cgroup/cpuacct")
    if (acct / "cpuacct.usage_percpu").exists():
        # The aggressor's own cpuacct group shows it on the victim's CPU only with the policy off.
        assert not (acct / root.name).exists()
        bench = {(s.series, s.bench_others_s) for s in report.samples if s.series.startswith("aggressor/")}
        assert all(b is not None for _, b in bench)
        assert max(b or 0.0 for sr, b in bench if sr.endswith("on")) < 0.01
        assert min(b or 0.0 for sr, b in bench if sr.endswith("off")) > 0.01
