"""The NodeResourceTopology model: wire round trips, validation, NUMA views, the builder."""

from __future__ import annotations

import copy
import json
from types import MappingProxyType
from typing import Any

import pytest

from tests.conformance_sets import load_cases
from topology.cpuset import CPUSet
from topology.model import Core, HugePages, NumaNode, Package, Topology
from topology.nrt import (
    NodeResourceTopology,
    NRTError,
    TopologyManagerConfig,
    build_nrt,
    numa_id_from_zone_name,
)
from topology.quantity import QuantityError

# The example object of the reference notes, quantities written as NFD writes them.
EXAMPLE: dict[str, Any] = {
    "apiVersion": "topology.node.k8s.io/v1alpha2",
    "kind": "NodeResourceTopology",
    "metadata": {"name": "worker-7"},
    "attributes": [
        {"name": "topologyManagerPolicy", "value": "single-numa-node"},
        {"name": "topologyManagerScope", "value": "pod"},
    ],
    "zones": [
        {
            "name": "node-0",
            "type": "Node",
            "costs": [{"name": "node-0", "value": 10}, {"name": "node-1", "value": 21}],
            "resources": [
                {"name": "cpu", "capacity": "32", "allocatable": "30", "available": "22"},
                {
                    "name": "memory",
                    "capacity": "68719476736",
                    "allocatable": "66571993088",
                    "available": "66571993088",
                },
                {"name": "nvidia.com/gpu", "capacity": "4", "allocatable": "4", "available": "2"},
            ],
        },
        {
            "name": "node-1",
            "type": "Node",
            "costs": [{"name": "node-0", "value": 21}, {"name": "node-1", "value": 10}],
            "resources": [{"name": "cpu", "capacity": "32", "allocatable": "32", "available": "500m"}],
        },
    ],
}


def _case_nrts() -> list[Any]:
    data = load_cases("nrt")
    found = []
    for key in ("filter_cases", "score_cases", "scheduling_cases"):
        for case in data.get(key, []):
            nodes = case.get("nodes") or [{"name": "", "nrt": case.get("nrt")}]
            for node in nodes:
                if node["nrt"] is not None:
                    found.append(pytest.param(node["nrt"], id=f"{case['id']}/{node['name']}"))
    return found


def test_wire_round_trip_is_exact_for_plain_quantities() -> None:
    assert NodeResourceTopology.from_dict(EXAMPLE).to_dict() == EXAMPLE


def test_quantities_become_canonical_ints() -> None:
    nrt = NodeResourceTopology.from_dict(EXAMPLE)
    zone0, zone1 = nrt.zones
    assert zone0.resource("cpu") is not None and zone0.resource("cpu").available == 22_000  # type: ignore[union-attr]
    assert zone1.resource("cpu").available == 500  # type: ignore[union-attr]
    assert zone0.resource("nvidia.com/gpu").capacity == 4  # type: ignore[union-attr]


