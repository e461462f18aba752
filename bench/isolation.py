"""``topolet bench isolation``: victims beside an aggressor, static CPU manager policy on vs off.

Scenarios (after the CPU manager's PARSEC study):

* ``solo``: the victim alone, policy off and on: the baseline;
* ``aggressor``: a Guaranteed victim beside a CPU stressor on every CPU; with the static
  policy the victim holds an exclusive CPU and the stressor stays in the shared pool;
* ``colocated``: two victims at once, one Guaranteed and one Burstable, beside the stressor;
* ``membw``: the Guaranteed victim beside a memory-bandwidth stressor: what pinning cannot
  isolate (shared L3 and memory bandwidth).

Every run of every scenario runs each kernel (``bench.kernels``) in child processes that
are placed by ``bench.placement`` before they execute and timed from inside, after a
start barrier, so interpreter start-up and input generation are not counted. Beside the
wall time every run records what the kernel's scheduler saw (``bench.schedstat``): the
victim's run-queue wait, involuntary context switches and migrations, and the CPU time
other tasks ran on the victim's CPUs: every task's time on those CPUs (the root
``cpuacct`` group's ``usage_percpu``, in nanoseconds; ``/proc/stat``'s 10 ms ticks where
cgroup v1 ``cpuacct`` is absent) minus the victim's own (its ``cpuacct`` group, exit
included; its self-timed CPU without one).
Results are summarised per kernel and series (median and IQR of each, wall time also
normalised to the ``solo/static-off`` median), written as JSON with box plots as PNG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.aggressor import Aggressor, die_with_parent, resolve_kind
from bench.errors import BenchError
from bench.kernels import KERNELS
from bench.placement import V1_CPUACCT, Placer, Request, Seat, resolve_mode, usage_reader
from topology.model import Topology

__all__ = [
    "BASELINE",
    "MECHANISM_TARGET",
    "SCENARIOS",
    "IsolationError",
    "MechanismCheck",
    "Ratio",
    "Report",
    "Sample",
    "Scenario",
    "SeriesStats",
    "mechanism_checks",
    "run",
    "summarize",
    "targets",
]

BASELINE = "solo/static-off"
DEFAULT_OUT = Path("topolet-report/isolation")
WARMUP_S = 0.3
"""The aggressor runs this long before the victims start, so they meet it at full load."""
QUICK_RUNS = 3
MECHANISM_TARGET = 0.05
"""Policy on: run-queue wait and others' CPU time on the victim's CPUs <= 5 % of policy off."""
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


class IsolationError(BenchError, RuntimeError):
    """A victim failed (its self-check, or its process)."""


@dataclass(frozen=True)
class Scenario:
    group: str
    static: bool
    aggressor: Literal["cpu", "memory"] | None
    """The stressor's load, or None for no stressor."""
    victims: tuple[Request, ...]

    @property
    def name(self) -> str:
        return f"{self.group}/static-{'on' if self.static else 'off'}"

    def series(self, victim: str) -> str:
        """The series a victim's timings belong to (one box in the plot)."""
        role = "" if len(self.victims) == 1 else f"-{victim}"
        return f"{self.group}{role}/static-{'on' if self.static else 'off'}"


_VICTIM = (Request("victim", "guaranteed", 1),)
_PAIR = (Request("guaranteed", "guaranteed", 1), Request("burstable", "burstable", 0))
_GROUPS: tuple[tuple[str, Literal["cpu", "memory"] | None, tuple[Request, ...]], ...] = (
    ("solo", None, _VICTIM),
    ("aggressor", "cpu", _VICTIM),
    ("colocated", "cpu", _PAIR),
    ("membw", "memory", _VICTIM),
)
SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(group, static, aggressor, victims)
    for group, aggressor, victims in _GROUPS
    for static in (False, True)
)


@dataclass(frozen=True)
class Sample:
    kernel: str
    series: str
    run: int
    seconds: float
    cpu_seconds: float
    others_s: float = 0.0
    """CPU time others (aggressor, other victims, anything else on the machine) used on
    this victim's CPUs while it ran: the contention it met."""
    runqueue_wait_s: float = 0.0
    """Time the victim's threads waited on a run queue while timed (``schedstat``)."""
    bench_others_s: float | None = None
    """The part of ``others_s`` that the scenario's own other containers (aggressor, other
    victim) used, from their ``cpuacct`` groups: what the policy controls. None without
    ``cpuacct`` (affinity placement)."""
    involuntary_switches: int = 0
    migrations: int | None = None
    """None where the kernel has no ``/proc/<pid>/sched``."""


