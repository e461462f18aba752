"""``topolet bench all``: one JSON document with every benchmark's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topolet import bench_all, cli


def test_all_json_holds_each_selected_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["bench", "all", "--quick", "--only", "alloc", "--only", "deviceplugin", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["topolet_bench"] == 1 and doc["quick"] is True
    assert set(doc["benchmarks"]) == {"alloc", "deviceplugin"}
    alloc = doc["benchmarks"]["alloc"]
    assert alloc["ok"] is True
    assert {r["request"] for r in alloc["result"]} == {1, 2, 7, 16, 64}
    assert all(0 < r["p50_us"] <= r["p99_us"] <= r["max_us"] for r in alloc["result"])
    rpcs = {r["rpc"] for r in doc["benchmarks"]["deviceplugin"]["result"]}
    assert rpcs == {"GetPreferredAllocation", "Allocate"}


def test_a_failing_benchmark_is_recorded_and_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(quick: bool) -> object:
        raise RuntimeError("no such device")

    monkeypatch.setitem(bench_all.COLLECTORS, "alloc", broken)
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "all", "--quick", "--only", "alloc", "--out", str(out)])
    assert rc == 1
    doc = json.loads(out.read_text())
    assert doc["benchmarks"]["alloc"] == {
        "ok": False,
        "error": "RuntimeError: no such device",
        "seconds": doc["benchmarks"]["alloc"]["seconds"],
    }
    assert "no such device" in capsys.readouterr().out


def test_unknown_benchmark_name_is_a_usage_error() -> None:
    assert cli.main(["bench", "all", "--only", "nope"]) == 2
