"""Idle-time filling of the shape tables: :meth:`ExtenderCore.warm` and the server's
:class:`~scheduler.warming.IdleWarmer`."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from bench.extender import build_cluster, pod_shapes
from scheduler.cache import NRTCache
from scheduler.engine import fast_verdict
from scheduler.extender import ExtenderServer
from scheduler.pod import parse_pod
from scheduler.service import ExtenderCore
from scheduler.views import compile_pod
from scheduler.warming import IdleWarmer
from tests.extender_helpers import post

NODES = 1500


def _core() -> tuple[ExtenderCore, list[str]]:
    cache = NRTCache()
    for nrt in build_cluster(NODES, seed=5):
        cache.upsert(nrt)
    return ExtenderCore(cache), sorted(cache.nodes())


def _pod(shape: int, uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": uid, "namespace": "d", "uid": uid},
        "spec": {"schedulerName": "topolet-scheduler", "containers": pod_shapes()[shape]},
    }


def _expected(core: ExtenderCore, raw: dict[str, Any], names: list[str]) -> list[str]:
    compiled = compile_pod(parse_pod(raw), "kubelet")
    return [n for n in names if fast_verdict(compiled, core.cache.view(n)).fits]


def test_warm_fills_the_tables_a_new_shape_left_stale_and_answers_stay_exact() -> None:
    core, names = _core()
    rng = random.Random(3)
    raw = _pod(2, "first")
    pod = parse_pod(raw)
    first = core.filter_answer(pod, rng.sample(names, 200))
    core.scores(pod, rng.sample(names, 200))
    assert first is not None and first.incomplete
    assert core.warming_pending()
    steps = 0
    while core.warm(budget=200):
        steps += 1
        assert steps < 100
    assert not core.warming_pending()
    # Every row is now served from the tables: a request naming any nodes meets none stale.
    other = rng.sample(names, 400)
    answer = core.filter_answer(pod, other)
    assert answer is not None and not answer.incomplete
    assert answer.passed() == _expected(core, raw, other)
    # A reservation makes one row stale again; warming does not come back for that.
    core.cache.reserve(other[0], "some-pod", {0: {"cpu": 1000}})
    assert not core.filter_answer(pod, other).incomplete  # type: ignore[union-attr]
    assert not core.warming_pending()


def test_the_warmer_steps_only_while_no_request_is_in_flight() -> None:
    in_flight = threading.Event()
    calls: list[bool] = []
    left = [5]

    def step() -> bool:
        calls.append(in_flight.is_set())
        left[0] -= 1
        return left[0] > 0

    warmer = IdleWarmer(step, lambda: left[0] > 0, idle_s=0.002)
    warmer.start()
    try:
        warmer.begin()
        in_flight.set()
        warmer.end()  # one request done: work is pending, the thread wakes
        in_flight.clear()
        warmer.begin()  # ...but the next request starts at once
        in_flight.set()
        time.sleep(0.05)
        assert calls == []  # nothing ran while that request was in flight
        in_flight.clear()
        warmer.end()
        deadline = time.monotonic() + 5
        while warmer.steps < 5 and time.monotonic() < deadline:  # counted after each step returns
            time.sleep(0.005)
        time.sleep(0.02)  # a sixth step would come now if the thread did not stop
        assert calls == [False] * 5 and warmer.steps == 5
    finally:
        warmer.stop()


def test_a_failing_step_does_not_end_the_warmer() -> None:
    runs: list[int] = []

    def step() -> bool:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")
        return False

    warmer = IdleWarmer(step, lambda: True, idle_s=0.001)
    warmer.start()
    try:
        for _ in range(2):
            warmer.begin()
            warmer.end()
            deadline = time.monotonic() + 5
            want = len(runs) + 1
            while len(runs) < want and time.monotonic() < deadline:
                time.sleep(0.005)
        assert len(runs) == 2
    finally:
        warmer.stop()


@pytest.mark.parametrize("server", ["uvicorn", "builtin"])
def test_the_server_fills_the_tables_between_requests(server: str) -> None:
    core, names = _core()
    ext = ExtenderServer(core, ("127.0.0.1", 0), server=server)
    ext.start()
    try:
        raw = _pod(3, "served")
        body = {"Pod": raw, "Nodes": None, "NodeNames": random.Random(1).sample(names, 300)}
        status, reply = post(ext.address, "/filter", body)
        assert status == 200 and reply["Error"] == ""
        deadline = time.monotonic() + 10
        while core.warming_pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not core.warming_pending()
        assert ext.warmer is not None and ext.warmer.steps > 0
        # Filled from idle time, and right: every node answered as the per-node rule says.
        everyone = {**body, "NodeNames": names}
        status, reply = post(ext.address, "/filter", everyone)
        assert status == 200 and reply["NodeNames"] == _expected(core, raw, names)
        answer = core.filter_answer(parse_pod(raw), names)
        assert answer is not None and not answer.incomplete
    finally:
        ext.stop()


def test_the_server_can_leave_the_tables_to_requests() -> None:
    core, names = _core()
    ext = ExtenderServer(core, ("127.0.0.1", 0), warm_when_idle=False)
    ext.start()
    try:
        body = {"Pod": _pod(3, "lazy"), "Nodes": None, "NodeNames": names[:300]}
        assert post(ext.address, "/filter", body)[0] == 200
        time.sleep(0.2)
        assert ext.warmer is None and core.warming_pending()
    finally:
        ext.stop()
