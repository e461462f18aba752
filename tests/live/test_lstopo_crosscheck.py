"""On this machine: ``topolet discover --format json`` agrees with hwloc's
``lstopo-no-graphics --of xml`` (object counts, PU and NUMA node cpusets, cores, L3
groups, GPU locality) and with util-linux ``lscpu -J`` (CPUs, sockets, cores per socket,
threads per core).

Without ``lstopo-no-graphics`` the hwloc checks fail under CI (``CI`` set) and are skipped
with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from topology.cpuset import CPUSet

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
LSTOPO = "lstopo-no-graphics"
GPU_CLASSES = ("0300", "0302")


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} is not installed (apt-get install {package})"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def topolet_json() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "topolet", "discover", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


@pytest.fixture(scope="module")
def hwloc() -> ET.Element:
    lstopo = _require(LSTOPO, "hwloc-nox")
    out = subprocess.run(
        [lstopo, "--of", "xml", "-"], capture_output=True, text=True, timeout=120, check=True
    )
    return ET.fromstring(out.stdout)


def _objects(root: ET.Element, kind: str) -> list[ET.Element]:
    return [o for o in root.iter("object") if o.get("type") == kind]


def _cpuset(obj: ET.Element) -> CPUSet:
    return CPUSet.parse_mask(obj.get("cpuset", ""))


def _walk_with_parents(
    obj: ET.Element, parents: tuple[ET.Element, ...] = ()
) -> Iterator[tuple[ET.Element, tuple[ET.Element, ...]]]:
    yield obj, parents
    for child in obj.findall("object"):
        yield from _walk_with_parents(child, (*parents, obj))


def _values(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(doc[key].values())


# --------------------------------------------------------------------------- hwloc


@pytest.mark.parametrize(
    ("hwloc_type", "topolet_key"),
    [
        pytest.param("Package", "packages", id="packages"),
        pytest.param("NUMANode", "numa_nodes", id="numa-nodes"),
        pytest.param("Core", "cores", id="cores"),
        pytest.param("PU", "cpus", id="pus"),
        pytest.param("L3Cache", "l3_groups", id="l3-caches"),
    ],
)
def test_object_counts(
    hwloc: ET.Element, topolet_json: dict[str, Any], hwloc_type: str, topolet_key: str
) -> None:
    assert len(topolet_json[topolet_key]) == len(_objects(hwloc, hwloc_type))


def test_pu_os_indexes(hwloc: ET.Element, topolet_json: dict[str, Any]) -> None:
    pus = CPUSet(int(o.get("os_index", "-1")) for o in _objects(hwloc, "PU"))
    assert str(CPUSet(int(k) for k in topolet_json["cpus"])) == str(pus)
    assert topolet_json["online"] == str(pus)


def test_numa_node_cpusets(hwloc: ET.Element, topolet_json: dict[str, Any]) -> None:
    nodes = {int(o.get("os_index", "-1")): str(_cpuset(o)) for o in _objects(hwloc, "NUMANode")}
    assert {n["id"]: n["cpus"] for n in _values(topolet_json, "numa_nodes")} == nodes


def test_package_cpusets(hwloc: ET.Element, topolet_json: dict[str, Any]) -> None:
    hw = sorted(str(_cpuset(o)) for o in _objects(hwloc, "Package"))
    assert sorted(p["cpus"] for p in _values(topolet_json, "packages")) == hw


def test_core_and_l3_cpusets(hwloc: ET.Element, topolet_json: dict[str, Any]) -> None:
    assert sorted(c["cpus"] for c in _values(topolet_json, "cores")) == sorted(
        str(_cpuset(o)) for o in _objects(hwloc, "Core")
    )
    assert sorted(g["cpus"] for g in _values(topolet_json, "l3_groups")) == sorted(
        str(_cpuset(o)) for o in _objects(hwloc, "L3Cache")
    )


def _hwloc_gpu_numa(hwloc: ET.Element) -> dict[str, int | None]:
    """Display/3D PCI functions and the single NUMA node hwloc places them under."""
    nodes = {int(o.get("os_index", "-1")): _cpuset(o) for o in _objects(hwloc, "NUMANode")}
    out: dict[str, int | None] = {}
    for obj, parents in _walk_with_parents(hwloc):
        if obj.get("type") != "PCIDev" or obj.get("pci_type", "")[:4] not in GPU_CLASSES:
            continue
        anchor = next(p for p in reversed(parents) if p.get("cpuset"))
        local = _cpuset(anchor)
        covering = sorted((len(c), n) for n, c in nodes.items() if c and local <= c)
        tight = [n for size, n in covering if size == covering[0][0]] if covering else []
        out[obj.get("pci_busid", "")] = tight[0] if len(tight) == 1 else None
    return out


def test_gpu_locality(hwloc: ET.Element, topolet_json: dict[str, Any]) -> None:
    ours = {
        d["address"]: d["numa_node"] for d in topolet_json["pci_devices"] if d["class"][2:6] in GPU_CLASSES
    }
    assert ours == _hwloc_gpu_numa(hwloc)


# --------------------------------------------------------------------------- lscpu


def _lscpu_fields(entries: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(field, data) pairs of ``lscpu -J``, flattening util-linux ≥ 2.38's nested children."""
    for e in entries:
        yield str(e.get("field", "")).rstrip(":"), str(e.get("data", ""))
        yield from _lscpu_fields(e.get("children", []))


@pytest.fixture(scope="module")
def lscpu() -> dict[str, str]:
    tool = _require("lscpu", "util-linux")
    out = subprocess.run([tool, "-J"], capture_output=True, text=True, timeout=60, check=True)
    fields: dict[str, str] = {}
    for key, value in _lscpu_fields(json.loads(out.stdout)["lscpu"]):
        fields.setdefault(key, value)
    return fields


def test_lscpu_agrees(lscpu: dict[str, str], topolet_json: dict[str, Any]) -> None:
    summary = topolet_json["summary"]
    online = CPUSet.parse(topolet_json["online"])
    assert CPUSet.parse(lscpu["On-line CPU(s) list"]) >= online
    if topolet_json["disallowed"] == "":
        assert str(CPUSet.parse(lscpu["On-line CPU(s) list"])) == str(online)
    assert int(lscpu["Socket(s)"]) == summary["packages"]
    assert int(lscpu["Thread(s) per core"]) == summary["threads_per_core"]
    assert int(lscpu["Core(s) per socket"]) * int(lscpu["Socket(s)"]) == summary["cores"]
