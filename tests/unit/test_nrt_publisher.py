"""The NRT object built from live availability, and its publication through the official
`kubernetes` client to the API-server stand-in (create, replace with resourceVersion, no
write when unchanged, repair after outside changes, retries with backoff)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube.client import api_client_for_url
from kube.errors import KubeConflict
from kube.resources import ClusterObjects, node_resource_topologies
from tests.fakesysfs import FakeSpec, write_fake_sysfs
from tests.nrt_standin import NRTApiServerStandIn
from topolet.nrt_publisher import NRTPublisher, free_hugepages, node_nrt
from topology.cpuset import CPUSet
from topology.model import Topology
from topology.nrt import NodeResourceTopology
from topology.sysfs import discover

#: Two sockets, one NUMA node each (ids 0 and 4: CPUs 0-3,8-11 and 4-7,12-15), 2 MiB pages.
SPEC = FakeSpec(
    sockets=(0, 1),
    numa_ids=(0, 4),
    cores_per_socket=4,
    threads_per_core=2,
    hugepages_2m=16,
    hugepages_2m_free=10,
)
EXCL = "topolet.io/exclusive-cpus"
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Topology]:
    root = write_fake_sysfs(tmp_path_factory.mktemp("nrt") / "root", SPEC)
    return root, discover(root)


def available(nrt: NodeResourceTopology, zone: str) -> dict[str, int]:
    z = nrt.zone(zone)
    assert z is not None
    return {r.name: r.available for r in z.resources}


@pytest.mark.parametrize(
    ("assignable", "gpus", "expect0", "expect4"),
    [
        pytest.param("1-15", {}, {"cpu": 7000, EXCL: 7}, {"cpu": 8000, EXCL: 8}, id="all-free-but-reserved"),
        pytest.param("4-7,12-15", {}, {"cpu": 0, EXCL: 0}, {"cpu": 8000, EXCL: 8}, id="node0-taken"),
        pytest.param("1-15", {GPU: {0: (2, 1), 4: (2, 2)}}, {GPU: 1}, {GPU: 2}, id="gpus-one-in-use"),
        pytest.param("0-15", {}, {"cpu": 7000}, {"cpu": 8000}, id="reserved-never-counted-free"),
    ],
)
def test_availability_per_zone(
    machine: tuple[Path, Topology],
    assignable: str,
    gpus: dict[str, dict[int, tuple[int, int]]],
    expect0: dict[str, int],
    expect4: dict[str, int],
) -> None:
    root, topo = machine
    reserved = CPUSet.parse("0")
    nrt = node_nrt(
        topo,
        node_name="n1",
        policy="single-numa-node",
        scope="pod",
        reserved=reserved,
        assignable=CPUSet.parse(assignable),
        exclusive_cpu_resource=EXCL,
        gpus=gpus,
        hugepages=free_hugepages(root, topo),
    )
    assert [z.name for z in nrt.zones] == ["node-0", "node-4"]
    assert expect0.items() <= available(nrt, "node-0").items()
    assert expect4.items() <= available(nrt, "node-4").items()
    assert available(nrt, "node-0")["hugepages-2Mi"] == 10 * 2 * 1024 * 1024
    assert nrt.topology_manager().policy == "single-numa-node"


def test_free_hugepages_follow_sysfs(machine: tuple[Path, Topology], tmp_path: Path) -> None:
    root = write_fake_sysfs(tmp_path / "r", SPEC)
    topo = discover(root)
    f = root / "sys/devices/system/node/node4/hugepages/hugepages-2048kB/free_hugepages"
    f.write_text("3\n")
    expected = {0: {"hugepages-2Mi": 10 * 2 << 20}, 4: {"hugepages-2Mi": 3 * 2 << 20}}
    assert free_hugepages(root, topo) == expected


class Availability:
    """What the node has free; tests change it and publish."""

    def __init__(self, topo: Topology) -> None:
        self.topo, self.assignable = topo, CPUSet.parse("1-15")

    def build(self) -> NodeResourceTopology:
        return node_nrt(
            self.topo,
            node_name="n1",
            policy="none",
            scope="container",
            reserved=CPUSet.of(0),
            assignable=self.assignable,
            exclusive_cpu_resource=EXCL,
        )


@pytest.fixture
def api() -> Iterator[NRTApiServerStandIn]:
    standin = NRTApiServerStandIn().start()
    assert isinstance(standin, NRTApiServerStandIn)
    yield standin
    standin.stop()


def client(standin: NRTApiServerStandIn) -> ClusterObjects:
    return node_resource_topologies(api_client_for_url(standin.url))


def cpu_available(obj: dict[str, Any] | None, zone: int = 0) -> str:
    assert obj is not None
    return next(str(r["available"]) for r in obj["zones"][zone]["resources"] if r["name"] == "cpu")


def test_create_then_replace_only_on_change(api: NRTApiServerStandIn, machine: tuple[Path, Topology]) -> None:
    node = Availability(machine[1])
    pub = NRTPublisher(client(api), node.build)
    assert pub.publish() == "create"
    created = api.nrt("n1")
    assert created is not None and created["metadata"]["uid"]
    assert pub.publish() == "unchanged"
    node.assignable = CPUSet.parse("4-7,12-15")
    assert pub.publish() == "replace"
    assert api.writes == [("create", "n1"), ("replace", "n1")]
    after = api.nrt("n1")
    assert after is not None and cpu_available(after) == "0"
    assert after["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(after["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert NodeResourceTopology.from_dict(after) == node.build()


def test_forced_resync_repairs_outside_changes(
    api: NRTApiServerStandIn, machine: tuple[Path, Topology]
) -> None:
    node = Availability(machine[1])
    pub = NRTPublisher(client(api), node.build)
    pub.publish()
    api.delete_nrt("n1")
    assert pub.publish() == "unchanged"  # no change of ours: no API call
    assert pub.publish(force=True) == "create"
    other = node.build().to_dict()
    other["zones"][0]["resources"][0]["available"] = "1"
    api.put_nrt(other)
    assert pub.publish(force=True) == "replace"
    assert cpu_available(api.nrt("n1")) == "7"
    assert pub.publish(force=True) == "unchanged"


def test_background_publisher_retries_with_backoff(
    api: NRTApiServerStandIn, machine: tuple[Path, Topology]
) -> None:
    node = Availability(machine[1])
    errors: list[float] = []
    writes: list[str] = []
    api.fail_next(2)
    pub = NRTPublisher(
        client(api),
        node.build,
        coalesce_s=0.01,
        min_backoff_s=0.05,
        max_backoff_s=0.2,
        on_error=lambda: errors.append(time.monotonic()),
        on_write=writes.append,
    )
    pub.start()
    try:
        assert pub.published.wait(5)
        assert len(errors) == 2 and errors[1] - errors[0] >= 0.05
        node.assignable = CPUSet.parse("4-7,12-15")
        pub.trigger()
        deadline = time.monotonic() + 5
        while cpu_available(api.nrt("n1")) != "0" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cpu_available(api.nrt("n1")) == "0"
    finally:
        pub.stop()
    assert writes == ["create", "replace"]


def test_stale_resource_version_is_refused_by_the_standin(
    api: NRTApiServerStandIn, machine: tuple[Path, Topology]
) -> None:
    node = Availability(machine[1])
    NRTPublisher(client(api), node.build).publish()
    body = node.build().to_dict()
    body["metadata"]["resourceVersion"] = "1"
    with pytest.raises(KubeConflict) as err:
        client(api).replace("n1", body)
    assert err.value.status == 409
