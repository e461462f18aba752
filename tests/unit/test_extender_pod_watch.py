"""Pod-watch accounting against the kube-apiserver stand-in (the official client's watch):
pods bound by any scheduler are held on their node until its NRT object shows them, and a
reservation follows a pod to the node it really runs on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from kubernetes import client

from scheduler.cache import NRTCache
from scheduler.service import ExtenderCore
from scheduler.sources import KubernetesSource
from tests.apiserver_standin import ApiServerStandIn
from tests.extender_helpers import GU, MemoryBinder, nrt_obj, v1_pod

ZONES = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _cpu(cache: NRTCache, node: str, numa: int) -> int | None:
    view = cache.view(node)
    return None if view is None else dict(view.zones)[numa].get("cpu")


@pytest.fixture
def apiserver() -> Iterator[ApiServerStandIn]:
    server = ApiServerStandIn().start()
    yield server
    server.stop()


@contextmanager
def _watching(apiserver: ApiServerStandIn) -> Iterator[tuple[NRTCache, ExtenderCore]]:
    """An extender core fed by NRT and pod watches of *apiserver*, after the first lists."""
    cfg = client.Configuration()
    cfg.host = apiserver.url
    cache = NRTCache()
    core = ExtenderCore(cache, binder=MemoryBinder())
    source = KubernetesSource(client.ApiClient(cfg), cache, on_pod=core.pod_seen, watch_timeout_s=1)
    source.relist()
    threads = [threading.Thread(target=t, daemon=True) for t in (source.run_nrts, source.run_pods)]
    for t in threads:
        t.start()
    try:
        yield cache, core
    finally:
        source.stop()
        for t in threads:
            t.join(timeout=5)


@pytest.fixture
def watched(apiserver: ApiServerStandIn) -> Iterator[tuple[NRTCache, ExtenderCore]]:
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    apiserver.put_nrt(nrt_obj("w2", ZONES))
    with _watching(apiserver) as both:
        time.sleep(0.3)
        yield both


def _bind_elsewhere(apiserver: ApiServerStandIn, namespace: str, name: str, node: str) -> None:
    """What another scheduler does: POST the Binding to the API server."""
    cfg = client.Configuration()
    cfg.host = apiserver.url
    body = client.V1Binding(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )
    client.CoreV1Api(client.ApiClient(cfg)).create_namespaced_pod_binding(
        name, namespace, body, _preload_content=False
    )


def test_a_pod_bound_by_another_scheduler_is_held_until_the_nrt_shows_it(
    apiserver: ApiServerStandIn, watched: tuple[NRTCache, ExtenderCore]
) -> None:
    cache, _core = watched
    apiserver.put_pod(v1_pod("other", ("a", GU, {"cpu": "3", "memory": "1Gi"})))  # pending
    time.sleep(0.3)
    assert cache.reservations() == []
    _bind_elsewhere(apiserver, "default", "other", "w1")
    eventually(lambda: _cpu(cache, "w1", 0) == 1000)  # 3 of 4 CPUs held on zone 0
    # The node's publisher catches up: its NRT object now shows the pod; the hold ends.
    apiserver.put_nrt(nrt_obj("w1", {0: {"cpu": "1", "memory": "7Gi"}, 1: ZONES[1]}))
    eventually(lambda: cache.reservations() == [])
    assert _cpu(cache, "w1", 0) == 1000  # counted once, by the NRT data
    apiserver.put_nrt(nrt_obj("w1", {0: {"cpu": "1", "memory": "7Gi"}, 1: ZONES[1]}))
    time.sleep(0.3)
    assert cache.reservations() == []  # a later event for the pod does not hold it again


def test_pods_bound_before_the_watch_started_are_not_counted_twice(
    apiserver: ApiServerStandIn,
) -> None:
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    pod = v1_pod("old", ("a", GU, {"cpu": "3", "memory": "1Gi"}))
    pod["spec"]["nodeName"] = "w1"
    apiserver.put_pod(pod)
    with _watching(apiserver) as (cache, _core):
        time.sleep(0.5)
        assert cache.reservations() == [] and _cpu(cache, "w1", 0) == 4000


def test_a_pod_created_on_its_node_after_the_first_list_is_held_once(
    apiserver: ApiServerStandIn,
) -> None:
    """A pod created with ``spec.nodeName`` (no scheduler) after the watch's first list is
    first seen bound: it is held until the NRT shows it, once. A pod that was already
    bound in the first list, and one created in the same second as its newest, are
    taken as counted by the NRT data, whatever events they get later."""
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    apiserver.put_nrt(nrt_obj("w2", ZONES))
    old = v1_pod("old", ("a", GU, {"cpu": "1", "memory": "1Gi"}))
    old["spec"]["nodeName"] = "w2"
    old["metadata"]["creationTimestamp"] = "2026-12-06T04:00:00Z"
    apiserver.put_pod(old)
    with _watching(apiserver) as (cache, _core):
        time.sleep(0.3)
        same_second = v1_pod("same", ("a", GU, {"cpu": "1", "memory": "1Gi"}))
        same_second["spec"]["nodeName"] = "w2"
        same_second["metadata"]["creationTimestamp"] = "2026-12-06T04:00:00Z"
        apiserver.put_pod(same_second)
        apiserver.put_pod({**old, "metadata": {**old["metadata"], "labels": {"touched": "yes"}}})
        new = v1_pod("direct", ("a", GU, {"cpu": "3", "memory": "1Gi"}))
        new["spec"]["nodeName"] = "w1"
        new["metadata"]["creationTimestamp"] = "2026-12-06T04:00:01Z"
        apiserver.put_pod(new)
        eventually(lambda: _cpu(cache, "w1", 0) == 1000)  # 3 of 4 CPUs held on zone 0
        assert _cpu(cache, "w2", 0) == 4000 and len(cache.reservations()) == 1
        # its node's publisher catches up; a later event for the pod does not hold it again
        apiserver.put_nrt(nrt_obj("w1", {0: {"cpu": "1", "memory": "7Gi"}, 1: ZONES[1]}))
        eventually(lambda: cache.reservations() == [])
        apiserver.put_pod({**new, "metadata": {**new["metadata"], "labels": {"touched": "yes"}}})
        time.sleep(0.3)
        assert cache.reservations() == [] and _cpu(cache, "w1", 0) == 1000


def test_a_reservation_follows_the_pod_to_its_real_node(
    apiserver: ApiServerStandIn, watched: tuple[NRTCache, ExtenderCore]
) -> None:
    cache, _core = watched
    pod = apiserver.put_pod(v1_pod("moved", ("a", GU, {"cpu": "3", "memory": "1Gi"})))
    key = pod["metadata"]["uid"]
    cache.reserve("w1", key, {0: {"cpu": 3000}})  # held on w1 (say, a stale bind)
    _bind_elsewhere(apiserver, "default", "moved", "w2")
    eventually(lambda: [r.node for r in cache.reservations()] == ["w2"])
    assert _cpu(cache, "w1", 0) == 4000 and _cpu(cache, "w2", 0) == 1000


def test_a_deleted_pod_releases_its_hold(
    apiserver: ApiServerStandIn, watched: tuple[NRTCache, ExtenderCore]
) -> None:
    cache, _core = watched
    apiserver.put_pod(v1_pod("gone", ("a", GU, {"cpu": "3", "memory": "1Gi"})))
    time.sleep(0.2)
    _bind_elsewhere(apiserver, "default", "gone", "w1")
    eventually(lambda: _cpu(cache, "w1", 0) == 1000)
    apiserver.delete_pod("default", "gone")
    eventually(lambda: _cpu(cache, "w1", 0) == 4000)


def test_a_pod_deleted_while_the_watch_was_down_releases_its_hold(
    apiserver: ApiServerStandIn, watched: tuple[NRTCache, ExtenderCore]
) -> None:
    cache, _core = watched
    apiserver.put_pod(v1_pod("missed", ("a", GU, {"cpu": "3", "memory": "1Gi"})))
    time.sleep(0.2)
    _bind_elsewhere(apiserver, "default", "missed", "w1")
    eventually(lambda: _cpu(cache, "w1", 0) == 1000)
    apiserver.drop_watches()  # the connection breaks; the watch backs off (>= 0.4 s) ...
    apiserver.delete_pod("default", "missed")  # ... the pod goes meanwhile ...
    apiserver.compact()  # ... and out of the history: 410, a relist, the deletion
    eventually(lambda: _cpu(cache, "w1", 0) == 4000)
    assert cache.reservations() == []
