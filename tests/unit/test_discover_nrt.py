"""`topolet discover --format nrt`: the NodeResourceTopology this node would publish."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.fakesysfs import sparse_ids, write_fake_sysfs
from topology.nrt import NodeResourceTopology


def _nrt(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "topolet",
            "discover",
            "--root",
            str(root),
            "--format",
            "nrt",
            "--node-name",
            "worker-1",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_nrt_zones_follow_sparse_numa_ids_and_gpus(tmp_path: Path) -> None:
    root = write_fake_sysfs(tmp_path / "root", sparse_ids)
    out = _nrt(root, "--topology-manager-policy", "single-numa-node", "--topology-manager-scope", "pod")
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(out.stdout)
    assert doc["apiVersion"] == "topology.node.k8s.io/v1alpha2"
    assert doc["kind"] == "NodeResourceTopology"
    nrt = NodeResourceTopology.from_dict(doc)
    assert nrt.name == "worker-1"
    zones = {z["name"]: z for z in doc["zones"]}
    assert sorted(zones) == ["node-0", "node-4"]
    res = {z: {r["name"]: r for r in zones[z]["resources"]} for z in zones}
    assert res["node-0"]["cpu"]["capacity"] == "8" and res["node-4"]["cpu"]["capacity"] == "8"
    assert res["node-4"]["nvidia.com/gpu"]["capacity"] == "1"  # the 3D controller, not its audio function
    assert res["node-0"]["amd.com/gpu"]["capacity"] == "1"
    assert "nvidia.com/gpu" not in res["node-0"]
    assert "hugepages-2Mi" in res["node-0"]
    attrs = {a["name"]: a["value"] for a in doc["attributes"]}
    assert attrs == {"topologyManagerPolicy": "single-numa-node", "topologyManagerScope": "pod"}


def test_bad_policy_is_a_one_line_error(tmp_path: Path) -> None:
    root = write_fake_sysfs(tmp_path / "root", sparse_ids)
    out = _nrt(root, "--topology-manager-policy", "bogus")
    assert out.returncode == 1
    assert "single-numa-node" in out.stderr and "Traceback" not in out.stderr
