"""The ``topolet`` command line, run as ``python -m topolet`` in a subprocess on hwloc
snapshots (and in-process through ``main()`` for the cheaper usage checks).

Expected values come from the snapshots' own ``expected/NAME.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.snapshots import case
from topolet.cli import main
from topology.cpuset import CPUSet

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Sparse package and NUMA ids, SMT-4, GPUs: the richest small snapshot.
SNAPSHOT = "nvidiagpunumanodes"

Snapshot = Callable[[str], Path]


def topolet(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "topolet", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ------------------------------------------------------------------ discover


def test_discover_json_matches_the_snapshot(hwloc_snapshot: Snapshot, tmp_path: Path) -> None:
    exp = case(SNAPSHOT)
    done = topolet("discover", "--root", hwloc_snapshot(SNAPSHOT), "--format", "json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    doc = json.loads(done.stdout)
    assert doc["schema"] == "topolet.topology/v1"
    assert CPUSet.parse(doc["online"]) == CPUSet.parse(exp["all_pus"])
    assert doc["summary"]["cpus"] == exp["pus"]
    assert {k: CPUSet.parse(v["cpus"]) for k, v in doc["numa_nodes"].items()} == {
        k: CPUSet.parse(v) for k, v in exp["pus_by_numa"].items()
    }


def test_discover_tree_shows_every_numa_node(hwloc_snapshot: Snapshot, tmp_path: Path) -> None:
    done = topolet("discover", "--root", hwloc_snapshot(SNAPSHOT), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Machine")
    for node in case(SNAPSHOT)["pus_by_numa"]:
        assert f"NUMA node {node} " in done.stdout


def test_discover_dot(hwloc_snapshot: Snapshot, tmp_path: Path) -> None:
    done = topolet("discover", "--root", hwloc_snapshot(SNAPSHOT), "--format", "dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (lines[0], lines[-1]) == ("graph topology {", "}")
    assert sum('"cpu:' in line and "label=" in line for line in lines) == case(SNAPSHOT)["pus"]


@pytest.mark.parametrize("output", [None, "out/picture.png"], ids=["default-topology.png", "explicit-output"])
def test_discover_png(hwloc_snapshot: Snapshot, tmp_path: Path, output: str | None) -> None:
    (tmp_path / "out").mkdir()
    extra = ["--output", output] if output else []
    done = topolet(
        "discover", "--root", hwloc_snapshot("8ia64-2s2c2t"), "--format", "png", *extra, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    written = tmp_path / (output or "topology.png")
    assert written.read_bytes()[:8] == PNG_MAGIC


def test_discover_writes_output_file(hwloc_snapshot: Snapshot, tmp_path: Path) -> None:
    out = tmp_path / "topo.json"
    done = topolet(
        "discover", "--root", hwloc_snapshot("2arm-2c"), "--format", "json", "-o", out, cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (0, "")
    assert json.loads(out.read_text())["summary"]["cpus"] == case("2arm-2c")["pus"]


def test_discover_empty_root_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = topolet("discover", "--root", empty, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert str(empty / "sys") in done.stderr
    assert "Traceback" not in done.stderr


def test_discover_on_a_nested_snapshot_root_names_the_root_to_use(
    hwloc_snapshot: Snapshot, tmp_path: Path
) -> None:
    inner = hwloc_snapshot("2arm-2c")
    outer = tmp_path / "extracted"
    outer.mkdir()
    (outer / inner.name).symlink_to(inner, target_is_directory=True)
    done = topolet("discover", "--root", outer, cwd=tmp_path)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert f"use --root {outer / inner.name}" in done.stderr


def test_discover_in_a_pipe_prints_distances_once_as_a_matrix(
    hwloc_snapshot: Snapshot, tmp_path: Path
) -> None:
    done = topolet("discover", "--root", hwloc_snapshot("64amd64-4s2n4ca2co"), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.count("NUMA distances") == 1 and "distances 1:" not in done.stdout
    assert "0: 10 16 16 22 16 22 16 22" in done.stdout
    assert "…" not in done.stdout


# ---------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "argv",
    [["run"], ["describe"], ["extender"], ["node"], ["cpumanager"], ["bench", "isolation"], ["discover"]],
    ids=lambda a: "-".join(a),
)
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and ":mod:" not in out


@pytest.mark.parametrize(
    "bench", ["all", "discover", "alloc", "deviceplugin", "extender", "fragmentation", "isolation"]
)
def test_every_bench_subcommand_takes_quick_and_format_json(bench: str) -> None:
    from topolet.cli import build_parser

    args = build_parser().parse_args(["bench", bench, "--quick", "--format", "json"])
    assert args.quick and args.format == "json"


@pytest.mark.parametrize("argv", [["extender"], ["bench", "extender"]], ids=["extender", "bench-extender"])
def test_extender_server_choice_defaults_to_uvicorn(argv: list[str]) -> None:
    from topolet.cli import build_parser

    assert build_parser().parse_args(argv).server == "uvicorn"
    assert build_parser().parse_args([*argv, "--server", "builtin"]).server == "builtin"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--server", "nginx"])


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    done = topolet("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("discover", "demo", "bench"):
        assert f"    {command} " in done.stdout


USAGE_ERRORS = [
    ("no-command", []),
    ("unknown-command", ["frobnicate"]),
    ("unknown-format", ["discover", "--format", "xml"]),
    ("bench-without-benchmark", ["bench"]),
    ("repeat-zero", ["bench", "discover", "--repeat", "0"]),
    ("root-and-snapshot", ["bench", "discover", "--root", "/", "--snapshot", "2arm-2c"]),
]


@pytest.mark.parametrize("argv", [a for _, a in USAGE_ERRORS], ids=[i for i, _ in USAGE_ERRORS])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err != ""


@pytest.mark.parametrize("argv", [["--help"], ["discover", "--help"], ["bench", "discover", "--help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert "usage: topolet" in capsys.readouterr().out


def test_verbose_is_accepted_before_and_after_the_command(
    hwloc_snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(hwloc_snapshot("2arm-2c"))
    assert main(["-v", "discover", "--root", root, "--format", "dot"]) == 0
    assert main(["discover", "-vv", "--root", root, "--format", "dot"]) == 0


# ---------------------------------------------------------------------- demo


def test_demo_writes_the_report(tmp_path: Path) -> None:
    done = topolet("demo", "--tiny", "--output-dir", tmp_path / "report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = tmp_path / "report"
    doc = json.loads((report / "topology.json").read_text())
    assert doc["schema"] == "topolet.topology/v1"
    for png in (
        "topology.png",
        "isolation/isolation.png",
        "simulate/simulate-timeline.png",
        "simulate/simulate-outcomes.png",
    ):
        assert (report / png).read_bytes()[:8] == PNG_MAGIC, png
    text = (report / "report.md").read_text()
    for heading in ("## Exclusive CPU requests", "## Isolation", "## Simulation"):
        assert heading in text
    assert f"{doc['summary']['cpus']} online CPUs" in text
    summary = json.loads((report / "summary.json").read_text())
    assert summary["machine"]["cpus"] == doc["summary"]["cpus"]
    kernels = {k["kernel"] for k in summary["isolation"]["kernels"]}
    assert kernels == {"blackscholes-like", "canneal-like", "streamcluster-like"}
    assert all(k["solo_median_s"] > 0 and k["on_median_s"] > 0 for k in summary["isolation"]["kernels"])
    sim = summary["simulation"]
    for scheduler in ("topolet", "topology-blind"):
        assert sim[scheduler]["admitted"] <= sim["lp_bound_pods"]
    assert sim["topolet"]["topology_affinity_errors"] == 0
    # The isolation figures in report.md are the ones of the raw results file.
    raw = json.loads((report / "isolation" / "isolation.json").read_text())
    assert raw["placement"] == summary["isolation"]["placement"]


# --------------------------------------------------------------------- bench


def test_bench_discover_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "discover", "--snapshot", "2arm-2c", "--repeat", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["results"]
    assert (row["name"], row["cpus"], row["repeat"]) == ("2arm-2c", case("2arm-2c")["pus"], 3)
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert out["largest"] == row


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--snapshot", "no-such-machine"], "no-such-machine.json"),
        (["--snapshots", "/nonexistent/hwloc"], "/nonexistent/hwloc/expected"),
    ],
    ids=["unknown-snapshot", "missing-directory"],
)
def test_bench_discover_missing_input_is_a_one_line_error(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "discover", *argv]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert names in err


@pytest.mark.parametrize("name", ["16em64t-4s2c2t", "nvidiagpunumanodes"])
def test_demo_on_a_snapshot_gives_every_request_its_cpus(
    name: str, hwloc_snapshot: Snapshot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = ["demo", "--root", str(hwloc_snapshot(name)), "--output-dir", str(out), "--no-simulation"]
    assert main(argv) == 0
    capsys.readouterr()
    rows = [line.split("|") for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    table = [(int(r[1]), CPUSet.parse(r[2].strip(" `"))) for r in rows[1:]]
    online = CPUSet.parse(case(name)["all_pus"])
    assert [n for n, _ in table] == list(range(1, len(online)))  # N = online CPUs minus 1 reserved
    for n, cpus in table:
        assert len(cpus) == n
        assert cpus <= online
