"""The node agent's DRA driver wiring (topolet.dra_node.DRANode): started against the
resource.k8s.io stand-in, it publishes the 8-GPU machine's slice and serves the plugin;
a GPU turning unhealthy leaves the slice and comes back when healthy; withdraw (uninstall)
deletes the pool; stop removes the sockets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from kubernetes.client import ApiClient, Configuration

from deviceplugin.api.pluginregistration.v1 import api_pb2 as reg
from deviceplugin.api.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from tests.dra_apiserver_standin import DRAApiServerStandIn
from tests.dra_machine import write_machine
from topolet.dra_node import DRANode
from topology.sysfs import discover


@pytest.fixture
def api() -> Iterator[DRAApiServerStandIn]:
    standin = DRAApiServerStandIn().start()
    yield standin
    standin.stop()


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def device_count(api: DRAApiServerStandIn) -> int:
    slices = api.slices("n1")
    return len(slices[0]["spec"]["devices"]) if len(slices) == 1 else -1


def test_dra_node_publishes_serves_and_follows_health(api: DRAApiServerStandIn, tmp_path: Path) -> None:
    root = write_machine(tmp_path / "root")
    conf = Configuration()
    conf.host = api.url
    bad: set[str] = set()
    node = DRANode(
        discover(root),
        node_name="n1",
        api_client=ApiClient(conf),
        root=root,
        unhealthy=lambda: set(bad),
        cdi_dir=tmp_path / "cdi",
        registry_dir=tmp_path / "reg",
        plugin_dir=tmp_path / "plug",
    )
    node.publisher.coalesce_s = 0.01
    node.start()
    try:
        assert wait_for(lambda: device_count(api) == 8)
        with grpc.insecure_channel(f"unix://{tmp_path / 'reg' / 'gpu.topolet.io-reg.sock'}") as ch:
            info = reg_grpc.RegistrationStub(ch).GetInfo(reg.InfoRequest(), timeout=5)
        assert info.endpoint == str(tmp_path / "plug" / "dra.sock")

        bad.add("0000:17:01.0")
        node.check_health()
        assert wait_for(lambda: device_count(api) == 7)
        assert api.slices("n1")[0]["spec"]["pool"]["generation"] == 2
        node.check_health()  # nothing changed: no write
        bad.clear()
        node.check_health()
        assert wait_for(lambda: device_count(api) == 8)
        assert [w[0] for w in api.writes] == ["create", "update", "update"]
    finally:
        node.stop()
    assert not (tmp_path / "plug" / "dra.sock").exists()
    assert node.publisher.withdraw() == 1 and api.slices() == []