@dataclass(frozen=True)
class Running:
    """What runs right now (passed to the ``on_start`` hook once the victims are released)."""

    scenario: Scenario
    victims: dict[str, int]
    aggressor_pgid: int | None
    seats: dict[str, Seat]


# ------------------------------------------------------------------ statistics (pure)


#: The kernel's counters summarised beside the wall time: (Sample field, label, unit).
METRICS: tuple[tuple[str, str, str], ...] = (
    ("runqueue_wait_s", "run-queue wait", "s"),
    ("others_s", "others' CPU time on its CPUs", "s"),
    ("involuntary_switches", "involuntary context switches", ""),
    ("migrations", "migrations", ""),
)


@dataclass(frozen=True)
class SeriesStats:
    kernel: str
    series: str
    runs: int
    median_s: float
    iqr_s: float
    best_s: float
    """The kernel's best run over every series."""
    median_norm: float
    """Median over the kernel's ``solo/static-off`` median (1.0 = solo; over the best run
    when there is no solo series)."""
    iqr_norm: float
    """IQR over the same solo median."""
    slowdown: float | None
    """Median over the ``solo/static-off`` median (None without that series)."""
    q1_norm: float = 0.0
    q3_norm: float = 0.0
    others_median_s: float = 0.0
    """Median CPU time others used on the victim's CPUs during a run (see :class:`Sample`)."""
    others_iqr_s: float = 0.0
    bench_others_median_s: float | None = None
    """Median of :attr:`Sample.bench_others_s` (None without ``cpuacct``)."""
    bench_others_iqr_s: float | None = None
    runqueue_wait_median_s: float = 0.0
    runqueue_wait_iqr_s: float = 0.0
    involuntary_switches_median: float = 0.0
    involuntary_switches_iqr: float = 0.0
    migrations_median: float | None = None
    migrations_iqr: float | None = None


def _iqr(values: Sequence[float]) -> float:
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q3 - q1)


