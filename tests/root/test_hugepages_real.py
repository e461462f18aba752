"""Hugepages on the real kernel: reserve 2 MiB pages, see discovery count them per NUMA
node, and see the CPU manager (and `topolet run`) admit what fits and refuse what does not."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import InsufficientHugePagesError
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from topology.sysfs import discover

NR = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
V1 = Path("/sys/fs/cgroup/cpuset")
MI = 2**20
PAGES = 8
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not (os.geteuid() == 0 and NR.exists()), reason="needs root and 2 MiB hugepages"),
]


@pytest.fixture
def reserved_pages() -> Iterator[int]:
    """PAGES more 2 MiB pages than before (restored afterwards); yields the new total."""
    old = int(NR.read_text())
    try:
        NR.write_text(str(old + PAGES))
        total = int(NR.read_text())
        if total < old + PAGES:
            pytest.skip(f"the kernel could only reserve {total - old} of {PAGES} 2 MiB pages")
        yield total
    finally:
        NR.write_text(str(old))


def test_discovery_sees_the_pages_and_the_manager_admits_what_fits(reserved_pages: int) -> None:
    topo = discover(Path("/"))
    per_node = {
        n: node.hugepages[2048].total for n, node in topo.numa_nodes.items() if 2048 in node.hugepages
    }
    assert sum(per_node.values()) == reserved_pages
    mgr = CPUManager(topo, StaticPolicy(CPUTopology.from_topology(topo), num_reserved_cpus=1))
    mgr.start()
    largest = max(per_node.values())
    fits = ContainerInfo(
        "uid-fit", "app", None, exclusive_cpus=1, hugepages={"hugepages-2Mi": largest * 2 * MI}
    )
    pin = mgr.add_container(fits)
    assert pin.mems is not None and sum(per_node[n] for n in pin.mems) >= largest
    too_big = ContainerInfo(
        "uid-big", "app", None, exclusive_cpus=1, hugepages={"hugepages-2Mi": (reserved_pages + 1) * 2 * MI}
    )
    with pytest.raises(InsufficientHugePagesError, match=r"hugepages-2Mi: \d+Mi requested"):
        mgr.add_container(too_big)
    mgr.remove_container("uid-fit", "app")
    again = ContainerInfo(
        "uid-2", "app", None, exclusive_cpus=1, hugepages={"hugepages-2Mi": largest * 2 * MI}
    )
    assert mgr.add_container(again).exclusive  # the released pages are free again


@pytest.mark.skipif(not (V1 / "cpuset.cpus").exists(), reason="needs the cgroup v1 cpuset hierarchy")
def test_topolet_run_admits_and_refuses_hugepages(reserved_pages: int, tmp_path: Path) -> None:
    cg = V1 / f"topolet-hp-{tmp_path.name[-12:]}"

    def run(size: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "topolet",
                "run",
                "--state-dir",
                str(tmp_path),
                "--cgroup-root",
                str(cg),
                "--cpus",
                "1",
                "--guaranteed",
                "--hugepages-2Mi",
                size,
                "--",
                "grep",
                "Mems_allowed_list",
                "/proc/self/status",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        ok = run(f"{PAGES * 2}Mi")
        assert ok.returncode == 0, ok.stderr
        assert "Mems_allowed_list" in ok.stdout
        refused = run(f"{(reserved_pages + 1) * 2}Mi")
        assert refused.returncode == 1
        assert "hugepages-2Mi:" in refused.stderr and "requested" in refused.stderr
    finally:
        if cg.exists():
            for d in sorted((q for q in cg.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
                d.rmdir()
            cg.rmdir()
