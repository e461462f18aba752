"""``topolet bench extender`` end to end on a small cluster: every figure is measured and
the extender's answers stay consistent with the cluster (binds reserve zones)."""

from __future__ import annotations

import pytest

from bench import extender


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_bench_runs_every_measurement(workers: int) -> None:
    out = extender.run(nodes=120, pods=12, name_counts=(40, 120), sustained_s=0.5, clients=1, workers=workers)
    for kind in ("in_process", "http"):
        for count in (40, 120):
            figures = out[kind][count]
            assert figures["samples"] == 12
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
            assert figures["cold_ms"] > 0
    sustained = out["sustained"]
    assert sustained["pods"] > 0 and sustained["workers"] == workers and sustained["node_names"] == 40
    pairs = out["sustained_pairs"]
    assert pairs["pairs"] > 0 and pairs["workers"] == workers and pairs["node_names"] == 40
    assert out["targets"]["pairs_per_s"] == pairs["pairs_per_s"] > 0
    assert out["targets"]["names"] == 120
    wake = out["wake"]
    assert wake["names"] == 40 and wake["gap_ms"] == extender.WAKE_GAP_S * 1e3
    assert all(wake[k] > 0 for k in ("back_to_back_ms", "after_sleep_ms", "after_busy_wait_ms"))


def test_cluster_and_shapes_are_reproducible() -> None:
    first = [n.name for n in extender.build_cluster(30, seed=4)]
    assert first == [n.name for n in extender.build_cluster(30, seed=4)] and len(set(first)) == 30
    assert len(extender.pod_shapes()) == 8
