"""``topolet bench all``: every benchmark in one run, one JSON document out.

Each entry of :data:`COLLECTORS` runs one benchmark with settings fit for a full run or,
with ``--quick``, for a smoke run (CI, the demo), and returns a JSON-ready dict. The
document written by ``--json`` is::

    {"topolet_bench": 1, "quick": bool, "host": {...},
     "benchmarks": {"<name>": {"seconds": float, "ok": bool, "result": {...} | "error": str}}}

A benchmark that fails is recorded with its error and the others still run; the exit code
is 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from topolet.cli import CommandError, common_options
from topolet.tables import add_format_option, print_table, wants_json

__all__ = ["COLLECTORS", "collect", "register_all"]

Collector = Callable[[bool], Any]


def _discover(quick: bool) -> Any:
    from bench import discover as bd

    snapshots = bd.find_snapshots(bd.default_snapshots_dir())
    if not snapshots:
        raise CommandError("no hwloc snapshots found (expected tests/conformance_data/hwloc)")
    if quick:
        snapshots = sorted(snapshots, key=lambda s: s.name)[:3]
    return bd.to_json(bd.run(snapshots, 3 if quick else 20))


def _alloc(quick: bool) -> Any:
    from bench import alloc

    return alloc.as_dicts(alloc.run(min_samples=50 if quick else 500))


def _deviceplugin(quick: bool) -> Any:
    from bench.deviceplugin import bench_deviceplugin

    return [asdict(r) for r in bench_deviceplugin(50 if quick else 500)]


def _headline(name: str, result: Any) -> str:
    """One line of the figures that matter, for the table."""
    if name == "discover":
        big = result["largest"]
        return f"largest {big['name']} ({big['cpus']} CPUs): p50 {big['p50_ms']} ms, p99 {big['p99_ms']} ms"
    if name == "alloc":
        return ", ".join(f"{r['request']} CPUs p99 {r['p99_us']:.0f} us" for r in result)
    if name == "deviceplugin":
        return ", ".join(f"{r['rpc']} p99 {r['p99_us']:.0f} us" for r in result)
    if name == "extender":
        t = result["targets"]
        return (
            f"{t['names']} names p99 {t['p99_ms']['in_process']} ms in process"
            + (f", {t['p99_ms']['http']} ms HTTP" if "http" in t["p99_ms"] else "")
            + (f", {t['pods_per_s']} pods/s" if "pods_per_s" in t else "")
        )
    if name == "fragmentation":
        return "whole socket free: " + ", ".join(
            f"{c['choice']} {c['whole_socket_fraction']:.1%}" for c in result["summary"]
        )
    if name == "isolation":
        parts = [f"{c['kernel']} {c['slowdown_pinned']:.2f}x solo" for c in result["targets"]]
        return f"{result['placement']} placement, pinned victim beside aggressor: " + ", ".join(parts)
    return f"see topolet bench {name} --json"


def _extender(quick: bool) -> Any:
    from bench import extender

    if quick:
        return extender.run(nodes=1000, pods=50, name_counts=(100, 1000), sustained_s=2.0)
    return extender.run()


def _fragmentation(quick: bool) -> Any:
    from bench import fragmentation

    return fragmentation.as_dicts(fragmentation.run(seeds=2 if quick else 5, steps=500 if quick else 2000))


def _isolation(quick: bool) -> Any:
    import tempfile

    from bench import isolation

    with tempfile.TemporaryDirectory(prefix="topolet-bench-isolation-") as out:
        report = isolation.run(quick=quick, scale=0.5 if quick else 1.0, out=out, progress=False)
        doc = report.to_json()
    doc.pop("files", None)
    return doc


#: ``name -> collector(quick)``, in the order they run.
COLLECTORS: dict[str, Collector] = {
    "discover": _discover,
    "alloc": _alloc,
    "deviceplugin": _deviceplugin,
    "extender": _extender,
    "fragmentation": _fragmentation,
    "isolation": _isolation,
}


def collect(names: list[str], quick: bool, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the named benchmarks; returns the JSON document described in the module doc."""
    out: dict[str, Any] = {
        "topolet_bench": 1,
        "quick": quick,
        "host": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "benchmarks": {},
    }
    for name in names:
        if progress is not None:
            progress(name)
        start = time.perf_counter()
        entry: dict[str, Any]
        try:
            entry = {"ok": True, "result": COLLECTORS[name](quick)}
        except (CommandError, OSError, ValueError, RuntimeError) as err:
            entry = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        entry["seconds"] = round(time.perf_counter() - start, 3)
        out["benchmarks"][name] = entry
    return out


def register_all(subparsers: Any) -> None:
    """Add ``all`` to the ``bench`` subparsers."""
    p = subparsers.add_parser(
        "all",
        parents=[common_options()],
        help=f"run every benchmark ({', '.join(COLLECTORS)}) and report them together",
        description="Run every benchmark, or those named with --only, and print a summary or "
        "(with --json) one JSON document that a user or CI can record.",
    )
    p.add_argument("--quick", action="store_true", help="fewer samples: a smoke run in seconds to minutes")
    p.add_argument(
        "--only",
        action="append",
        choices=list(COLLECTORS),
        default=None,
        metavar="NAME",
        help=f"run only this benchmark (repeatable; one of {', '.join(COLLECTORS)})",
    )
    add_format_option(p)
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON document to FILE")
    p.set_defaults(func=_run_all)


def _run_all(args: argparse.Namespace) -> int:
    names = args.only or list(COLLECTORS)

    def progress(name: str) -> None:
        print(f"topolet bench: running {name} ...", file=sys.stderr, flush=True)

    doc = collect(names, args.quick, progress)
    text = json.dumps(doc, indent=2, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if wants_json(args):
        print(text)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="topolet bench all" + (" (quick)" if args.quick else ""))
        for col in ("benchmark", "ok", "seconds", "detail"):
            table.add_column(col)
        for name, entry in doc["benchmarks"].items():
            detail = entry["error"] if not entry["ok"] else _headline(name, entry["result"])
            table.add_row(name, "yes" if entry["ok"] else "NO", f"{entry['seconds']:.1f}", detail)
        print_table(table, Console())
    return 0 if all(e["ok"] for e in doc["benchmarks"].values()) else 1
