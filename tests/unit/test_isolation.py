"""The isolation benchmark: statistics on given timings, the aggressor's clean stop, and a
tiny end-to-end run with affinity placement and the built-in aggressor."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench.aggressor import Aggressor, AggressorError, group_members, resolve_kind
from bench.isolation import (
    SCENARIOS,
    IsolationError,
    Running,
    Sample,
    cpu_busy_seconds,
    execute,
    mechanism_checks,
    run,
    summarize,
    targets,
    tasks_cpu_seconds,
)
from bench.placement import PlacementError, Placer, resolve_mode
from topology.sysfs import discover


def samples(kernel: str, series: str, times: list[float]) -> list[Sample]:
    return [Sample(kernel, series, i, t, t) for i, t in enumerate(times)]


# solo: 1,2,3,4,5 -> median 3, Q1 2, Q3 4 (linear); best of the kernel is 1.0.
# pinned beside the aggressor: 3.0,3.1,3.2,3.3,3.4 -> median 3.2, IQR 0.2, slowdown 3.2/3.
# unpinned beside the aggressor: 2,4,6,8,10 -> median 6, IQR 4, slowdown 2.
STATS = (
    samples("k", "solo/static-off", [5, 1, 4, 2, 3])
    + samples("k", "aggressor/static-on", [3.0, 3.1, 3.2, 3.3, 3.4])
    + samples("k", "aggressor/static-off", [10, 2, 8, 4, 6])
)


@pytest.mark.parametrize(
    ("series", "median", "iqr", "median_norm", "slowdown"),
    [
        ("solo/static-off", 3.0, 2.0, 1.0, 1.0),
        ("aggressor/static-on", 3.2, 0.2, 3.2 / 3.0, 3.2 / 3.0),
        ("aggressor/static-off", 6.0, 4.0, 2.0, 2.0),
    ],
    ids=["solo/baseline-is-1x", "pinned/narrow-box", "unpinned/wide-box"],
)
def test_summary_of_given_timings(
    series: str, median: float, iqr: float, median_norm: float, slowdown: float
) -> None:
    stats = {s.series: s for s in summarize(STATS)}
    s = stats[series]
    assert (s.runs, s.best_s) == (5, 1.0)
    assert s.median_s == pytest.approx(median)
    assert s.iqr_s == pytest.approx(iqr)
    assert s.median_norm == pytest.approx(median_norm)
    assert s.iqr_norm == pytest.approx(iqr / 3.0)
    assert s.slowdown == pytest.approx(slowdown)


def test_solo_band_is_the_solo_quartiles_over_the_solo_median() -> None:
    solo = {s.series: s for s in summarize(STATS)}["solo/static-off"]
    assert (solo.q1_norm, solo.median_norm, solo.q3_norm) == pytest.approx((2 / 3, 1.0, 4 / 3))


def counters(series: str, waits: list[float], others: list[float], bench: list[float] | None) -> list[Sample]:
    return [
        Sample(
            "k",
            series,
            i,
            1.0,
            1.0,
            others_s=o,
            runqueue_wait_s=w,
            bench_others_s=None if bench is None else bench[i],
            involuntary_switches=10 * i,
            migrations=i,
        )
        for i, (w, o) in enumerate(zip(waits, others, strict=True))
    ]


@pytest.mark.parametrize(
    ("on_wait", "on_others", "wait_ok", "others_ok"),
    [
        ([0.01, 0.02, 0.03], [0.0, 0.01, 0.02], True, True),
        ([0.05, 0.06, 0.07], [0.0, 0.01, 0.02], False, True),
        ([0.01, 0.02, 0.03], [0.1, 0.2, 0.3], True, False),
    ],
    ids=["on-is-2pc/meets-both", "wait-6pc/misses-wait", "others-20pc/misses-others"],
)
def test_mechanism_checks_compare_policy_on_with_off(
    on_wait: list[float], on_others: list[float], wait_ok: bool, others_ok: bool
) -> None:
    data = (
        counters("solo/static-off", [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        + counters("solo/static-on", [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        + counters("aggressor/static-off", [0.9, 1.0, 1.1], [0.9, 1.0, 1.1], [0.8, 0.9, 1.0])
        + counters("aggressor/static-on", on_wait, on_others, [0.0, 0.0, 0.0])
    )
    stats = summarize(data)
    on = {s.series: s for s in stats}["aggressor/static-on"]
    assert (on.involuntary_switches_median, on.migrations_median, on.migrations_iqr) == (10.0, 1.0, 1.0)
    (check,) = mechanism_checks(stats)
    assert check.series == "aggressor"
    assert check.wait.ratio == pytest.approx(on_wait[1] / 1.0)
    assert (check.wait.ok, check.others.ok) == (wait_ok, others_ok)
    assert check.bench_others is not None and check.bench_others.ratio == 0.0 and check.bench_others.ok
    assert check.excess_wait is not None and check.excess_wait.ok == wait_ok


def test_unknown_migrations_and_no_cpuacct_stay_unknown() -> None:
    data = [Sample("k", "solo/static-off", 0, 1.0, 1.0), *counters("aggressor/static-on", [0.1], [0.1], None)]
    stats = {s.series: s for s in summarize(data)}
    assert stats["solo/static-off"].migrations_median is None
    assert stats["aggressor/static-on"].bench_others_median_s is None
    assert mechanism_checks(list(stats.values())) == []


def test_normalisation_is_per_kernel_and_without_baseline_no_slowdown() -> None:
    stats = summarize(samples("a", "aggressor/static-on", [2.0, 4.0]) + samples("b", "x", [10.0, 30.0]))
    by = {s.kernel: s for s in stats}
    assert by["a"].best_s == 2.0 and by["a"].median_norm == pytest.approx(1.5)
    assert by["b"].best_s == 10.0 and by["b"].median_norm == pytest.approx(2.0)
    assert by["a"].slowdown is None and targets(stats) == []


@pytest.mark.parametrize(
    ("pinned", "median_ok", "iqr_ok"),
    [
        ([1.0, 1.01, 1.02, 1.03, 1.04], True, True),
        ([1.3, 1.31, 1.32, 1.33, 1.34], False, True),
        ([0.5, 0.6, 1.0, 1.4, 3.0], True, False),
    ],
    ids=["within-5pc/narrow/meets-both", "30pc-slower/misses-median", "wide-box/misses-iqr"],
)
def test_targets(pinned: list[float], median_ok: bool, iqr_ok: bool) -> None:
    # solo median 1.0; unpinned IQR 1.0 (Q1 1.5, Q3 2.5)
    data = (
        samples("k", "solo/static-off", [0.9, 1.0, 1.1])
        + samples("k", "aggressor/static-on", pinned)
        + samples("k", "aggressor/static-off", [1.0, 1.5, 2.0, 2.5, 3.0])
    )
    (check,) = targets(summarize(data))
    assert (check.median_ok, check.iqr_ok) == (median_ok, iqr_ok)


def test_cpu_busy_seconds_counts_everything_but_idle_and_iowait(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    #          user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(
        "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 1 5 1000 7 2 3 4 0 0\ncpu1 0 0 0 50 50 0 0 0 0 0\nintr 123 4 5\n"
    )
    assert cpu_busy_seconds(stat) == {0: 25 / tick, 1: 0.0}


def test_tasks_cpu_seconds_prefers_the_root_cpuacct_group_to_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu0 100 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\n")
    acct = tmp_path / "cpuacct"
    acct.mkdir()
    assert tasks_cpu_seconds(acct, stat) == (cpu_busy_seconds(stat), "proc-stat")
    (acct / "cpuacct.usage_percpu").write_text("1500000000 2000000001 \n")
    assert tasks_cpu_seconds(acct, stat) == ({0: 1.5, 1: 2.000000001}, "cpuacct")
    if (Path("/sys/fs/cgroup/cpuacct") / "cpuacct.usage_percpu").exists():
        before, source = tasks_cpu_seconds()
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        after, _ = tasks_cpu_seconds()
        assert source == "cpuacct"
        assert sum(after.values()) - sum(before.values()) >= 0.05  # this busy loop at least


def test_scenarios_cover_the_three_groups_on_and_off() -> None:
    names = {s.name for s in SCENARIOS}
    groups = ("solo", "aggressor", "colocated", "membw")
    assert names == {f"{g}/static-{o}" for g in groups for o in ("on", "off")}
    assert {s.group: s.aggressor for s in SCENARIOS} == {
        "solo": None,
        "aggressor": "cpu",
        "colocated": "cpu",
        "membw": "memory",
    }
    pair = next(s for s in SCENARIOS if s.group == "colocated" and s.static)
    assert [pair.series(v.name) for v in pair.victims] == [
        "colocated-guaranteed/static-on",
        "colocated-burstable/static-on",
    ]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_memory_aggressor_touches_its_buffers_and_leaves_nothing_behind() -> None:
    agg = Aggressor("builtin", workers=2, load="memory")
    assert agg.command()[-2:] == ["--memory", "256"]
    with agg:
        pids = agg.wait_workers()
        pgid = agg.pgid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(rss_kib(p) for p in pids) < 200 * 1024:
            time.sleep(0.1)
        assert len(pids) == 2 and min(rss_kib(p) for p in pids) >= 200 * 1024
    assert pgid is not None and group_members(pgid) == []
    with pytest.raises(AggressorError, match=r"load: unknown 'disk'.*cpu, memory"):
        Aggressor("builtin", workers=1, load="disk")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["builtin", "stress-ng"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt], ids=["exception", "ctrl-c"])
def test_aggressor_leaves_no_process_behind(kind: str, exc: type[BaseException]) -> None:
    if kind == "stress-ng":
        pytest.importorskip("shutil").which("stress-ng") or pytest.skip("stress-ng not installed")
    agg = Aggressor(resolve_kind(kind), workers=2)
    with pytest.raises(exc), agg:
        pids = agg.wait_workers()
        pgid = agg.pgid
        assert len(pids) >= 2
        raise exc()
    assert pgid is not None and group_members(pgid) == []


def test_unknown_aggressor_and_placement_are_named() -> None:
    with pytest.raises(AggressorError, match=r"unknown kind 'spin'.*auto, stress-ng, builtin"):
        resolve_kind("spin")
    with pytest.raises(PlacementError, match=r"unknown mode 'numa'.*auto, cgroup, affinity"):
        resolve_mode("numa")


def test_failing_victim_is_an_error_not_a_number() -> None:
    solo = next(s for s in SCENARIOS if s.name == "solo/static-off")
    with (
        Placer(discover("/"), "affinity") as placer,
        pytest.raises(IsolationError, match=r"victim victim:.*scale"),
    ):
        execute(solo, "canneal-like", scale=-1.0, placer=placer, aggressor_kind="builtin")


def test_tiny_end_to_end_run_writes_json_and_png(tmp_path: Path) -> None:
    seen: list[Running] = []
    t0 = time.monotonic()
    report = run(
        runs=2,
        kernels=["blackscholes-like"],
        scale=0.02,
        placement="affinity",
        aggressor="builtin",
        out=tmp_path,
        progress=False,
        on_start=seen.append,
    )
    assert time.monotonic() - t0 < 20
    data = json.loads((tmp_path / "isolation.json").read_text())
    assert (data["placement"], data["aggressor"], data["runs"]) == ("affinity", "builtin", 2)
    series = {s["series"] for s in data["summary"]}
    assert {"solo/static-off", "aggressor/static-on", "colocated-burstable/static-off"} <= series
    assert len(data["samples"]) == 2 * 10 and all(s["seconds"] > 0 for s in data["samples"])
    assert all(s["runqueue_wait_s"] >= 0 and s["involuntary_switches"] >= 0 for s in data["samples"])
    assert {c["series"] for c in data["mechanism"]} == {"aggressor", "colocated-guaranteed"}
    assert data["machine"]["cpus"] == discover("/").num_cpus and data["notes"]
    assert data["machine"]["load_average_before_1m"] >= 0
    assert any(n.startswith("Load average before the runs: ") for n in data["notes"])
    assert [c["kernel"] for c in data["targets"]] == ["blackscholes-like"]
    assert (tmp_path / "isolation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pgids = [r.aggressor_pgid for r in seen if r.aggressor_pgid is not None]
    assert len(pgids) == 2 * 6 and all(group_members(g) == [] for g in pgids)
    pinned = [r for r in seen if r.scenario.name == "aggressor/static-on"]
    assert pinned and all(r.seats["victim"].exclusive for r in pinned)
    assert all(not r.seats["victim"].cpus & r.seats["aggressor"].cpus for r in pinned)
    assert report.files["png"] == str(tmp_path / "isolation.png")
