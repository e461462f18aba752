"""Honest binds over real HTTP: a binder-less extender (``--nrt-dir``) refuses every bind
and says why; a pod already bound is refused before the API server is asked; the shipped
``preemptVerb`` answers in the form kube-scheduler reads; every request logs one line."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from scheduler.cache import NRTCache
from scheduler.extender import ExtenderServer
from scheduler.service import BindError, ExtenderCore
from scheduler.sources import KubernetesBinder
from tests.apiserver_standin import ApiServerStandIn
from tests.extender_helpers import GU, args, nrt_obj, post, v1_pod
from tests.unit.test_extender_manifests import scheduler_config
from topology.nrt import NodeResourceTopology

ROOT = Path(__file__).resolve().parents[2]
ZONES = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}


def _cache(*nodes: str) -> NRTCache:
    cache = NRTCache(clock=lambda: 0.0)
    for node in nodes:
        cache.upsert(NodeResourceTopology.from_dict(nrt_obj(node, ZONES)))
    return cache


def _bind_args(pod: dict[str, Any], node: str) -> dict[str, str]:
    meta = pod["metadata"]
    return {"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": node}


def _cpu(cache: NRTCache, node: str, numa: int) -> int | None:
    view = cache.view(node)
    return None if view is None else dict(view.zones)[numa].get("cpu")


@pytest.fixture
def apiserver() -> Iterator[ApiServerStandIn]:
    server = ApiServerStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def api(apiserver: ApiServerStandIn) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = apiserver.url
    return client.ApiClient(cfg)


@pytest.mark.parametrize("filtered_first", [True, False], ids=["filtered-pod", "never-seen-pod"])
def test_without_a_binder_bind_is_refused_with_the_config_fix(filtered_first: bool) -> None:
    cache = _cache("w1")
    server = ExtenderServer(ExtenderCore(cache), ("127.0.0.1", 0))
    server.start()
    try:
        pod = v1_pod("db-0", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
        if filtered_first:
            assert post(server.address, "/filter", args(pod, ["w1"]))[1]["NodeNames"] == ["w1"]
        status, reply = post(server.address, "/bind", _bind_args(pod, "w1"))
        assert status == 200
        assert reply["Error"].startswith(
            "cannot bind pod default/db-0 on node w1: this extender has no binder"
        )
        assert "remove bindVerb" in reply["Error"]
        assert cache.reservations() == [] and _cpu(cache, "w1", 0) == 4000  # nothing held
        metrics = server.metrics.decisions.labels("bind", "refused")._value.get()
        assert metrics == 1
    finally:
        server.stop()


def test_rebinding_a_bound_pod_is_refused_and_the_reservation_stays(
    apiserver: ApiServerStandIn, api: client.ApiClient
) -> None:
    cache = _cache("w1", "w2")
    server = ExtenderServer(ExtenderCore(cache, binder=KubernetesBinder(api)), ("127.0.0.1", 0))
    server.start()
    try:
        pod = apiserver.put_pod(v1_pod("db-0", ("a", GU, {"cpu": "4", "memory": "1Gi"})))
        assert post(server.address, "/filter", args(pod, ["w1", "w2"]))[1]["NodeNames"] == ["w1", "w2"]
        assert post(server.address, "/bind", _bind_args(pod, "w1")) == (200, {"Error": ""})
        assert _cpu(cache, "w1", 0) == 0
        status, reply = post(server.address, "/bind", _bind_args(pod, "w2"))
        assert status == 200
        assert reply["Error"] == (
            "cannot bind pod default/db-0 on node w2: the pod is already bound to node w1"
        )
        assert len(apiserver.bindings) == 1  # the API server was never asked twice
        assert apiserver.state.pods[("default", "db-0")]["spec"]["nodeName"] == "w1"
        assert _cpu(cache, "w1", 0) == 0 and _cpu(cache, "w2", 0) == 4000
        assert [r.node for r in cache.reservations()] == ["w1"]
    finally:
        server.stop()


def test_a_failed_binding_releases_the_reservation(
    apiserver: ApiServerStandIn, api: client.ApiClient
) -> None:
    cache = _cache("w1")
    server = ExtenderServer(ExtenderCore(cache, binder=KubernetesBinder(api)), ("127.0.0.1", 0))
    server.start()
    try:
        pod = v1_pod("gone", ("a", GU, {"cpu": "4", "memory": "1Gi"}))  # never created: 404
        assert post(server.address, "/filter", args(pod, ["w1"]))[1]["NodeNames"] == ["w1"]
        status, reply = post(server.address, "/bind", _bind_args(pod, "w1"))
        assert status == 200 and "404" in reply["Error"]
        assert cache.reservations() == [] and _cpu(cache, "w1", 0) == 4000
    finally:
        server.stop()


def test_shipped_preempt_verb_answers_meta_victims_as_kube_scheduler_reads_them() -> None:
    (ext,) = scheduler_config()["extenders"]
    prefix = "/" + ext["urlPrefix"].split("://", 1)[1].split("/", 1)[1].strip("/")
    server = ExtenderServer(ExtenderCore(_cache("w1")), ("127.0.0.1", 0), path_prefix=prefix)
    server.start()
    try:
        pod = v1_pod("big", ("a", GU, {"cpu": "2", "memory": "1Gi"}))
        body = {
            "Pod": pod,
            "NodeNameToVictims": None,
            "NodeNameToMetaVictims": {
                "w1": {"Pods": [{"UID": "victim-1"}], "NumPDBViolations": 0},
                "w-empty": {"Pods": [], "NumPDBViolations": 0},
            },
        }
        status, reply = post(server.address, f"{prefix}/{ext['preemptVerb']}", body)
        assert status == 200
        # ExtenderPreemptionResult: only the Meta form; each kept node has >= 1 victim UID.
        assert reply == {
            "NodeNameToMetaVictims": {"w1": {"Pods": [{"UID": "victim-1"}], "NumPDBViolations": 0}}
        }
    finally:
        server.stop()


def test_every_request_logs_one_line_at_info(caplog: pytest.LogCaptureFixture) -> None:
    server = ExtenderServer(ExtenderCore(_cache("w1", "w2")), ("127.0.0.1", 0))
    server.start()
    try:
        pod = v1_pod("db-0", ("a", GU, {"cpu": "6", "memory": "1Gi"}), namespace="prod")
        with caplog.at_level(logging.INFO, logger="scheduler.extender"):
            post(server.address, "/filter", args(pod, ["w1", "w2", "no-nrt"]))
            post(server.address, "/prioritize", args(pod, ["no-nrt"]))
            post(server.address, "/bind", _bind_args(pod, "no-nrt"))
        lines = [r.getMessage() for r in caplog.records if r.name == "scheduler.extender"]
        assert len(lines) == 3, lines
        assert lines[0].startswith(
            "filter pod prod/db-0 names in 3 out 1 failed 2 unresolvable 0 "
        ) and lines[0].endswith(" ms")
        assert lines[1].startswith("prioritize pod prod/db-0 names in 1 ")
        assert lines[2].startswith("bind pod prod/db-0 node no-nrt refused: cannot bind")
    finally:
        server.stop()


def test_shipped_config_binds_only_where_the_extender_has_the_api() -> None:
    text = (ROOT / "deploy/scheduler/scheduler-config.yaml").read_text()
    assert "--nrt-dir" in text and "delete the bindVerb line" in text
    extender = yaml.safe_load_all((ROOT / "deploy/scheduler/extender.yaml").read_text())
    deployment = next(d for d in extender if d and d["kind"] == "Deployment")
    assert "--nrt-dir" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


class _GatedBinder:
    """Holds every bind until released, as an API server slow to answer would."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.bound: list[tuple[str, str]] = []
        self.waiting: list[str] = []

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        self.waiting.append(name)
        self.entered.set()
        if not self.release.wait(10):
            raise BindError("the test never released the bind")
        self.bound.append((f"{namespace}/{name}", node))