def _median_iqr(values: Sequence[float | int | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None for v in values):
        return None, None
    nums = [float(v) for v in values if v is not None]
    return float(np.median(nums)), _iqr(nums)


def summarize(samples: Sequence[Sample], baseline: str = BASELINE) -> list[SeriesStats]:
    """Median and IQR of the wall time and of every kernel counter per (kernel, series),
    in first-seen order; wall time also over the kernel's baseline median."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.kernel, s.series), []).append(s)
    best: dict[str, float] = {}
    for (k, _), v in groups.items():
        best[k] = min(best.get(k, float("inf")), *(x.seconds for x in v))
    out = []
    for (kernel, series), group in groups.items():
        times = [x.seconds for x in group]
        med = float(np.median(times))
        base = groups.get((kernel, baseline))
        base_med = float(np.median([x.seconds for x in base])) if base else None
        unit = base_med or best[kernel]
        q1, q3 = np.percentile(np.asarray(times, dtype=float), [25, 75])
        others = _median_iqr([x.others_s for x in group])
        wait = _median_iqr([x.runqueue_wait_s for x in group])
        bench = _median_iqr([x.bench_others_s for x in group])
        invol = _median_iqr([x.involuntary_switches for x in group])
        migr = _median_iqr([x.migrations for x in group])
        out.append(
            SeriesStats(
                kernel=kernel,
                series=series,
                runs=len(times),
                median_s=med,
                iqr_s=_iqr(times),
                best_s=best[kernel],
                median_norm=med / unit,
                iqr_norm=_iqr(times) / unit,
                slowdown=med / base_med if base_med else None,
                q1_norm=float(q1) / unit,
                q3_norm=float(q3) / unit,
                others_median_s=others[0] or 0.0,
                others_iqr_s=others[1] or 0.0,
                bench_others_median_s=bench[0],
                bench_others_iqr_s=bench[1],
                runqueue_wait_median_s=wait[0] or 0.0,
                runqueue_wait_iqr_s=wait[1] or 0.0,
                involuntary_switches_median=invol[0] or 0.0,
                involuntary_switches_iqr=invol[1] or 0.0,
                migrations_median=migr[0],
                migrations_iqr=migr[1],
            )
        )
    return out


@dataclass(frozen=True)
class TargetCheck:
    kernel: str
    slowdown_pinned: float
    """aggressor/static-on median over the solo/static-off median (target <= 1.05)."""
    iqr_ratio: float | None
    """aggressor/static-on IQR over aggressor/static-off IQR (target <= 1/3)."""
    median_ok: bool
    iqr_ok: bool


def targets(stats: Sequence[SeriesStats]) -> list[TargetCheck]:
    """The design's isolation targets per kernel, where both series were measured."""
    by = {(s.kernel, s.series): s for s in stats}
    out = []
    for kernel in dict.fromkeys(s.kernel for s in stats):
        on, off = by.get((kernel, "aggressor/static-on")), by.get((kernel, "aggressor/static-off"))
        if on is None or off is None or on.slowdown is None:
            continue
        ratio = on.iqr_s / off.iqr_s if off.iqr_s > 0 else None
        out.append(
            TargetCheck(kernel, on.slowdown, ratio, on.slowdown <= 1.05, ratio is not None and ratio <= 1 / 3)
        )
    return out


@dataclass(frozen=True)
class Ratio:
    """One kernel counter's median with the policy off and on, and on over off."""

    off: float
    on: float
    ratio: float | None
    """None when off is 0."""
    ok: bool
    """on <= :data:`MECHANISM_TARGET` x off."""


def _ratio(on: float, off: float) -> Ratio:
    if off <= 0:
        return Ratio(off, on, None, on <= 0)
    return Ratio(off, on, on / off, on / off <= MECHANISM_TARGET)


@dataclass(frozen=True)
class MechanismCheck:
    """Policy on against policy off for one kernel and exclusive victim, from the kernel's
    counters (medians). ``wait`` and ``others`` count everything on the machine;
    ``bench_others`` only the scenario's own containers (the aggressor, the other victim),
    and ``excess_wait`` the wait beyond the solo run with the same policy: on a machine
    that other work keeps busy, these two are what the policy controls."""

    kernel: str
    series: str
    """The series without its ``/static-*`` suffix (``aggressor``, ``colocated-guaranteed``)."""
    wait: Ratio
    others: Ratio
    excess_wait: Ratio | None
    bench_others: Ratio | None


def mechanism_checks(stats: Sequence[SeriesStats]) -> list[MechanismCheck]:
    """Every exclusive victim beside the CPU aggressor: its run-queue wait and the others'
    CPU time on its CPUs with the policy on, against off (target <= 5 %)."""
    by = {(s.kernel, s.series): s for s in stats}
    out = []
    for kernel, series in dict.fromkeys((s.kernel, s.series.rsplit("/", 1)[0]) for s in stats):
        if series not in ("aggressor", "colocated-guaranteed"):
            continue
        on, off = by.get((kernel, f"{series}/static-on")), by.get((kernel, f"{series}/static-off"))
        if on is None or off is None:
            continue
        solo_on, solo_off = by.get((kernel, "solo/static-on")), by.get((kernel, "solo/static-off"))
        excess = None
        if solo_on is not None and solo_off is not None:
            excess = _ratio(
                max(0.0, on.runqueue_wait_median_s - solo_on.runqueue_wait_median_s),
                max(0.0, off.runqueue_wait_median_s - solo_off.runqueue_wait_median_s),
            )
        bench = None
        if on.bench_others_median_s is not None and off.bench_others_median_s is not None:
            bench = _ratio(on.bench_others_median_s, off.bench_others_median_s)
        out.append(
            MechanismCheck(
                kernel,
                series,
                _ratio(on.runqueue_wait_median_s, off.runqueue_wait_median_s),
                _ratio(on.others_median_s, off.others_median_s),
                excess,
                bench,
            )
        )
    return out


# ------------------------------------------------------------------ running


def tasks_cpu_seconds(
    cpuacct: Path = V1_CPUACCT, stat: Path = Path("/proc/stat")
) -> tuple[dict[int, float], str]:
    """CPU seconds every task of the machine ran on each CPU since boot, and the source:
    the root ``cpuacct`` group's ``usage_percpu`` (nanoseconds; tasks only) where cgroup v1
    has it, else :func:`cpu_busy_seconds` (clock ticks of 10 ms; interrupts and time the
    hypervisor stole count as busy too)."""
    usage = usage_reader(cpuacct)() if (cpuacct / "cpuacct.usage_percpu").exists() else {}
    if usage:
        return usage, "cpuacct"
    return cpu_busy_seconds(stat), "proc-stat"


def cpu_busy_seconds(stat: Path = Path("/proc/stat")) -> dict[int, float]:
    """Busy (non-idle, non-iowait) seconds of every CPU since boot, from ``/proc/stat``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(f) for f in fields[:8]]
            out[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / tick
    return out


def _spawn(kernel: str, scale: float, seat: Seat) -> subprocess.Popen[str]:
    def setup() -> None:
        die_with_parent()
        seat.join()

    return subprocess.Popen(
        [sys.executable, "-m", "bench.kernels", kernel, "--scale", repr(scale), "--wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **_ONE_THREAD},
        preexec_fn=setup,
    )


def _parse(name: str, proc: subprocess.Popen[str], line: str) -> dict[str, Any]:
    """A victim's result line; its error (or its silent death) as :class:`IsolationError`."""
    try:
        data: dict[str, Any] = json.loads(line)
    except ValueError:
        proc.wait()
        raise IsolationError(
            f"victim {name} (pid {proc.pid}) exited with status {proc.returncode} and no result"
        ) from None
    if "error" in data:
        raise IsolationError(f"victim {name}: {data['error']}")
    return data


def _result(name: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    data = _parse(name, proc, proc.stdout.readline())
    if proc.wait() != 0:
        raise IsolationError(f"victim {name} (pid {proc.pid}) exited with status {proc.returncode}")
    return data


def _release(procs: dict[str, subprocess.Popen[str]]) -> None:
    for name, p in procs.items():
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            _parse(name, p, line)
            raise IsolationError(f"victim {name} (pid {p.pid}) said {line.strip()!r} instead of 'ready'")
    for p in procs.values():
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()


def execute(
    scenario: Scenario,
    kernel: str,
    *,
    scale: float,
    placer: Placer,
    aggressor_kind: str,
    on_start: Callable[[Running], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """One run of *scenario* with *kernel*: every victim's result, by victim name."""
    requests = list(scenario.victims)
    if scenario.aggressor:
        requests.append(Request("aggressor", "besteffort", 0))
    with placer.layout(requests, static=scenario.static) as seats:
        agg: AbstractContextManager[Aggressor | None] = nullcontext()
        if scenario.aggressor:
            agg = Aggressor(
                resolve_kind(aggressor_kind),
                workers=len(placer.cpus),
                join=seats["aggressor"].join,
                load=scenario.aggressor,
            )
        with agg as a:
            procs: dict[str, subprocess.Popen[str]] = {}
            try:
                for v in scenario.victims:
                    procs[v.name] = _spawn(kernel, scale, seats[v.name])
                if a is not None:
                    a.wait_workers()
                    time.sleep(max(0.0, a.started_at + WARMUP_S - time.monotonic()))
                _release(procs)
                usage0 = {n: s.usage() for n, s in seats.items() if s.usage is not None}
                before, source = tasks_cpu_seconds()
                if on_start is not None:
                    on_start(
                        Running(scenario, {n: p.pid for n, p in procs.items()}, a.pgid if a else None, seats)
                    )
                results = {n: _result(n, p) for n, p in procs.items()}
                after, _ = tasks_cpu_seconds()
                usage1 = {n: s.usage() for n, s in seats.items() if s.usage is not None}
                for n, res in results.items():
                    busy = sum(after.get(c, 0.0) - before.get(c, 0.0) for c in seats[n].cpus)
                    own = res["cpu_with_check_s"]
                    if n in usage0 and n in usage1 and usage1[n]:
                        # the victim's own cgroup: its whole run, exit included, to the ns
                        own = sum(usage1[n].get(c, 0.0) - usage0[n].get(c, 0.0) for c in seats[n].cpus)
                    res["others_s"] = max(0.0, busy - own)
                    res["others_source"] = source
                    if usage1 and len(usage1) == len(seats):
                        res["bench_others_s"] = sum(
                            usage1[o].get(c, 0.0) - usage0[o].get(c, 0.0)
                            for o in seats
                            if o != n
                            for c in seats[n].cpus
                        )
                return results
            finally:
                for p in procs.values():
                    if p.poll() is None:
                        p.kill()
                    p.wait()


@dataclass
class Report:
    placement: str
    aggressor: str
    cpus: str
    runs: int
    scale: float
    kernels: list[str]
    samples: list[Sample] = field(default_factory=list)
    stats: list[SeriesStats] = field(default_factory=list)
    checks: list[TargetCheck] = field(default_factory=list)
    mechanism: list[MechanismCheck] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    """What this machine offers and how noisy it was (``bench.machine_notes``)."""
    notes: list[str] = field(default_factory=list)
    """The figures in words, for this machine."""
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "placement": self.placement,
            "aggressor": self.aggressor,
            "cpus": self.cpus,
            "runs": self.runs,
            "scale": self.scale,
            "kernels": self.kernels,
            "baseline": BASELINE,
            "summary": [asdict(s) for s in self.stats],
            "targets": [asdict(c) for c in self.checks],
            "mechanism": [asdict(c) for c in self.mechanism],
            "mechanism_target": MECHANISM_TARGET,
            "machine": self.machine,
            "notes": self.notes,
            "samples": [asdict(s) for s in self.samples],
            "files": self.files,
        }


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        refresh_per_second=2,
    )


def run(
    *,
    runs: int | None = None,
    quick: bool = False,
    kernels: Sequence[str] | None = None,
    out: Path | str = DEFAULT_OUT,
    aggressor: str = "auto",
    placement: str = "auto",
    scale: float = 1.0,
    progress: bool = True,
    topology: Topology | None = None,
    scenarios: Sequence[Scenario] = SCENARIOS,
    on_start: Callable[[Running], None] | None = None,
) -> Report:
    """Run the benchmark, write ``isolation.json`` and ``isolation.png`` under *out*."""
    from bench.isolation_plot import plot
    from bench.machine_notes import explain, machine_facts
    from topology.sysfs import discover

    runs = runs or (QUICK_RUNS if quick else 10)
    names = list(kernels or KERNELS)
    unknown = [k for k in names if k not in KERNELS]
    if unknown:
        raise IsolationError(f"kernels: unknown {', '.join(unknown)}; expected some of {', '.join(KERNELS)}")
    if runs < 1 or not scale > 0:
        raise IsolationError(f"runs must be >= 1 and scale > 0, got runs={runs} scale={scale}")
    topo = topology or discover("/")
    mode, kind = resolve_mode(placement), resolve_kind(aggressor)
    report = Report(mode, kind, str(topo.online_cpus), runs, scale, names)
    load_before = os.getloadavg()[0]  # other work; at the end the aggressors' own load is in it
    with Placer(topo, mode) as placer, _progress(progress) as bar:
        task = bar.add_task(f"isolation ({mode}, {kind})", total=runs * len(names) * len(scenarios))
        for i in range(runs):
            for kernel in names:
                for sc in scenarios:
                    bar.update(task, description=f"run {i + 1}/{runs} {kernel} {sc.name}")
                    for victim, res in execute(
                        sc, kernel, scale=scale, placer=placer, aggressor_kind=kind, on_start=on_start
                    ).items():
                        report.samples.append(
                            Sample(
                                kernel,
                                sc.series(victim),
                                i,
                                res["seconds"],
                                res["cpu_seconds"],
                                res["others_s"],
                                res.get("runqueue_wait_s", 0.0),
                                res.get("bench_others_s"),
                                res.get("involuntary_switches", 0),
                                res.get("migrations"),
                            )
                        )
                    bar.advance(task)
    report.stats = summarize(report.samples)
    report.checks = targets(report.stats)
    report.mechanism = mechanism_checks(report.stats)
    report.machine = machine_facts(topo, report.stats, load_before=load_before)
    report.notes = explain(report)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.files = {"json": str(out / "isolation.json"), "png": str(out / "isolation.png")}
    plot(report, Path(report.files["png"]))
    Path(report.files["json"]).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report
