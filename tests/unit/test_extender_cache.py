"""The NRT cache's reservations: when they hold and when they end (injected clock)."""

from __future__ import annotations

import pytest

from scheduler.cache import NRTCache
from tests.extender_helpers import nrt_obj
from topology.nrt import NodeResourceTopology

BASE = {0: {"cpu": "8", "memory": "8Gi"}, 1: {"cpu": "8", "memory": "8Gi"}}


def nrt(zone0_cpu: str) -> NodeResourceTopology:
    return NodeResourceTopology.from_dict(
        nrt_obj("w1", {0: {"cpu": zone0_cpu, "memory": "8Gi"}, 1: BASE[1]}, allocatable=BASE)
    )


def zone0_cpu(cache: NRTCache) -> int:
    view = cache.view("w1")
    assert view is not None
    return dict(view.zones)[0]["cpu"]


@pytest.mark.parametrize(
    ("update", "expect_cpu", "expect_held"),
    [
        pytest.param("8", 4000, True, id="update-without-the-pod/still-held"),
        pytest.param("5", 1000, True, id="update-with-part-of-it/still-held"),
        pytest.param("4", 4000, False, id="update-showing-the-pod/released"),
        pytest.param("2", 2000, False, id="update-showing-more-used/released"),
    ],
)
def test_newer_nrt_releases_only_what_it_accounts_for(
    update: str, expect_cpu: int, expect_held: bool
) -> None:
    cache = NRTCache(clock=lambda: 0.0)
    cache.upsert(nrt("8"))
    cache.reserve("w1", "uid-a", {0: {"cpu": 4000}})
    assert zone0_cpu(cache) == 4000
    cache.upsert(nrt(update))
    assert zone0_cpu(cache) == expect_cpu
    assert bool(cache.reservations("w1")) is expect_held


@pytest.mark.parametrize(
    ("action", "expect_cpu"),
    [
        pytest.param("release-pod", 8000, id="pod-deleted"),
        pytest.param("release-other", 4000, id="other-pod-deleted"),
        pytest.param("clock-59s", 4000, id="before-timeout"),
        pytest.param("clock-60s", 8000, id="at-timeout"),
        pytest.param("delete-node", None, id="node-deleted"),
    ],
)
def test_reservation_lifecycle(action: str, expect_cpu: int | None) -> None:
    now = [100.0]
    cache = NRTCache(clock=lambda: now[0], reservation_timeout_s=60)
    cache.upsert(nrt("8"))
    cache.reserve("w1", "uid-a", {0: {"cpu": 4000}})
    generation = cache.view("w1").generation  # type: ignore[union-attr]
    if action == "release-pod":
        cache.release_pod("uid-a")
    elif action == "release-other":
        cache.release_pod("uid-b")
    elif action.startswith("clock-"):
        now[0] += int(action[6:-1])
    else:
        cache.delete("w1")
    view = cache.view("w1")
    if expect_cpu is None:
        assert view is None and cache.reservations() == []
        return
    assert view is not None and dict(view.zones)[0]["cpu"] == expect_cpu
    assert (view.generation != generation) is (expect_cpu == 8000)


def test_reservations_never_drive_available_below_zero_and_sum_up() -> None:
    cache = NRTCache(clock=lambda: 0.0)
    cache.upsert(nrt("8"))
    cache.reserve("w1", "a", {0: {"cpu": 6000}})
    cache.reserve("w1", "b", {0: {"cpu": 6000}, 1: {"cpu": 1000}})
    view = cache.view("w1")
    assert view is not None
    assert dict(view.zones)[0]["cpu"] == 0 and dict(view.zones)[1]["cpu"] == 7000
    assert cache.holds("a") and cache.holds("b") and not cache.holds("c")