@pytest.mark.parametrize("obj", _case_nrts())
def test_every_conformance_nrt_survives_a_round_trip(obj: dict[str, Any]) -> None:
    nrt = NodeResourceTopology.from_dict(obj)
    assert NodeResourceTopology.from_dict(nrt.to_dict()) == nrt
    assert nrt.name == obj["metadata"]["name"]
    assert [z.name for z in nrt.zones] == [z["name"] for z in obj["zones"]]


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(EXAMPLE)
    target: Any = obj
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "error", "field"),
    [
        pytest.param(["zones"], _DELETE, NRTError, "zones", id="zones-missing"),
        pytest.param(["zones"], {}, NRTError, "zones", id="zones-not-a-list"),
        pytest.param(["metadata", "name"], _DELETE, NRTError, "metadata.name", id="name-missing"),
        pytest.param(["apiVersion"], "v1", NRTError, "apiVersion", id="wrong-api-version"),
        pytest.param(["kind"], "Node", NRTError, "kind", id="wrong-kind"),
        pytest.param(["zones", 0, "type"], _DELETE, NRTError, "zones[0].type", id="zone-type-missing"),
        pytest.param(
            ["zones", 0, "resources", 1, "available"],
            "lots",
            QuantityError,
            "zones[0].resources[1].available",
            id="bad-quantity",
        ),
        pytest.param(
            ["zones", 1, "resources", 0, "allocatable"],
            _DELETE,
            NRTError,
            "zones[1].resources[0].allocatable",
            id="allocatable-missing",
        ),
        pytest.param(
            ["zones", 0, "costs", 1, "value"], "21", NRTError, "zones[0].costs[1].value", id="cost-not-int"
        ),
        pytest.param(["attributes", 0], "x", NRTError, "attributes[0]", id="attribute-not-object"),
        pytest.param(["topologyPolicies"], [1], NRTError, "topologyPolicies", id="policies-not-strings"),
    ],
)
def test_malformed_objects_name_the_field(
    path: list[Any], value: Any, error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as err:
        NodeResourceTopology.from_dict(_broken(path, value))
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("node-0", 0, id="zero"),
        pytest.param("node-12", 12, id="two-digits"),
        pytest.param("Node-1", None, id="capital"),
        pytest.param("node_3", None, id="underscore"),
        pytest.param("node6", None, id="no-dash"),
        pytest.param("cell-1", None, id="other-word"),
        pytest.param("node-", None, id="no-digits"),
        pytest.param("node--1", None, id="negative"),
        pytest.param("numa-node-0", None, id="old-readme-spelling"),
    ],
)
def test_zone_names_parse_strictly(name: str, expected: int | None) -> None:
    assert numa_id_from_zone_name(name) == expected


def test_numa_cells_keep_zone_order_and_skip_non_numa_zones() -> None:
    obj = copy.deepcopy(EXAMPLE)
    obj["zones"] = [
        {
            "name": "node-3",
            "type": "Node",
            "costs": [{"name": "node-1", "value": 20}, {"name": "x", "value": 1}],
        },
        {"name": "node-1", "type": "Node"},
        {"name": "socket-0", "type": "Socket"},
        {"name": "node-75", "type": "Node"},
        {"name": "cell-2", "type": "Node"},
    ]
    cells = NodeResourceTopology.from_dict(obj).numa_cells()
    assert [c.numa_id for c in cells] == [3, 1]
    assert dict(cells[0].costs) == {1: 20}


@pytest.mark.parametrize(
    ("policies", "attributes", "expected"),
    [
        pytest.param([], [], ("none", "container"), id="defaults"),
        pytest.param(["SingleNUMANodePodLevel"], [], ("single-numa-node", "pod"), id="legacy-policy"),
        pytest.param(
            ["SingleNUMANodePodLevel"],
            [{"name": "topologyManagerScope", "value": "container"}],
            ("single-numa-node", "container"),
            id="attributes-win",
        ),
        pytest.param(
            [],
            [{"name": "topologyManagerPolicy", "value": "Restricted"}],
            ("none", "container"),
            id="bad-case-ignored",
        ),
    ],
)
def test_topology_manager_config_precedence(
    policies: list[str], attributes: list[dict[str, str]], expected: tuple[str, str]
) -> None:
    obj = {"metadata": {"name": "n"}, "zones": [], "topologyPolicies": policies, "attributes": attributes}
    conf = NodeResourceTopology.from_dict(obj).topology_manager()
    assert (conf.policy, conf.scope) == expected


def test_max_numa_nodes_attribute_is_read_within_bounds() -> None:
    def conf(value: str) -> TopologyManagerConfig:
        attrs = [{"name": "topologyManagerMaxNUMANodes", "value": value}]
        return NodeResourceTopology.from_dict(
            {"metadata": {"name": "n"}, "zones": [], "attributes": attrs}
        ).topology_manager()

    assert [conf(v).max_numa_nodes for v in ("16", "1", "2000", "x")] == [16, 8, 8, 8]


