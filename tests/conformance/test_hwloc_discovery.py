"""Discovery on hwloc's gathered sysfs snapshots of real machines, field by field.

Every ``expected/*.json`` present is one test id; a snapshot added later is tested with
no code change. The reading rules are in the conformance README.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.snapshots import case_dir, snapshot_names
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.sysfs import discover

CASES = [case_dir(name) / "expected" / f"{name}.json" for name in snapshot_names()]

# Fields where the expected value encodes hwloc policy and topolet decides differently.
# Key: (case tag, field) -> reason. Empty: topolet follows hwloc on every field so far.
POLICY_DIFFERENCES: dict[tuple[str, str], str] = {}


def cpus(text: str) -> CPUSet:
    return CPUSet.parse(text)


def _root(case: dict[str, Any], tmp: Path) -> Path:
    with tarfile.open(case_dir(case["name"]) / "snapshots" / f"{case['name']}.tar.bz2") as tar:
        tar.extractall(tmp, filter="data")
    return tmp / str(case["tarball_top_dir"])


def _gpu_view(topo: Topology) -> list[dict[str, Any]]:
    return [
        {"busid": d.address, "class": f"{d.class_id:04x}", "numa": d.numa_node, "package": d.package}
        for d in topo.pci_devices
        if d.class_id in (0x0300, 0x0302)
    ]


def _package_view(topo: Topology, exp: dict[str, str]) -> Any:
    if any(k.startswith("L#") for k in exp):
        return Counter(str(p.cpus) for p in topo.packages.values()), Counter(
            str(cpus(v)) for v in exp.values()
        )
    return {str(p.os_index): str(p.cpus) for p in topo.packages.values()}, {
        k: str(cpus(v)) for k, v in exp.items()
    }


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_discovery_matches_hwloc(path: Path, tmp_path: Path) -> None:
    exp = json.loads(path.read_text())
    topo = discover(_root(exp, tmp_path))
    got_pkgs, want_pkgs = _package_view(topo, exp["pus_by_package"])
    checks: dict[str, tuple[Any, Any]] = {
        "all_pus": (str(topo.online_cpus), str(cpus(exp["all_pus"]))),
        "pus": (topo.num_cpus, exp["pus"]),
        "packages": (topo.num_sockets, exp["packages"]),
        "numa_nodes": (topo.num_numa_nodes, exp["numa_nodes"]),
        "cores": (topo.num_cores, exp["cores"]),
        "l3_groups": (len(topo.l3_groups), exp["l3_groups"]),
        "pus_by_package": (got_pkgs, want_pkgs),
        "pus_by_numa": (
            {str(n.id): str(n.cpus) for n in topo.numa_nodes.values()},
            {k: str(cpus(v)) for k, v in exp["pus_by_numa"].items()},
        ),
        "pus_by_core": (
            sorted(str(c.cpus) for c in topo.cores.values()),
            sorted(str(cpus(v)) for v in exp["pus_by_core"]),
        ),
        "numa_memory_bytes": (
            {str(n.id): n.memory_bytes for n in topo.numa_nodes.values()},
            exp["numa_memory_bytes"],
        ),
        "hugepages": (
            {
                str(n.id): {f"{h.size_kb}kB": h.total for h in n.hugepages.values()}
                for n in topo.numa_nodes.values()
                if n.hugepages
            },
            exp["hugepages"],
        ),
        "pci_gpus": (_gpu_view(topo), exp["pci_gpus"]),
        "pus_not_represented": (
            str(topo.offline_cpus | topo.disallowed_cpus),
            str(cpus(exp["pus_not_represented"])),
        ),
    }
    wrong = {k: v for k, v in checks.items() if v[0] != v[1]}
    assert not wrong, "\n".join(f"{k}: got {g!r}\n    want {w!r}" for k, (g, w) in wrong.items())
