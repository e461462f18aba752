"""Calls whose reply topolet does not read still give their connection back to the
client's pool: a run of binds reuses one keep-alive connection instead of
opening one per call (over TLS, a handshake per bind on both sides)."""

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


def _connections_made(api: client.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools
    # urllib3's RecentlyUsedContainer refuses iteration; keys() is its way
    return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118


def test_binds_reuse_one_connection(apiserver: ApiServerStandIn) -> None:
    cfg = client.Configuration()
    cfg.host = apiserver.url
    api = client.ApiClient(cfg)
    pods = Pods(api)
    for i in range(20):
        pod = apiserver.put_pod(v1_pod(f"p-{i}", ("a", GU, {"cpu": "1", "memory": "1Gi"})))
        meta = pod["metadata"]
        pods.bind(meta["namespace"], meta["name"], meta["uid"], "w1")
    assert len(apiserver.bindings) == 20
    assert _connections_made(api) == 1