# ------------------------------------------------------------------ builder
def _sparse_topology() -> Topology:
    """Two NUMA nodes with sparse ids 0 and 2, 2 cores x 2 threads each, 2Mi hugepages on node 0."""
    mem = 16 * 2**30
    nodes = [
        NumaNode(
            0,
            CPUSet.parse("0-1,4-5"),
            memory_bytes=mem,
            hugepages=MappingProxyType({2048: HugePages(2048, 512, 100), 1048576: HugePages(1048576, 0, 0)}),
            distances=MappingProxyType({0: 10, 2: 21}),
        ),
        NumaNode(2, CPUSet.parse("2-3,6-7"), memory_bytes=mem, distances=MappingProxyType({0: 21, 2: 10})),
    ]
    cores = [Core(c, c, 0, CPUSet.of(c, c + 4)) for c in range(4)]
    return Topology.build(packages=[Package(0, CPUSet.parse("0-7"), 0)], numa_nodes=nodes, cores=cores)


def test_build_nrt_makes_one_zone_per_numa_node() -> None:
    nrt = build_nrt(
        _sparse_topology(),
        node_name="worker-1",
        policy="single-numa-node",
        scope="pod",
        reserved_cpus=CPUSet.of(0, 4),
        extra_resources={2: {"nvidia.com/gpu": 2}},
        available_by_numa={2: {"cpu": 1000, "nvidia.com/gpu": 1}},
    )
    assert nrt.name == "worker-1"
    assert [z.name for z in nrt.zones] == ["node-0", "node-2"]
    assert {z.type for z in nrt.zones} == {"Node"}
    zone0, zone2 = nrt.zones
    # node-0: 4 CPUs, 2 reserved; 512 pages x 2 MiB = 1 GiB of 2Mi hugepages; the empty 1Gi pool is left out.
    assert [(r.name, r.capacity, r.allocatable, r.available) for r in zone0.resources] == [
        ("cpu", 4000, 2000, 2000),
        ("memory", 16 * 2**30, 16 * 2**30, 16 * 2**30),
        ("hugepages-2Mi", 2**30, 2**30, 2**30),
    ]
    assert [(r.name, r.available) for r in zone2.resources] == [
        ("cpu", 1000),
        ("memory", 16 * 2**30),
        ("nvidia.com/gpu", 1),
    ]
    assert [(c.name, c.value) for c in zone2.costs] == [("node-0", 21), ("node-2", 10)]
    assert nrt.attribute("topologyManagerPolicy") == "single-numa-node"
    assert (nrt.topology_manager().policy, nrt.topology_manager().scope) == ("single-numa-node", "pod")
    assert NodeResourceTopology.from_dict(json.loads(json.dumps(nrt.to_dict()))) == nrt


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"policy": "SingleNUMANode"}, "policy", id="bad-policy"),
        pytest.param({"scope": "Pod"}, "scope", id="bad-scope"),
        pytest.param({"node_name": ""}, "node_name", id="empty-node-name"),
        pytest.param({"available_by_numa": {1: {"cpu": 1}}}, "available_by_numa", id="unknown-numa-id"),
        pytest.param(
            {"available_by_numa": {0: {"cpu": 5000}}}, "available_by_numa[0]['cpu']", id="above-allocatable"
        ),
        pytest.param({"available_by_numa": {0: {"gpu": 1}}}, "available_by_numa[0]", id="unknown-resource"),
        pytest.param(
            {"extra_resources": {0: {"cpu": 1}}}, "extra_resources[0]['cpu']", id="extra-shadows-cpu"
        ),
    ],
)
def test_build_nrt_rejects_bad_input_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"node_name": "w", **kwargs}
    with pytest.raises(NRTError) as err:
        build_nrt(_sparse_topology(), **args)
    assert err.value.field == field
