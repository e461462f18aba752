"""The discovery benchmark's statistics and snapshot lookup (the timing itself is not tested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.discover import (
    DiscoverResult,
    SnapshotsNotFoundError,
    default_snapshots_dir,
    find_snapshots,
    largest,
    to_json,
)
from bench.stats import percentile
from tests.snapshots import HWLOC_DIR, snapshot_names

# Nearest rank: the smallest sample with at least q % of the samples at or below it.
PERCENTILES = [
    ("one-sample/p50", [7.0], 50, 7.0),
    ("one-sample/p99", [7.0], 99, 7.0),
    ("ten/p50-is-5th", [float(i) for i in range(10, 0, -1)], 50, 5.0),
    ("ten/p99-is-max", [float(i) for i in range(1, 11)], 99, 10.0),
    ("hundred/p99-is-99th", [float(i) for i in range(1, 101)], 99, 99.0),
    ("p0-is-min", [3.0, 1.0, 2.0], 0, 1.0),
    ("p100-is-max", [3.0, 1.0, 2.0], 100, 3.0),
]


@pytest.mark.parametrize(
    ("samples", "q", "expected"), [c[1:] for c in PERCENTILES], ids=[c[0] for c in PERCENTILES]
)
def test_percentile_nearest_rank(samples: list[float], q: float, expected: float) -> None:
    assert percentile(samples, q) == expected


@pytest.mark.parametrize(
    ("samples", "q"), [([], 50), ([1.0], 101), ([1.0], -1)], ids=["empty", "q>100", "q<0"]
)
def test_percentile_rejects_bad_input(samples: list[float], q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile(samples, q)


def test_default_directory_is_the_conformance_set() -> None:
    assert default_snapshots_dir() == HWLOC_DIR


def test_every_case_is_found_with_its_top_dir() -> None:
    found = find_snapshots(HWLOC_DIR)
    assert [s.name for s in found] == sorted(p.stem for p in (HWLOC_DIR / "expected").glob("*.json"))
    assert set(snapshot_names()) >= {s.name for s in found}
    assert all(s.tarball.is_file() for s in found)


@pytest.mark.parametrize(
    ("directory", "names", "message"),
    [
        (Path("/nonexistent"), (), "no hwloc conformance set"),
        (HWLOC_DIR, ("no-such-machine",), "no snapshot named 'no-such-machine'"),
    ],
    ids=["missing-directory", "unknown-name"],
)
def test_missing_snapshots_raise_file_not_found(
    directory: Path, names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SnapshotsNotFoundError, match=message) as info:
        find_snapshots(directory, names)
    assert isinstance(info.value, FileNotFoundError)


def test_summary_picks_the_largest_and_judges_the_target() -> None:
    small = DiscoverResult("small", Path("a"), 2, (0.001, 0.002, 0.003))
    big = DiscoverResult("big", Path("b"), 256, (0.100, 0.150, 0.250))
    out = to_json([small, big])
    assert largest([small, big]) is big
    assert out["largest"] == {
        "name": "big",
        "cpus": 256,
        "repeat": 3,
        "p50_ms": 150.0,
        "p99_ms": 250.0,
        "max_ms": 250.0,
    }
    assert out["meets_target"] is False
