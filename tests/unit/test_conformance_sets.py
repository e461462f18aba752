"""The conformance sets load from the repository alone and merge extra copies by case key."""

from __future__ import annotations

from tests.conformance_sets import VENDORED_DIR, case_key, load_cases, merge_cases, set_dirs
from tests.snapshots import case, snapshot_names


def test_every_set_is_vendored() -> None:
    for name in ("kubelet", "gpualloc", "nrt"):
        assert (VENDORED_DIR / name / "cases.json").is_file()
        assert set_dirs(name)[0] == VENDORED_DIR / name
    assert (VENDORED_DIR / "PROVENANCE").is_file()
    assert len(list((VENDORED_DIR / "hwloc" / "snapshots").glob("*.tar.bz2"))) == len(
        list((VENDORED_DIR / "hwloc" / "expected").glob("*.json"))
    )


def test_merge_is_a_union_by_id_then_name_then_content() -> None:
    a = {"meta": {"v": 1}, "cases": [{"id": 1, "x": "a"}, {"name": "t", "y": 1}, {"z": 1}]}
    b = {"meta": {"v": 2}, "cases": [{"id": 1, "x": "b"}, {"id": 2}, {"name": "t"}, {"z": 1}, {"z": 2}]}
    got = merge_cases([a, b])
    assert got["meta"] == {"v": 1}
    assert got["cases"] == [{"id": 1, "x": "a"}, {"name": "t", "y": 1}, {"z": 1}, {"id": 2}, {"z": 2}]
    assert a["cases"] == [{"id": 1, "x": "a"}, {"name": "t", "y": 1}, {"z": 1}]  # inputs untouched
    assert case_key({"id": 3, "name": "n"}) == "id:3"


def test_loaded_sets_hold_the_vendored_cases() -> None:
    kubelet = load_cases("kubelet")
    assert len(kubelet["allocation_cases"]) >= 140 and len(kubelet["topologies"]) >= 25
    ids = [case_key(c) for c in load_cases("nrt")["filter_cases"]]
    assert len(ids) == len(set(ids)) >= 55
    assert "2arm-2c" in snapshot_names() and case("2arm-2c")["pus"] == 2