@pytest.mark.parametrize("kind", ["uvicorn", "builtin"])
def test_a_bind_waiting_on_the_api_server_does_not_hold_up_filter(kind: str) -> None:
    """kube-scheduler binds pod N (its binding cycle) while it filters pod N+1 on another
    connection: the filter is answered while the bind still waits for the API server, and
    pod N+1's bind reaches the API server without waiting for pod N's."""
    cache = _cache("w1", "w2")
    binder = _GatedBinder()
    server = ExtenderServer(ExtenderCore(cache, binder=binder), ("127.0.0.1", 0), server=kind)
    server.start()
    first = v1_pod("db-0", ("a", GU, {"cpu": "4", "memory": "1Gi"}))
    second = v1_pod("db-1", ("a", GU, {"cpu": "2", "memory": "1Gi"}))
    replies: list[tuple[int, Any]] = []
    try:
        assert post(server.address, "/filter", args(first, ["w1"]))[1]["NodeNames"] == ["w1"]
        binding = threading.Thread(
            target=lambda: replies.append(post(server.address, "/bind", _bind_args(first, "w1")))
        )
        binding.start()
        assert binder.entered.wait(5), "the bind never reached the binder"
        conn = http.client.HTTPConnection(*server.address, timeout=3)
        try:
            body = json.dumps(args(second, ["w1", "w2"])).encode()
            conn.request("POST", "/filter", body=body, headers={"Content-Type": "application/json"})
            reply = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        assert not binder.release.is_set() and binder.bound == []  # the bind still waits
        assert reply["NodeNames"] == ["w1", "w2"]
        again = post(server.address, "/bind", _bind_args(first, "w2"))  # while in flight
        assert again[1]["Error"].endswith("the pod is already bound to node w1")
        other = threading.Thread(
            target=lambda: replies.append(post(server.address, "/bind", _bind_args(second, "w2")))
        )
        other.start()
        deadline = time.monotonic() + 5
        while len(binder.waiting) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert binder.waiting == ["db-0", "db-1"]  # both wait on the API server at once
        binder.release.set()
        binding.join(10)
        other.join(10)
        assert replies == [(200, {"Error": ""})] * 2
        assert sorted(binder.bound) == [("default/db-0", "w1"), ("default/db-1", "w2")]
        assert _cpu(cache, "w1", 0) == 0 and _cpu(cache, "w2", 0) == 2000  # both held
    finally:
        binder.release.set()
        server.stop()
