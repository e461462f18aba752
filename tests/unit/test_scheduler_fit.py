"""The scheduler's pure core: pod parsing and QoS, the NUMA fit, the scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from scheduler.errors import PodSpecError, SchedulerConfigError
from scheduler.filter import REASON_CONTAINER, REASON_INIT_CONTAINER, REASON_POD, Victim, fit
from scheduler.pod import PodRequest, QOSClass, parse_pod
from scheduler.score import Scorer, resolve_strategy, to_extender_score
from scheduler.strategies import balanced_allocation, least_allocated, most_allocated
from topology.nrt import NodeResourceTopology

GU = "gu"  # requests == limits
BU = "bu"  # requests only


def container(name: str, kind: str = GU, **resources: str) -> dict[str, Any]:
    res = {k.replace("__", "/").replace("_", "-"): v for k, v in resources.items()}
    body = {"requests": res, "limits": res} if kind == GU else {"requests": res}
    return {"name": name, "resources": body}


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> PodRequest:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})


def nrt(
    zones: dict[int, dict[str, str]],
    policy: str = "single-numa-node",
    scope: str = "container",
    costs: dict[int, dict[int, int]] | None = None,
) -> NodeResourceTopology:
    """An NRT with one ``node-<id>`` zone per entry, in the given order; values are ``available``."""
    return NodeResourceTopology.from_dict(
        {
            "metadata": {"name": "n"},
            "attributes": [
                {"name": "topologyManagerPolicy", "value": policy},
                {"name": "topologyManagerScope", "value": scope},
            ],
            "zones": [
                {
                    "name": f"node-{numa}",
                    "type": "Node",
                    "costs": [
                        {"name": f"node-{k}", "value": v} for k, v in (costs or {}).get(numa, {}).items()
                    ],
                    "resources": [
                        {"name": k, "capacity": v, "allocatable": v, "available": v} for k, v in res.items()
                    ],
                }
                for numa, res in zones.items()
            ],
        }
    )


TWO_BY_FOUR = {0: {"cpu": "4", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}
NODE = {"cpu": "8", "memory": "16Gi", "vendor/nic": "4"}


# --------------------------------------------------------------------- pod
@pytest.mark.parametrize(
    ("spec", "qos"),
    [
        pytest.param(
            [container("a", cpu="2", memory="1Gi")], QOSClass.GUARANTEED, id="equal-requests-limits"
        ),
        pytest.param([container("a", BU, cpu="2", memory="1Gi")], QOSClass.BURSTABLE, id="requests-only"),
        pytest.param(
            [{"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}],
            QOSClass.GUARANTEED,
            id="limits-only-default-requests",
        ),
        pytest.param([container("a", cpu="2")], QOSClass.BURSTABLE, id="no-memory-limit"),
        pytest.param([container("a", vendor__nic="1")], QOSClass.BEST_EFFORT, id="device-only"),
        pytest.param([{"name": "a"}], QOSClass.BEST_EFFORT, id="no-resources"),
        pytest.param(
            [container("a", cpu="2", memory="1Gi"), container("b", BU, cpu="1")],
            QOSClass.BURSTABLE,
            id="one-burstable-container",
        ),
    ],
)
def test_qos_is_computed_by_kubernetes_rules(spec: list[dict[str, Any]], qos: QOSClass) -> None:
    assert pod(*spec).qos is qos


def test_init_container_without_limits_makes_the_pod_burstable() -> None:
    p = pod(container("a", cpu="2", memory="1Gi"), init=(container("i", BU, cpu="1"),))
    assert p.qos is QOSClass.BURSTABLE


def test_effective_request_is_max_of_largest_init_and_sum_of_apps() -> None:
    p = pod(
        container("a", cpu="2", memory="1Gi"),
        container("b", cpu="1", memory="1Gi"),
        init=(container("i1", cpu="5", memory="1Gi"), container("i2", cpu="1", memory="3Gi")),
    )
    # cpu: max(5, 2+1) = 5 CPUs; memory: max(3Gi, 1Gi+1Gi) = 3Gi
    assert dict(p.effective_request()) == {"cpu": 5000, "memory": 3 * 2**30}


def test_integer_cpu_containers_are_recognised() -> None:
    p = pod(container("a", cpu="2", memory="1Gi"), container("b", cpu="1500m", memory="1Gi"))
    assert [p.exclusive_cpus(c) for c in p.containers] == [2, 0]


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        pytest.param([], "object", id="not-an-object"),
        pytest.param({"metadata": {}}, "spec", id="no-spec"),
        pytest.param({"spec": {}}, "spec.containers", id="no-containers"),
        pytest.param({"spec": {"containers": [{"resources": {}}]}}, "spec.containers[0].name", id="no-name"),
        pytest.param(
            {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "two"}}}]}},
            "spec.containers[0].resources.requests['cpu']",
            id="bad-quantity",
        ),
        pytest.param(
            {"spec": {"containers": [], "initContainers": [{"name": "i", "resources": {"limits": []}}]}},
            "spec.initContainers[0].resources.limits",
            id="limits-not-a-map",
        ),
        pytest.param(
            {"metadata": {"name": 3}, "spec": {"containers": []}}, "metadata.name", id="name-not-string"
        ),
    ],
)
def test_malformed_pods_name_the_field(obj: Any, field: str) -> None:
    with pytest.raises(PodSpecError) as err:
        parse_pod(obj)
    assert err.value.field == field


# --------------------------------------------------------------------- fit
@dataclass(frozen=True)
class FitCase:
    description: str
    pod: PodRequest
    nrt: NodeResourceTopology | None
    reason: str | None  # None: fits
    node: dict[str, str] = field(default_factory=lambda: NODE)
    victims: tuple[Victim, ...] | None = None


FIT_CASES = [
    FitCase("GuPod, NoNRT, ExpectFit", pod(container("a", cpu="64", memory="1Gi")), None, None),
    FitCase(
        "GuPodTooBig, PolicyRestricted, ExpectFit (only single-numa-node is filtered)",
        pod(container("a", cpu="6", memory="1Gi")),
        nrt(TWO_BY_FOUR, policy="restricted"),
        None,
    ),
    FitCase(
        "GuTwoContainers3CPU, ContainerScope2x4, ExpectFit (one per NUMA node)",
        pod(container("a", cpu="3", memory="1Gi"), container("b", cpu="3", memory="1Gi")),
        nrt(TWO_BY_FOUR),
        None,
    ),
    FitCase(
        "GuThreeContainers3CPU, ContainerScope2x4, ExpectCannotAlignContainer (subtracted per container)",
        pod(*(container(n, cpu="3", memory="1Gi") for n in "abc")),
        nrt(TWO_BY_FOUR),
        REASON_CONTAINER,
    ),
    FitCase(
        "GuTwoContainers3CPU, PodScope2x4, ExpectCannotAlignPod (6 > 4 on every zone)",
        pod(container("a", cpu="3", memory="1Gi"), container("b", cpu="3", memory="1Gi")),
        nrt(TWO_BY_FOUR, scope="pod"),
        REASON_POD,
    ),
    FitCase(
        "GuInit5CPU, ContainerScope2x4, ExpectCannotAlignInitContainer",
        pod(container("a", cpu="1", memory="1Gi"), init=(container("i", cpu="5", memory="1Gi"),)),
        nrt(TWO_BY_FOUR),
        REASON_INIT_CONTAINER,
    ),
    FitCase(
        "GuTwoInits4CPU, ContainerScope2x4, ExpectFit (init containers are neither summed nor subtracted)",
        pod(
            container("a", cpu="4", memory="1Gi"),
            init=(container("i1", cpu="4", memory="1Gi"), container("i2", cpu="4", memory="1Gi")),
        ),
        nrt(TWO_BY_FOUR),
        None,
    ),
    FitCase(
        "GuPod4CPU, SparseIds node-3/node-9, ExpectFit on node-9",
        pod(container("a", cpu="4", memory="1Gi")),
        nrt({3: {"cpu": "2", "memory": "8Gi"}, 9: {"cpu": "4", "memory": "8Gi"}}),
        None,
    ),
    FitCase(
        "GuPodWithDeviceNodeLacks, ExpectCannotAlign (resource absent from node)",
        pod(container("a", cpu="1", memory="1Gi", vendor__fpga="1")),
        nrt(TWO_BY_FOUR),
        REASON_CONTAINER,
    ),
    FitCase(
        "GuPodWithHostLevelDevice, ExpectFit (no zone reports it, node has it)",
        pod(container("a", cpu="1", memory="1Gi", vendor__nic="2")),
        nrt(TWO_BY_FOUR),
        None,
    ),
    FitCase(
        "GuPodDeviceAndCPUOnDifferentZones, ExpectCannotAlign",
        pod(container("a", cpu="4", memory="1Gi", vendor__nic="2")),
        nrt(
            {
                0: {"cpu": "4", "memory": "8Gi", "vendor/nic": "0"},
                1: {"cpu": "2", "memory": "8Gi", "vendor/nic": "4"},
            }
        ),
        REASON_CONTAINER,
    ),
    FitCase(
        "GuPodZeroRequestOfMissingResource, ExpectFit",
        pod(container("a", cpu="1", memory="1Gi", hugepages_1Gi="0")),
        nrt(TWO_BY_FOUR),
        None,
    ),
    FitCase(
        "BuPod6CPU, ContainerScope2x4, ExpectFit (cpu is not pinned for Burstable)",
        pod(container("a", BU, cpu="6", memory="1Gi")),
        nrt(TWO_BY_FOUR),
        None,
    ),
    FitCase(
        "BePodDevicesTooMany, ContainerScope, ExpectCannotAlign (devices still must fit)",
        pod(container("a", vendor__nic="3")),
        nrt({0: {"cpu": "4", "vendor/nic": "2"}, 1: {"cpu": "4", "vendor/nic": "2"}}),
        REASON_CONTAINER,
    ),
    FitCase(
        "GuPod5CPU, 2x4 with victim on node-1 holding 2, ExpectFit after preemption",
        pod(container("a", cpu="5", memory="1Gi")),
        nrt(TWO_BY_FOUR),
        None,
        victims=(Victim(pod(container("v", cpu="2", memory="1Gi")), {"v": 1}),),
    ),
    FitCase(
        "GuPod5CPU, 2x4 with victim of unknown affinity, ExpectCannotAlign",
        pod(container("a", cpu="5", memory="1Gi")),
        nrt(TWO_BY_FOUR),
        REASON_CONTAINER,
        victims=(Victim(pod(container("v", cpu="2", memory="1Gi")), None),),
    ),
]


@pytest.mark.parametrize("case", FIT_CASES, ids=lambda c: c.description)
def test_fit(case: FitCase) -> None:
    got = fit(case.pod, case.nrt, case.node, victims=case.victims)
    assert (got.fits, got.reason) == (case.reason is None, case.reason), got.detail
    assert got.status == ("Success" if case.reason is None else "Unschedulable")
    # Only a real check that fails hints at stale NRT data; a preemption simulation does not.
    assert got.maybe_overreserved is (case.reason is not None and case.victims is None)


def test_a_rejection_explains_itself_with_the_numbers() -> None:
    got = fit(pod(container("big", cpu="5", memory="1Gi")), nrt(TWO_BY_FOUR), NODE)
    assert "'big'" in got.detail and "5000" in got.detail and "node-0: 4000" in got.detail


# ------------------------------------------------------------------- score
@dataclass(frozen=True)
class ScoreCase:
    description: str
    strategy: str
    pod: PodRequest
    nrt: NodeResourceTopology | None
    expected: int
    weights: dict[str, int] = field(default_factory=dict)


GU_2CPU_2GI = pod(container("a", cpu="2", memory="2Gi"))
SCORE_CASES = [
    # cpu 2/4 -> 50, memory 2Gi/8Gi -> 25; zone (50+25)/2 = 37 on both zones -> 37
    ScoreCase("MostAllocated, 2x4", "MostAllocated", GU_2CPU_2GI, nrt(TWO_BY_FOUR), 37),
    # cpu weight 3: (50*3 + 25*1) / 4 = 43
    ScoreCase("MostAllocated, cpu weight 3", "most-allocated", GU_2CPU_2GI, nrt(TWO_BY_FOUR), 43, {"cpu": 3}),
    # pod scope rates the worst fitting zone: node-0 cpu 2/2 -> 100, mem 25 -> 62; node-1 37 -> 37
    ScoreCase(
        "MostAllocated, pod scope, min non-zero zone",
        "most-allocated",
        GU_2CPU_2GI,
        nrt({0: {"cpu": "2", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}, scope="pod"),
        37,
    ),
    # node-0 holds neither 2 CPUs nor 2Gi: (0+0)/2 = 0, ignored; node-1: (50+25)/2 = 37
    ScoreCase(
        "MostAllocated, zero zone ignored",
        "most-allocated",
        GU_2CPU_2GI,
        nrt({0: {"cpu": "1", "memory": "1Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}),
        37,
    ),
    # node-0 lacks cpu (0) but memory 2Gi/8Gi gives 25: (0+25)/2 = 12, the minimum non-zero zone
    ScoreCase(
        "MostAllocated, partial zone counts",
        "most-allocated",
        GU_2CPU_2GI,
        nrt({0: {"cpu": "1", "memory": "8Gi"}, 1: {"cpu": "4", "memory": "8Gi"}}),
        12,
    ),
    # container scope mean: a (cpu 2/4 -> 50, mem 2Gi/8Gi -> 25) = 37; b (cpu 4/4 -> 100, mem 25) = 62;
    # (37 + 62) / 2 = 49
    ScoreCase(
        "MostAllocated, container scope mean",
        "most-allocated",
        pod(container("a", cpu="2", memory="2Gi"), container("b", cpu="4", memory="2Gi")),
        nrt(TWO_BY_FOUR),
        49,
    ),
    # cpu (4-2)/4 -> 50, memory (8-2)/8 -> 75; (50+75)/2 = 62
    ScoreCase("LeastAllocated, 2x4", "LeastAllocated", GU_2CPU_2GI, nrt(TWO_BY_FOUR), 62),
    # fractions 0.5 and 0.25: mean 0.375, sample variance 2*0.125^2/1 = 0.03125 -> (1-0.03125)*100 = 96
    ScoreCase("BalancedAllocation, 2x4", "BalancedAllocation", GU_2CPU_2GI, nrt(TWO_BY_FOUR), 96),
    ScoreCase(
        "MostAllocated, policy best-effort -> 0",
        "most-allocated",
        GU_2CPU_2GI,
        nrt(TWO_BY_FOUR, "best-effort"),
        0,
    ),
    ScoreCase("MostAllocated, no NRT -> 0", "most-allocated", GU_2CPU_2GI, None, 0),
    ScoreCase(
        "Any strategy, Burstable pod -> 100", "most-allocated", pod(container("a", BU, cpu="1")), None, 100
    ),
    # one NUMA node fits: 100 - 1*12 = 88, plus 6 for the least distance (no costs: all 255) = 94
    ScoreCase("LeastNUMANodes, one zone", "least-numa-nodes", GU_2CPU_2GI, nrt(TWO_BY_FOUR, "none"), 94),
    # 6 CPUs need both zones: 100 - 2*12 + 6 = 82
    ScoreCase(
        "LeastNUMANodes, two zones",
        "least-numa-nodes",
        pod(container("a", cpu="6", memory="2Gi")),
        nrt(TWO_BY_FOUR, "none"),
        82,
    ),
    # 4 zones, 6 CPUs: {0,1} costs avg (10+12+12+10)/4 = 11 is the least; {0,2} avg 15 would lose
    ScoreCase(
        "LeastNUMANodes, closest pair",
        "least-numa-nodes",
        pod(container("a", cpu="6", memory="2Gi")),
        nrt(
            {n: {"cpu": "4", "memory": "8Gi"} for n in (0, 1, 2, 3)},
            "none",
            costs={
                0: {0: 10, 1: 12, 2: 20, 3: 20},
                1: {0: 12, 1: 10, 2: 20, 3: 20},
                2: {0: 20, 1: 20, 2: 10, 3: 12},
                3: {0: 20, 1: 20, 2: 12, 3: 10},
            },
        ),
        82,
    ),
    # containers of 3 CPUs: the first takes node-0 (1 left), the second needs node-1: one zone each -> 94
    ScoreCase(
        "LeastNUMANodes, container subtraction",
        "least-numa-nodes",
        pod(container("a", cpu="3", memory="1Gi"), container("b", cpu="3", memory="1Gi")),
        nrt(TWO_BY_FOUR, "none"),
        94,
    ),
    ScoreCase(
        "LeastNUMANodes, cannot fit -> 0",
        "least-numa-nodes",
        pod(container("a", cpu="9", memory="1Gi")),
        nrt(TWO_BY_FOUR, "none"),
        0,
    ),
    ScoreCase(
        "LeastNUMANodes, only non-NUMA resources -> 100",
        "least-numa-nodes",
        pod(container("a", cpu="1", memory="1Gi", ephemeral_storage="1Gi")),
        nrt({0: {"vendor/nic": "1"}}, "none"),
        100,
    ),
]


@pytest.mark.parametrize("case", SCORE_CASES, ids=lambda c: c.description)
def test_score(case: ScoreCase) -> None:
    assert Scorer(case.strategy, case.weights).score(case.pod, case.nrt) == case.expected


@pytest.mark.parametrize(
    "fn,expected",
    [
        pytest.param(most_allocated, 0, id="most-allocated-empty-is-0"),
        pytest.param(least_allocated, 100, id="least-allocated-empty-is-100"),
        pytest.param(balanced_allocation, 100, id="balanced-empty-is-100"),
    ],
)
def test_empty_requests_are_guarded(fn: Any, expected: int) -> None:
    assert fn({}, {"cpu": 4000}, {}) == expected


def test_balanced_single_resource_has_no_imbalance() -> None:
    assert balanced_allocation({"cpu": 2000}, {"cpu": 4000}, {}) == 100


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        pytest.param("MostAllocated", "most-allocated", id="plugin-spelling"),
        pytest.param("least-numa-nodes", "least-numa-nodes", id="canonical"),
        pytest.param("BalancedAllocation", "balanced-allocation", id="balanced"),
    ],
)
def test_strategies_resolve_from_the_registry(name: str, canonical: str) -> None:
    assert resolve_strategy(name)[0] == canonical
    assert Scorer(name).strategy == canonical


def test_unknown_strategy_lists_the_valid_names() -> None:
    with pytest.raises(SchedulerConfigError, match=r"'MostAllocatable'.*most-allocated.*LeastNUMANodes"):
        Scorer("MostAllocatable")


def test_weights_must_be_integers() -> None:
    with pytest.raises(SchedulerConfigError, match="cpu"):
        Scorer("most-allocated", {"cpu": 1.5})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("score", "extender"),
    [(0, 0), (4, 0), (5, 1), (27, 3), (94, 9), (95, 10), (100, 10), (150, 10), (-3, 0)],
    ids=lambda v: str(v),
)
def test_extender_scale(score: int, extender: int) -> None:
    assert to_extender_score(score) == extender
