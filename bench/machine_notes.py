"""What the isolation figures mean on this machine, in words.

:func:`machine_facts` gathers what bears on the result: CPUs, cores, whether SMT is
visible, a hypervisor, cache/memory-bandwidth allocation (Linux ``resctrl``: the
``/sys/fs/resctrl`` mount and the CPU flags ``rdt_a``, ``cat_l3``, ``cdp_l3``, ``mba``,
``cqm_*``), and how noisy the solo runs were. :func:`explain` turns a finished report into
a few sentences for the terminal, ``isolation.json`` and the demo's ``report.md``.
Paths are parameters so tests can read a written tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topology.model import Topology

if TYPE_CHECKING:
    from bench.isolation import MechanismCheck, Ratio, Report, SeriesStats

__all__ = ["RDT_FLAGS", "cache_allocation", "explain", "machine_facts"]

#: CPU flags of cache and memory-bandwidth allocation/monitoring (Intel RDT, AMD PQoS).
RDT_FLAGS = ("rdt_a", "cat_l3", "cat_l2", "cdp_l3", "mba", "cqm_llc", "cqm_occup_llc", "cqm_mbm_total")
_MAX_READ = 4 * 1024 * 1024


def _read(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(_MAX_READ).decode("utf-8", "replace")
    except OSError:
        return ""


def _cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cache_allocation(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    resctrl: Path = Path("/sys/fs/resctrl"),
    filesystems: Path = Path("/proc/filesystems"),
) -> dict[str, Any]:
    """Whether L3 / memory-bandwidth allocation is offered here, and by what."""
    flags = _cpu_flags(_read(cpuinfo))
    mounted = (resctrl / "info").is_dir()
    resources = sorted(p.name for p in (resctrl / "info").iterdir()) if mounted else []
    return {
        "cpu_flags": sorted(flags & set(RDT_FLAGS)),
        "hypervisor": "hypervisor" in flags,
        "kernel_resctrl": "resctrl" in _read(filesystems).split(),
        "resctrl_mounted": mounted,
        "resctrl_resources": resources,
        "l3_allocation": "cat_l3" in flags or "L3" in resources,
        "mb_allocation": "mba" in flags or "MB" in resources,
    }


def _solo_noise(stats: Sequence[SeriesStats]) -> float | None:
    """The largest solo IQR over its median, over the kernels (None without solo runs)."""
    solo = [s for s in stats if s.series == "solo/static-off" and s.median_s > 0]
    return max((s.iqr_s / s.median_s for s in solo), default=None)


def _load_average(loadavg: Path = Path("/proc/loadavg")) -> float | None:
    try:
        return float(_read(loadavg).split()[0])
    except (IndexError, ValueError):
        return None


def machine_facts(
    topo: Topology, stats: Sequence[SeriesStats], *, load_before: float | None = None
) -> dict[str, Any]:
    """The facts :func:`explain` speaks of. *load_before*: the 1-minute load average
    before the first run (at the end it also holds the benchmark's own aggressors)."""
    tpc = topo.threads_per_core()
    return {
        "load_average_1m": _load_average(),
        "load_average_before_1m": load_before,
        "cpus": topo.num_cpus,
        "cores": topo.num_cores,
        "packages": topo.num_sockets,
        "numa_nodes": topo.num_numa_nodes,
        "threads_per_core": tpc,
        "smt_visible": tpc > 1,
        "solo_noise": _solo_noise(stats),
        "cache_allocation": cache_allocation(),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _range(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if abs(hi - lo) < 0.005 else f"{lo:.2f}x to {hi:.2f}x"


def _worst(report: Report, get: Callable[[MechanismCheck], Ratio | None]) -> tuple[float, float, bool] | None:
    """The largest off and on medians over the checks, and whether every check was met."""
    found = [r for r in (get(c) for c in report.mechanism) if r is not None]
    if not found:
        return None
    return max(r.off for r in found), max(r.on for r in found), all(r.ok for r in found)


def _ms(x: float) -> str:
    return f"{1000 * x:.1f} ms"


def _mechanism_sentences(report: Report) -> list[str]:
    out: list[str] = []
    wait, others = _worst(report, lambda c: c.wait), _worst(report, lambda c: c.others)
    if wait is None or others is None:
        return out
    out.append(
        f"With the static policy on, the exclusive victim's median run-queue wait was at most "
        f"{_ms(wait[1])} (policy off: up to {_ms(wait[0])}) and the CPU time all other tasks ran on "
        f"its CPU at most {_ms(others[1])} (off: up to {_ms(others[0])}); target on <= 5 % of off: "
        f"{'met' if wait[2] and others[2] else 'MISSED'}."
    )
    bench, excess = _worst(report, lambda c: c.bench_others), _worst(report, lambda c: c.excess_wait)
    if bench is not None and excess is not None:
        out.append(
            f"Counting only this benchmark's own containers (their cpuacct groups), the aggressor and "
            f"the other victim ran at most {_ms(bench[1])} on the exclusive CPU with the policy on "
            f"(off: up to {_ms(bench[0])}; {'met' if bench[2] else 'MISSED'}), and the wait beyond the "
            f"solo run was at most {_ms(excess[1])} (off: up to {_ms(excess[0])}; "
            f"{'met' if excess[2] else 'MISSED'}). This is what the policy controls: no container of "
            "the node runs on an exclusive CPU. Work outside the node's containers (here: everything "
            "else on this host) is not confined by kubelet's CPU manager and still runs there."
        )
    return out


def _wall_sentence(report: Report) -> str | None:
    def norms(series: str) -> list[float]:
        return [s.median_norm for s in report.stats if s.series == series]

    pinned, membw = norms("aggressor/static-on"), norms("membw/static-on")
    if not pinned:
        return None
    text = f"Pinned beside the CPU aggressor the victims ran at {_range(pinned)} their solo median"
    if membw:
        text += f"; pinned beside the memory-bandwidth aggressor at {_range(membw)}"
    return text + "."


def _shared_sentence(report: Report) -> str:
    m = report.machine
    smt = (
        "SMT is visible here, so a sibling thread of the victim's core can still be busy unless "
        "full-pcpus-only hands out whole cores"
        if m.get("smt_visible")
        else "SMT is not visible here (1 thread per core)"
    )
    if m.get("cache_allocation", {}).get("hypervisor"):
        smt += "; this is a virtual machine, whose vCPUs may be hyperthreads of host cores other guests use"
    return (
        f"What pinning cannot remove is what CPUs share beyond the CPU itself: {smt}; the L3 cache "
        "and the memory bandwidth are shared by every core of a package, which the membw scenario "
        "shows."
    )


def _resctrl_sentence(ca: dict[str, Any]) -> str:
    if ca.get("l3_allocation") or ca.get("mb_allocation"):
        what = " and ".join(
            n
            for n, k in (
                ("L3 cache allocation", "l3_allocation"),
                ("memory-bandwidth allocation", "mb_allocation"),
            )
            if ca.get(k)
        )
        mount = (
            "/sys/fs/resctrl is mounted"
            if ca.get("resctrl_mounted")
            else "mount it with `mount -t resctrl resctrl /sys/fs/resctrl`"
        )
        return (
            f"This machine offers {what} (flags {', '.join(ca.get('cpu_flags', [])) or 'none'}); {mount}. "
            "An L3 partition for exclusive CPUs would need one resctrl group per exclusive container "
            "whose schemata line `L3:<cache id>=<way mask>` gives it ways no other group has (and `MB:` "
            "a bandwidth share), its CPUs in `cpus_list`, and the default group's mask shrunk to the "
            "remaining ways; topolet does not do this."
        )
    flags = ", ".join(ca.get("cpu_flags", [])) or "none of rdt_a, cat_l3, mba"
    return (
        f"This machine offers no cache or memory-bandwidth allocation (CPU flags: {flags}; "
        f"/sys/fs/resctrl {'mounted' if ca.get('resctrl_mounted') else 'not mounted'}), so the L3 and "
        "memory bandwidth cannot be partitioned here."
    )


def explain(report: Report) -> list[str]:
    """The figures of *report* in words: the machine, the noise, the mechanism, the rest."""
    m = report.machine
    cores = m.get("cores", 0)
    notes = [
        f"This machine: {m.get('cpus')} CPU{'s' if m.get('cpus') != 1 else ''} in {cores} "
        f"core{'s' if cores != 1 else ''}, {m.get('threads_per_core')} thread(s) per core, "
        f"{report.placement} placement, {report.runs} run{'s' if report.runs != 1 else ''} per scenario."
    ]
    load = m.get("load_average_before_1m")
    if load is not None:
        notes.append(
            f"Load average before the runs: {load:.1f} runnable tasks for {m.get('cpus')} CPUs"
            + (
                " — the machine was busy with other work, which every figure here includes."
                if load > m.get("cpus", 1)
                else "."
            )
        )
    noise = m.get("solo_noise")
    if noise is not None:
        notes.append(
            f"Solo runs alone vary: IQR up to {_pct(noise)} of the median; differences in wall time "
            "smaller than the shaded solo band in the plot are noise."
        )
    notes += _mechanism_sentences(report)
    wall = _wall_sentence(report)
    if wall:
        notes.append(wall)
    notes.append(_shared_sentence(report))
    notes.append(_resctrl_sentence(m.get("cache_allocation", {})))
    notes.append(
        "On a quiet machine with 4 or more physical cores, expect the pinned victim within 5 % of "
        "its solo run beside the CPU aggressor with a narrower box than unpinned, and a slowdown "
        "beside the memory-bandwidth aggressor that pinning does not change."
    )
    return notes
