"""Binds reuse one keep-alive connection instead of opening one per call (over TLS, a
handshake per bind on both sides), through libcurl and through the ``kubernetes``
client alike: calls whose reply topolet does not read still give their connection back
to the client's pool."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from kube.resources import Pods
from tests.apiserver_standin import ApiServerStandIn
from tests.extender_helpers import GU, v1_pod


@pytest.fixture
def apiserver() -> Iterator[ApiServerStandIn]:
    server = ApiServerStandIn().start()
    yield server
    server.stop()


def _client(url: str, *, through_kubernetes_client: bool) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = url
    if through_kubernetes_client:
        # a setting libcurl is not given: binds go through the kubernetes client (which
        # ignores a TLS server name on http://)
        cfg.tls_server_name = "apiserver.example"
    return client.ApiClient(cfg)


def _connections_made(api: client.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools
    # urllib3's RecentlyUsedContainer refuses iteration; keys() is its way
    return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118


@pytest.mark.parametrize("through_kubernetes_client", [False, True], ids=["libcurl", "kubernetes-client"])
def test_binds_reuse_one_connection(apiserver: ApiServerStandIn, through_kubernetes_client: bool) -> None:
    api = _client(apiserver.url, through_kubernetes_client=through_kubernetes_client)
    pods = Pods(api)
    assert pods.transport == ("kubernetes-client" if through_kubernetes_client else "libcurl")
    for i in range(20):
        pod = apiserver.put_pod(v1_pod(f"p-{i}", ("a", GU, {"cpu": "1", "memory": "1Gi"})))
        meta = pod["metadata"]
        pods.bind(meta["namespace"], meta["name"], meta["uid"], "w1")
    assert len(apiserver.bindings) == 20
    assert apiserver.connections == 1
    assert _connections_made(api) == (1 if through_kubernetes_client else 0)
    pods.close()
