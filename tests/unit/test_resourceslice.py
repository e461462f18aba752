"""ResourceSlices of driver gpu.topolet.io: the object for the 8-GPU machine (validated as
kube-apiserver 1.34 would), ``topolet discover --format resourceslice``, and the publisher
against the API-server stand-in through the official client (create, no write when
unchanged, update with a generation bump, unhealthy GPUs leave, withdraw on uninstall)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from deviceplugin.nvml_info import with_nvml_attributes
from tests.dra_apiserver_standin import DRAApiServerStandIn, slice_problems
from tests.dra_machine import GPUS, NVMLInfoStandIn, write_machine
from topolet.cli import main
from topolet.resourceslice_publisher import KubeSliceAPI, ResourceSlicePublisher, SliceAPI
from topology.model import Topology
from topology.resourceslice import (
    MAX_DEVICES_PER_SLICE,
    PCIE_ROOT,
    address_of,
    build_resource_slices,
    device_name,
    numa_of_device,
    quantity,
    semver,
)
from topology.sysfs import discover


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_machine(tmp_path_factory.mktemp("dra") / "root")


@pytest.fixture(scope="module")
def topo(root: Path) -> Topology:
    nvml = NVMLInfoStandIn()
    nvml.nvmlInit()
    return with_nvml_attributes(discover(root), nvml)


@pytest.mark.parametrize(
    ("text", "want"),
    [("535.104.05", "535.104.5"), ("8.0", "8.0.0"), ("550", "550.0.0"), ("1.2.3.4", None), ("", None),
     ("v1.2", None), (None, None)],
)  # fmt: skip
def test_semver(text: str | None, want: str | None) -> None:
    assert semver(text) == want


@pytest.mark.parametrize(
    ("n", "want"), [(80 * 2**30, "80Gi"), (40960 * 2**20, "40Gi"), (1536 * 2**20, "1536Mi"), (1000, "1000")]
)
def test_quantity(n: int, want: str) -> None:
    assert quantity(n) == want


def test_device_names_round_trip_and_are_dns_labels() -> None:
    assert device_name("0000:B1:01.0") == "gpu-0000-b1-01-0"
    assert address_of("gpu-0000-b1-01-0") == "0000:b1:01.0"
    assert address_of("gpu-0") is None
    with pytest.raises(ValueError, match=r"DDDD:BB:DD\.F"):
        device_name("17:00.0")


def test_slice_of_the_8_gpu_machine(topo: Topology) -> None:
    (obj,) = build_resource_slices(topo, node_name="worker-1", generation=3)
    assert slice_problems(obj) == []
    spec = obj["spec"]
    assert spec["driver"] == "gpu.topolet.io" and spec["nodeName"] == "worker-1"
    assert spec["pool"] == {"name": "worker-1", "generation": 3, "resourceSliceCount": 1}
    devices = {d["name"]: d for d in spec["devices"]}
    assert len(devices) == 8
    for g in GPUS:
        d = devices[device_name(g.address)]
        a = d["attributes"]
        assert a["productName"] == {"string": g.product}
        assert a["uuid"] == {"string": g.uuid}
        assert a["numaNode"] == {"int": g.numa}
        assert a["driverVersion"] == {"version": "535.104.5"}
        assert a["cudaComputeCapability"] == {"version": "8.0.0"}
        assert a[PCIE_ROOT] == {"string": g.root}
        assert d["capacity"] == {"memory": {"value": f"{g.memory // 2**30}Gi"}}


def test_unknown_attributes_are_left_out_not_guessed(root: Path) -> None:
    (obj,) = build_resource_slices(discover(root), node_name="n")  # no NVML: memory unknown
    assert slice_problems(obj) == []
    for d in obj["spec"]["devices"]:
        assert "capacity" not in d and "cudaComputeCapability" not in d["attributes"]


def test_unhealthy_gpus_leave_the_slice(topo: Topology) -> None:
    (obj,) = build_resource_slices(topo, node_name="n", unhealthy={"0000:3a:00.0"})
    names = [d["name"] for d in obj["spec"]["devices"]]
    assert "gpu-0000-3a-00-0" not in names and len(names) == 7


def test_more_than_128_gpus_split_into_equal_count_slices(topo: Topology) -> None:
    gpu = topo.gpus()[0]
    many = tuple(dataclasses.replace(gpu, address=f"0001:{i // 32:02x}:{i % 32:02x}.0") for i in range(130))
    slices = build_resource_slices(dataclasses.replace(topo, pci_devices=many), node_name="big")
    assert [len(s["spec"]["devices"]) for s in slices] == [MAX_DEVICES_PER_SLICE, 2]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {2}
    assert all(slice_problems(s) == [] for s in slices)


def test_discover_format_resourceslice(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discover", "--root", str(root), "--format", "resourceslice", "--node-name", "w1"]) == 0
    (obj,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert obj["kind"] == "ResourceSlice" and obj["spec"]["pool"]["name"] == "w1"
    assert len(obj["spec"]["devices"]) == 8
    assert slice_problems(obj) == []


def test_the_standin_refuses_what_the_api_server_refuses(topo: Topology) -> None:
    (obj,) = build_resource_slices(topo, node_name="n")
    obj["spec"]["devices"][0]["attributes"]["numaNode"] = {"int": 1, "string": "1"}
    obj["spec"]["allNodes"] = True
    problems = slice_problems(obj)
    assert any("exactly one value" in p for p in problems)
    assert any("exactly one of nodeName" in p for p in problems)
    obj["spec"]["devices"][0]["bogus"] = 1
    assert slice_problems(obj)[0].startswith("schema:")


# ------------------------------------------------------------------ publisher
@pytest.fixture
def api() -> Iterator[DRAApiServerStandIn]:
    standin = DRAApiServerStandIn().start()
    yield standin
    standin.stop()


def client(standin: DRAApiServerStandIn) -> SliceAPI:
    conf = Configuration()
    conf.host = standin.url
    return KubeSliceAPI(ApiClient(conf))


class Node:
    def __init__(self, topo: Topology, name: str = "worker-1") -> None:
        self.topo, self.name, self.unhealthy = topo, name, set[str]()

    def build(self) -> list[dict[str, object]]:
        return build_resource_slices(self.topo, node_name=self.name, unhealthy=self.unhealthy)


def test_publish_create_unchanged_update_and_withdraw(api: DRAApiServerStandIn, topo: Topology) -> None:
    node = Node(topo)
    pub = ResourceSlicePublisher(client(api), node.build, node_name=node.name)
    assert pub.publish() == "create"
    (first,) = api.slices("worker-1")
    assert first["metadata"]["name"].startswith("worker-1-gpu.topolet.io-")
    assert first["spec"]["pool"]["generation"] == 1
    assert pub.publish() == "unchanged"
    assert pub.publish(force=True) == "unchanged"  # reads the server: still equal
    assert len(api.writes) == 1

    node.unhealthy.add("0000:86:01.0")
    assert pub.publish() == "update"
    (second,) = api.slices("worker-1")
    assert second["metadata"]["name"] == first["metadata"]["name"]
    assert second["spec"]["pool"]["generation"] == 2
    assert "gpu-0000-86-01-0" not in {d["name"] for d in second["spec"]["devices"]}

    node.unhealthy.clear()
    assert pub.publish() == "update"
    assert api.slices("worker-1")[0]["spec"]["pool"]["generation"] == 3
    assert pub.withdraw() == 1
    assert api.slices() == []


def test_a_restarted_agent_adopts_its_slices_and_bumps_past_them(
    api: DRAApiServerStandIn, topo: Topology
) -> None:
    node = Node(topo)
    ResourceSlicePublisher(client(api), node.build, node_name=node.name).publish()
    again = ResourceSlicePublisher(client(api), node.build, node_name=node.name)
    assert again.publish() == "unchanged" and again.generation == 1
    node.unhealthy.add("0000:17:00.0")
    restarted = ResourceSlicePublisher(client(api), node.build, node_name=node.name)
    assert restarted.publish() == "update"
    assert api.slices()[0]["spec"]["pool"]["generation"] == 2
    assert [w[0] for w in api.writes] == ["create", "update"]


def test_other_nodes_and_drivers_are_left_alone(api: DRAApiServerStandIn, topo: Topology) -> None:
    other = Node(topo, "worker-2")
    ResourceSlicePublisher(client(api), other.build, node_name="worker-2").publish()
    mine = Node(topo)
    pub = ResourceSlicePublisher(client(api), mine.build, node_name="worker-1")
    pub.publish()
    assert pub.withdraw() == 1
    assert [s["spec"]["nodeName"] for s in api.slices()] == ["worker-2"]


def test_background_publisher_follows_triggers(api: DRAApiServerStandIn, topo: Topology) -> None:
    node = Node(topo)
    pub = ResourceSlicePublisher(client(api), node.build, node_name=node.name, coalesce_s=0.01)
    pub.start()
    try:
        assert pub.published.wait(10)
        node.unhealthy.add("0000:b1:01.0")
        pub.trigger()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(api.slices()[0]["spec"]["devices"]) != 7:
            time.sleep(0.02)
        assert len(api.slices()[0]["spec"]["devices"]) == 7
    finally:
        pub.stop()


@pytest.mark.parametrize(
    ("name", "numa"),
    [("gpu-0000-17-00-0", 0), ("gpu-0000-b1-01-0", 1), ("gpu-0000-18-00-0", None), ("gpu-x", None)],
)
def test_numa_of_a_claim_device(topo: Topology, name: str, numa: int | None) -> None:
    assert numa_of_device(topo, name) == numa


def test_a_pool_of_two_slices_shrinks_to_one(api: DRAApiServerStandIn, topo: Topology) -> None:
    gpu = topo.gpus()[0]
    many = tuple(dataclasses.replace(gpu, address=f"0001:{i // 32:02x}:{i % 32:02x}.0") for i in range(130))
    node = Node(dataclasses.replace(topo, pci_devices=many))
    pub = ResourceSlicePublisher(client(api), node.build, node_name=node.name)
    assert pub.publish() == "create"
    assert sorted(len(s["spec"]["devices"]) for s in api.slices()) == [2, 128]
    node.topo = topo
    pub.publish()
    (left,) = api.slices()
    assert len(left["spec"]["devices"]) == 8
    assert left["spec"]["pool"] == {"name": "worker-1", "generation": 2, "resourceSliceCount": 1}
    assert [w[0] for w in api.writes] == ["create", "create", "delete", "update"], "surplus deleted first"


def test_a_bad_node_name_is_a_usage_error(
    root: Path, capsys: pytest.CaptureFixture[str], topo: Topology
) -> None:
    argv = ["discover", "--root", str(root), "--format", "resourceslice", "--node-name", "Worker_1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--node-name: 'Worker_1' is not a node name: expected a DNS subdomain" in err
    with pytest.raises(ValueError, match="expected a DNS subdomain"):
        build_resource_slices(topo, node_name="a" * 254)
