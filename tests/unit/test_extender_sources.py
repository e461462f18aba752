"""NRT sources and the binder: the official kubernetes client against the kube-apiserver
stand-in on loopback, and the YAML directory source on a real directory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from scheduler.cache import NRTCache
from scheduler.extender import NOT_SYNCED, ExtenderServer
from scheduler.service import BindError, ExtenderCore
from scheduler.sources import DirectorySource, KubernetesBinder, KubernetesSource, SourceError, load_directory
from tests.apiserver_standin import ApiServerStandIn
from tests.extender_helpers import GU, args, get, nrt_obj, post, v1_pod

ZONES = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


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


def cpu_available(cache: NRTCache, node: str, numa: int) -> int | None:
    view = cache.view(node)
    return None if view is None else dict(view.zones)[numa].get("cpu")


def test_list_then_watch_added_modified_deleted(apiserver: ApiServerStandIn, api: client.ApiClient) -> None:
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    cache = NRTCache()
    source = KubernetesSource(api, cache, watch_timeout_s=1)
    thread = threading.Thread(target=source.run_nrts, daemon=True)
    thread.start()
    try:
        eventually(lambda: cpu_available(cache, "w1", 0) == 4000)
        apiserver.put_nrt(nrt_obj("w2", ZONES))
        eventually(lambda: cache.view("w2") is not None)
        apiserver.put_nrt(nrt_obj("w1", {0: {"cpu": "1", "memory": "8Gi"}, 1: ZONES[1]}))
        eventually(lambda: cpu_available(cache, "w1", 0) == 1000)
        apiserver.delete_nrt("w2")
        eventually(lambda: cache.view("w2") is None)
        # History compacted while the watch is between streams: 410 Gone, then a relist.
        apiserver.compact()
        apiserver.put_nrt(nrt_obj("w3", ZONES))
        eventually(lambda: cache.view("w3") is not None)
    finally:
        source.stop()
        thread.join(timeout=5)
    assert cache.nodes() == ["w1", "w3"]


def test_relist_after_gone_forgets_deleted_nodes(apiserver: ApiServerStandIn, api: client.ApiClient) -> None:
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    apiserver.put_nrt(nrt_obj("w2", ZONES))
    cache = NRTCache()
    source = KubernetesSource(api, cache, watch_timeout_s=1)
    rv = source.relist()
    apiserver.delete_nrt("w1")
    apiserver.compact()
    assert source.watch_nrts_once(rv) is None  # ERROR event with Status 410
    source.relist()
    assert cache.nodes() == ["w2"]


def test_binder_creates_the_binding_and_reports_conflicts(
    apiserver: ApiServerStandIn, api: client.ApiClient
) -> None:
    pod = apiserver.put_pod(v1_pod("db-0", ("a", GU, {"cpu": "2", "memory": "1Gi"}), namespace="prod"))
    binder = KubernetesBinder(api)
    binder.bind("prod", "db-0", pod["metadata"]["uid"], "w1")
    assert apiserver.state.pods[("prod", "db-0")]["spec"]["nodeName"] == "w1"
    sent = apiserver.bindings[0]
    assert sent["kind"] == "Binding" and sent["target"] == {"apiVersion": "v1", "kind": "Node", "name": "w1"}
    assert sent["metadata"]["name"] == "db-0" and sent["metadata"]["namespace"] == "prod"
    with pytest.raises(BindError, match=r"409 .*already assigned to node \"w1\""):
        binder.bind("prod", "db-0", pod["metadata"]["uid"], "w2")
    with pytest.raises(BindError, match="404"):
        binder.bind("prod", "missing", "", "w1")


def test_bind_through_http_reserves_and_pod_deletion_releases(
    apiserver: ApiServerStandIn, api: client.ApiClient
) -> None:
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    pod = apiserver.put_pod(v1_pod("db-0", ("a", GU, {"cpu": "4", "memory": "1Gi"})))
    cache = NRTCache()
    core = ExtenderCore(cache, binder=KubernetesBinder(api))
    source = KubernetesSource(api, cache, core.forget_pod, watch_timeout_s=1)
    source.relist()
    watcher = threading.Thread(target=source.run_pods, daemon=True)
    watcher.start()
    server = ExtenderServer(core, ("127.0.0.1", 0))
    server.start()
    try:
        assert post(server.address, "/filter", args(pod, ["w1"]))[1]["NodeNames"] == ["w1"]
        bind = {"PodName": "db-0", "PodNamespace": "default", "PodUID": pod["metadata"]["uid"], "Node": "w1"}
        assert post(server.address, "/bind", bind) == (200, {"Error": ""})
        assert apiserver.state.pods[("default", "db-0")]["spec"]["nodeName"] == "w1"
        assert cpu_available(cache, "w1", 0) == 0
        # A second bind of the same pod is refused before it reaches the API server.
        status, reply = post(server.address, "/bind", {**bind, "Node": "w1"})
        assert status == 200 and "already bound to node w1" in reply["Error"]
        assert len(apiserver.bindings) == 1
        assert cpu_available(cache, "w1", 0) == 0  # the first bind's reservation stays
        time.sleep(0.2)  # let the pod watch start streaming
        apiserver.delete_pod("default", "db-0")
        eventually(lambda: cpu_available(cache, "w1", 0) == 4000)
    finally:
        source.stop()
        server.stop()


# ------------------------------------------------------------------ files
def test_directory_source_loads_multi_document_files_and_reloads(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all([nrt_obj("w1", ZONES), nrt_obj("w2", ZONES)]))
    (tmp_path / "list.json").write_text(
        '{"apiVersion": "topology.node.k8s.io/v1alpha2", "kind": "NodeResourceTopologyList", "items": []}'
    )
    (tmp_path / "notes.txt").write_text("ignored")
    cache = NRTCache()
    source = DirectorySource(tmp_path, cache)
    assert source.poll() is True and cache.nodes() == ["w1", "w2"]
    assert source.poll() is False
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(nrt_obj("w1", {0: {"cpu": "2", "memory": "1Gi"}})))
    assert source.poll() is True
    assert cache.nodes() == ["w1"] and cpu_available(cache, "w1", 0) == 2000
    (tmp_path / "b.yaml").write_text("zones: [")  # broken: the previous data stays
    assert source.poll() is False and cache.nodes() == ["w1"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("zones: [", "not valid YAML", id="bad-yaml"),
        pytest.param(
            "metadata: {name: w1}\nzones: [{name: node-0}]\n", r"zones\[0\]\.type", id="zone-without-type"
        ),
    ],
)
def test_load_directory_names_the_file(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(SourceError, match=match) as err:
        load_directory(tmp_path)
    assert "bad.yaml" in str(err.value)


def test_directory_source_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a directory"):
        DirectorySource(tmp_path / "nope", NRTCache())


@contextmanager
def _serving(
    apiserver: ApiServerStandIn, *, claims: bool
) -> Iterator[tuple[NRTCache, ExtenderCore, ExtenderServer]]:
    """An extender whose readiness follows the watches of *apiserver* (claims and slices
    too when *claims*), serving on loopback."""
    cfg = client.Configuration()
    cfg.host = apiserver.url
    cache = NRTCache()
    core = ExtenderCore(cache)
    watched = core.claims if claims else None
    source = KubernetesSource(client.ApiClient(cfg), cache, claims=watched, watch_timeout_s=1)
    core.synced = source.synced
    source.start()
    server = ExtenderServer(core, ("127.0.0.1", 0))
    server.start()
    try:
        yield cache, core, server
    finally:
        server.stop()
        source.stop()


def test_with_claims_watched_not_ready_until_the_claim_and_slice_lists_are_in() -> None:
    """With DRA claims watched, a filter before the claim and slice lists would not see a
    claim's devices: /readyz stays 503 and /filter refuses until both lists are in, even
    though the NRT objects are listed. Once the lists answer, it is ready and filters."""
    apiserver = ApiServerStandIn()
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    apiserver.set_dra_available(False)  # the resource.k8s.io lists answer 503 for now
    apiserver.start()
    pod = v1_pod("p", ("a", GU, {"cpu": "1", "memory": "1Gi"}))
    try:
        with _serving(apiserver, claims=True) as (cache, core, server):
            eventually(lambda: cache.view("w1") is not None)  # the NRT list is in
            eventually(lambda: sum(1 for p, _ in apiserver.requests if "resource.k8s.io" in p) >= 2)
            assert get(server.address, "/readyz")[0] == 503
            assert post(server.address, "/filter", args(pod, ["w1"]))[1]["Error"] == NOT_SYNCED
            apiserver.put_slice(
                {
                    "metadata": {"name": "w1-gpus"},
                    "spec": {
                        "driver": core.claims.driver,
                        "nodeName": "w1",
                        "pool": {"name": "w1", "generation": 1, "resourceSliceCount": 1},
                        "devices": [{"name": "gpu-0", "attributes": {"numaNode": {"int": 1}}}],
                    },
                }
            )
            apiserver.set_dra_available(True)
            eventually(lambda: get(server.address, "/readyz")[0] == 200, timeout=20)
            assert post(server.address, "/filter", args(pod, ["w1"]))[1]["NodeNames"] == ["w1"]
    finally:
        apiserver.stop()


def test_not_ready_until_the_first_nrt_list_is_in() -> None:
    """Before the NRT objects are listed, a node without NRT data would pass every filter:
    the extender refuses /filter with an error (kube-scheduler retries the pod) and answers
    /readyz 503; once the list is in, it filters by the real data."""
    apiserver = ApiServerStandIn()  # bound, not answering yet: the list waits in the backlog
    apiserver.put_nrt(nrt_obj("w1", ZONES))
    pod = v1_pod("p", ("a", GU, {"cpu": "6", "memory": "1Gi"}))
    try:
        with _serving(apiserver, claims=False) as (_cache, _core, server):
            assert get(server.address, "/healthz")[0] == 200
            assert get(server.address, "/readyz")[0] == 503
            status, reply = post(server.address, "/filter", args(pod, ["w1", "w2"]))
            assert status == 200
            assert reply["Error"] == NOT_SYNCED
            apiserver.start()
            eventually(lambda: get(server.address, "/readyz")[0] == 200)
            status, reply = post(server.address, "/filter", args(pod, ["w1", "w2"]))
            assert reply["Error"] == ""
            assert reply["NodeNames"] == ["w2"], "w1 has no NUMA node with 6 CPUs; w2 has no NRT object"
    finally:
        apiserver.stop()
