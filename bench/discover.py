"""How long does :func:`topology.sysfs.discover` take on real machines' trees?

The inputs are hwloc's gathered sysfs snapshots (the topology conformance set, by
default ``<repo>/tests/conformance_data/hwloc``): every ``expected/NAME.json`` names its
tarball ``snapshots/NAME.tar.bz2`` and the tree's top folder (``tarball_top_dir``), which
is the root passed to ``discover``. Each tarball is extracted once into a temporary
directory; then each root is discovered once untimed (warm-up: page cache, imports) and
``repeat`` times timed with a monotonic clock.

Reported per snapshot and for the largest one (most CPUs): p50, p99 and max in
milliseconds. The target is p99 < :data:`TARGET_MS` on the largest snapshot.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.errors import BenchError
from bench.stats import percentile
from topology.model import Topology
from topology.sysfs import discover

__all__ = [
    "TARGET_MS",
    "DiscoverResult",
    "Snapshot",
    "SnapshotsNotFoundError",
    "bench_root",
    "default_snapshots_dir",
    "extracted",
    "find_snapshots",
    "largest",
    "render_table",
    "run",
    "to_json",
]

#: Target for one discovery of the largest snapshot, in milliseconds.
TARGET_MS = 200.0

Clock = Callable[[], float]


class SnapshotsNotFoundError(BenchError, FileNotFoundError):
    """The snapshot directory, or a named snapshot in it, does not exist."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(2, what, str(path))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One hwloc case: its name, tarball and the top folder inside the tarball."""

    name: str
    tarball: Path
    top_dir: str


@dataclass(frozen=True, slots=True)
class DiscoverResult:
    """Timings of one root: ``samples_s`` in seconds, in run order."""

    name: str
    root: Path
    cpus: int
    samples_s: tuple[float, ...]

    def p(self, q: float) -> float:
        """The *q*-th percentile (0..100) in milliseconds."""
        return percentile(self.samples_s, q) * 1000.0

    @property
    def max_ms(self) -> float:
        return max(self.samples_s) * 1000.0


def default_snapshots_dir() -> Path:
    """``<repo>/tests/conformance_data/hwloc``, where the hwloc conformance set is kept."""
    return Path(__file__).resolve().parents[1] / "tests" / "conformance_data" / "hwloc"


def find_snapshots(directory: Path, names: Sequence[str] = ()) -> list[Snapshot]:
    """The snapshots of *directory*: all of them sorted by name, or *names* in that order."""
    expected = directory / "expected"
    if not expected.is_dir():
        raise SnapshotsNotFoundError(
            expected, "no hwloc conformance set here (expected DIR/expected/*.json and DIR/snapshots/)"
        )
    found = {}
    for path in sorted(expected.glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        name = str(case["name"])
        found[name] = Snapshot(
            name, directory / "snapshots" / f"{name}.tar.bz2", str(case["tarball_top_dir"])
        )
    for name in names:
        if name not in found:
            raise SnapshotsNotFoundError(expected / f"{name}.json", f"no snapshot named {name!r}")
    chosen = [found[n] for n in names] if names else [found[n] for n in sorted(found)]
    for snap in chosen:
        if not snap.tarball.is_file():
            raise SnapshotsNotFoundError(snap.tarball, "snapshot tarball missing")
    return chosen


@contextmanager
def extracted(snapshots: Sequence[Snapshot]) -> Iterator[dict[str, Path]]:
    """Extract every snapshot once into a temporary directory; yields ``{name: root}``."""
    with tempfile.TemporaryDirectory(prefix="topolet-bench-") as tmp:
        roots = {}
        for snap in snapshots:
            dest = Path(tmp) / snap.name
            with tarfile.open(snap.tarball) as tar:
                tar.extractall(dest, filter="data")
            roots[snap.name] = dest / snap.top_dir
        yield roots


def bench_root(
    name: str,
    root: Path,
    repeat: int,
    *,
    clock: Clock = time.perf_counter,
    discover_fn: Callable[[Path], Topology] = discover,
) -> DiscoverResult:
    """Time *repeat* discoveries of *root* after one untimed warm-up."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    topo = discover_fn(root)
    samples = []
    for _ in range(repeat):
        start = clock()
        discover_fn(root)
        samples.append(clock() - start)
    return DiscoverResult(name, root, topo.num_cpus, tuple(samples))


def run(
    snapshots: Sequence[Snapshot], repeat: int, *, clock: Clock = time.perf_counter
) -> list[DiscoverResult]:
    """Extract and time every snapshot."""
    with extracted(snapshots) as roots:
        return [bench_root(name, root, repeat, clock=clock) for name, root in roots.items()]


def largest(results: Sequence[DiscoverResult]) -> DiscoverResult:
    """The result of the root with the most CPUs (the first one on ties)."""
    return max(results, key=lambda r: r.cpus)


def _row(r: DiscoverResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "cpus": r.cpus,
        "repeat": len(r.samples_s),
        "p50_ms": round(r.p(50), 3),
        "p99_ms": round(r.p(99), 3),
        "max_ms": round(r.max_ms, 3),
    }


def to_json(results: Sequence[DiscoverResult]) -> dict[str, Any]:
    """A JSON-ready summary: every result, the largest, the target and whether it is met."""
    big = largest(results)
    return {
        "benchmark": "discover",
        "unit": "ms",
        "target_p99_ms": TARGET_MS,
        "results": [_row(r) for r in results],
        "largest": _row(big),
        "meets_target": big.p(99) < TARGET_MS,
    }


def render_table(results: Sequence[DiscoverResult]) -> Table:
    """A rich table of the results, the largest snapshot marked and judged against the target."""
    big = largest(results)
    table = Table(title=f"topology.sysfs.discover(): {len(big.samples_s)} runs each, milliseconds")
    for col in ("snapshot", "CPUs", "p50", "p99", "max"):
        table.add_column(col, justify="left" if col == "snapshot" else "right")
    for r in results:
        style = "bold" if r is big else None
        table.add_row(r.name, str(r.cpus), f"{r.p(50):.2f}", f"{r.p(99):.2f}", f"{r.max_ms:.2f}", style=style)
    verdict = "[green]met[/]" if big.p(99) < TARGET_MS else "[red]missed[/]"
    table.caption = (
        f"largest: {big.name} ({big.cpus} CPUs) p99 {big.p(99):.1f} ms; target < {TARGET_MS:.0f} ms {verdict}"
    )
    return table
