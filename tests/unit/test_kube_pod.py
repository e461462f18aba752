"""The one pod model (:mod:`kube.pod`): QoS, exclusive CPUs, init containers and sidecars,
hugepages and devices as kubelet counts them, and the same answer on the node path
(pod source → CPU manager) and the simulator path (simulated kubelet) for the same pod.

Expected values come from Kubernetes' own rules and test tables, never from this code:
each case names its source.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.simulate.kubelet import KubeletNode, pinned_request
from bench.simulate.nodes import NODE_TYPES, build_topology
from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import HugePagesRequestError
from cpumanager.kube_source import pod_containers, pod_qos
from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.policy_static import StaticPolicy
from kube.pod import ContainerKind, InvalidPodError, QOSClass, parse_pod
from scheduler.errors import PodSpecError
from scheduler.pod import parse_pod as scheduler_parse_pod
from topology.quantity import CPU

GiB = 2**30
MiB = 2**20


def res(cpu: str = "", memory: str = "", **extra: str) -> dict[str, str]:
    """A resource list like kubelet's test helper getResourceList: empty strings are left out."""
    out = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    out.update({k.replace("_", "-"): v for k, v in extra.items()})
    return out


def ctr(
    name: str,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    *,
    restart: str | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    out: dict[str, Any] = {"name": name, "resources": resources}
    if restart is not None:
        out["restartPolicy"] = restart
    return out


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"}, "spec": spec}


G = res("2", "1Gi")  # a whole-CPU Guaranteed container's requests = limits

# ---------------------------------------------------------------------------- QoS
# TQ: the cases of TestComputePodQOS in kubernetes pkg/apis/core/v1/helper/qos/qos_test.go
#     (container-level ones; the pod-level-resources cases need spec.resources, not modelled),
#     same resources, same expected class; their ids are the pod names used there.
# DEF: the API server's defaulting (SetDefaults_Pod; kubernetes.io "Configure Quality of
#     Service for Pods": a container that sets a limit and no request gets the limit as
#     its request), so a limits-only pod is Guaranteed.
QOS_CASES = [
    pytest.param(pod(ctr("g", res("100m", "100Mi"), res("100m", "100Mi"))), "Guaranteed", id="TQ/guaranteed"),
    pytest.param(
        pod(
            ctr("a", res("100m", "100Mi"), res("100m", "100Mi")),
            ctr("b", res("100m", "100Mi"), res("100m", "100Mi")),
        ),
        "Guaranteed",
        id="TQ/guaranteed-guaranteed",
    ),
    pytest.param(pod(ctr("a"), ctr("b")), "BestEffort", id="TQ/best-effort-best-effort"),
    pytest.param(pod(ctr("a")), "BestEffort", id="TQ/best-effort"),
    pytest.param(pod(ctr("a"), ctr("b", res("1"), res("2"))), "Burstable", id="TQ/best-effort-burstable"),
    pytest.param(
        pod(ctr("a"), ctr("b", res("10m", "100Mi"), res("10m", "100Mi"))),
        "Burstable",
        id="TQ/best-effort-guaranteed",
    ),
    pytest.param(
        pod(ctr("a", res("", "100Mi"), res("", "100Mi"))),
        "Burstable",
        id="TQ/burstable-cpu-guaranteed-memory",
    ),
    pytest.param(pod(ctr("a", res("100m", "100Mi"))), "Burstable", id="TQ/burstable-no-limits"),
    pytest.param(
        pod(
            ctr("a", res("1", "100Mi"), res("2", "100Mi")),
            ctr("b", res("100m", "100Mi"), res("100m", "100Mi")),
        ),
        "Burstable",
        id="TQ/burstable-guaranteed",
    ),
    pytest.param(
        pod(ctr("a", res("100m", "100Mi"), res("200m", "200Mi")), ctr("b", res("100m", "100Mi"))),
        "Burstable",
        id="TQ/burstable-unbounded-but-requests-match-limits",
    ),
    pytest.param(pod(ctr("a", res("10m", "100Mi"), res("100m", "200Mi"))), "Burstable", id="TQ/burstable-1"),
    # explicit zero requests are not replaced by the limits (defaulting fills only absent ones)
    pytest.param(pod(ctr("a", res("0", "0"), res("100m", "200Mi"))), "Burstable", id="TQ/burstable-2"),
    pytest.param(
        pod(ctr("a", res("0", "0", hugepages_2Mi="1Gi"), res("0", "0", hugepages_2Mi="1Gi"))),
        "BestEffort",
        id="TQ/best-effort-hugepages",
    ),
    pytest.param(
        pod(ctr("a"), init=(ctr("i", res("10m", "100Mi"), res("100m", "200Mi")),)),
        "Burstable",
        id="TQ/init-container",
    ),
    pytest.param(pod(ctr("a", None, res("2", "1Gi"))), "Guaranteed", id="DEF/limits-only-requests-default"),
    pytest.param(pod(ctr("a", res("1"), res("1", "1Gi"))), "Guaranteed", id="DEF/memory-request-defaulted"),
    # ComputePodQOS walks every init container, restartable or not: a sidecar without
    # limits makes an otherwise Guaranteed pod Burstable
    pytest.param(
        pod(ctr("a", G, G), init=(ctr("s", res("100m"), restart="Always"),)),
        "Burstable",
        id="sidecar-unlimited",
    ),
    pytest.param(
        pod(ctr("a", G, G), init=(ctr("s", G, G, restart="Always"),)), "Guaranteed", id="sidecar-limited"
    ),
    # only cpu and memory decide (supportedQoSComputeResources): devices alone are BestEffort
    pytest.param(
        pod(ctr("a", {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "1"})), "BestEffort", id="devices-only"
    ),
]


@pytest.mark.parametrize(("obj", "expected"), QOS_CASES)
def test_qos_class(obj: dict[str, Any], expected: str) -> None:
    model = parse_pod(obj)
    assert model.qos == QOSClass(expected)
    # the node's pod source answers from the same model, in cgroup spelling
    assert pod_qos(obj) == QOSClass(expected).cgroup
    assert scheduler_parse_pod(obj).qos == QOSClass(expected)


# ------------------------------------------------------------------- exclusive CPUs
# CMP: kubernetes.io "Control CPU Management Policies on the Node", static policy
#     examples: only a container of a Guaranteed pod with an integer CPU request gets
#     exclusive CPUs (limits-only counts, the request defaults to the limit); BestEffort,
#     Burstable and fractional Guaranteed containers share.
# REF: shared/reference/kubelet-cpumanager.md §5.4 guaranteedCPUs: whole number checked in
#     millis, "a 977m request gives 0" (kubelet's GuPodNonIntegerCore case).
EXCLUSIVE_CASES = [
    pytest.param(pod(ctr("a", res("2", "200Mi"), res("2", "200Mi"))), {"a": 2}, id="CMP/guaranteed-integer"),
    pytest.param(pod(ctr("a", None, res("2", "200Mi"))), {"a": 2}, id="CMP/guaranteed-limits-only"),
    pytest.param(
        pod(ctr("a", res("1.5", "200Mi"), res("1.5", "200Mi"))), {"a": 0}, id="CMP/guaranteed-fractional"
    ),
    pytest.param(pod(ctr("a", res("977m", "1G"), res("977m", "1G"))), {"a": 0}, id="REF/977m"),
    pytest.param(pod(ctr("a", res("2000m", "1G"), res("2000m", "1G"))), {"a": 2}, id="REF/2000m-is-whole"),
    pytest.param(pod(ctr("a", res("1", "100Mi"), res("2", "200Mi"))), {"a": 0}, id="CMP/burstable"),
    pytest.param(pod(ctr("a")), {"a": 0}, id="CMP/best-effort"),
    # a Guaranteed pod mixing integer and fractional containers: only the integer one pins
    pytest.param(
        pod(ctr("a", G, G), ctr("b", res("500m", "1Gi"), res("500m", "1Gi"))),
        {"a": 2, "b": 0},
        id="CMP/mixed",
    ),
    # one unlimited container makes the whole pod Burstable: nobody pins
    pytest.param(pod(ctr("a", G, G), ctr("b")), {"a": 0, "b": 0}, id="CMP/pod-burstable-nobody-pins"),
]


@pytest.mark.parametrize(("obj", "expected"), EXCLUSIVE_CASES)
def test_exclusive_cpus(obj: dict[str, Any], expected: dict[str, int]) -> None:
    model = parse_pod(obj)
    assert {c.name: model.exclusive_cpus(c) for c in model.all_containers()} == expected


# --------------------------------------------------------- init containers, sidecars
# KEP: KEP-753 (sidecar containers) "Resources calculation for scheduling and pod
#     admission", cited by kubelet's podGuaranteedCPUs, and kubernetes.io "Sidecar
#     Containers / Resource sharing within containers": the effective request is the
#     larger of (each init container + the sidecars started before it) and (app
#     containers + all sidecars); a plain init container's resources are reused.
# DOC: kubernetes.io "Init Containers / Resource sharing within containers": without
#     sidecars, max(largest init container, sum of app containers).
def g(cpu: str) -> dict[str, str]:
    return res(cpu, "1Gi")


INIT_CASES = [
    pytest.param(
        pod(ctr("a", g("2"), g("2")), init=(ctr("i", g("4"), g("4")),)),
        {"i": ("init", 4), "a": ("app", 2)},
        4,
        id="DOC/init-larger-than-app",
    ),
    pytest.param(
        pod(ctr("a", g("4"), g("4")), ctr("b", g("2"), g("2")), init=(ctr("i", g("3"), g("3")),)),
        {"i": ("init", 3), "a": ("app", 4), "b": ("app", 2)},
        6,
        id="DOC/apps-sum-larger-than-init",
    ),
    pytest.param(
        pod(
            ctr("a", g("2"), g("2")),
            init=(ctr("s", g("1"), g("1"), restart="Always"), ctr("i", g("4"), g("4"))),
        ),
        {"s": ("sidecar", 1), "i": ("init", 4), "a": ("app", 2)},
        5,
        id="KEP/sidecar-before-init-adds-to-its-peak",
    ),
    pytest.param(
        pod(
            ctr("a", g("2"), g("2")),
            init=(ctr("i", g("4"), g("4")), ctr("s", g("1"), g("1"), restart="Always")),
        ),
        {"i": ("init", 4), "s": ("sidecar", 1), "a": ("app", 2)},
        4,
        id="KEP/sidecar-after-init-not-in-its-peak",
    ),
    pytest.param(
        pod(
            ctr("a", g("2"), g("2")),
            init=(
                ctr("s1", g("2"), g("2"), restart="Always"),
                ctr("s2", g("2"), g("2"), restart="Always"),
                ctr("i", g("1"), g("1")),
            ),
        ),
        {"s1": ("sidecar", 2), "s2": ("sidecar", 2), "i": ("init", 1), "a": ("app", 2)},
        6,
        id="KEP/sidecars-run-beside-the-app",
    ),
    pytest.param(
        pod(ctr("a", g("2"), g("2")), init=(ctr("i", g("4"), g("4"), restart="Never"),)),
        {"i": ("init", 4), "a": ("app", 2)},
        4,
        id="KEP/only-Always-makes-a-sidecar",
    ),
]


@pytest.mark.parametrize(("obj", "kinds", "effective_cpus"), INIT_CASES)
def test_init_containers_and_sidecars(
    obj: dict[str, Any], kinds: dict[str, tuple[str, int]], effective_cpus: int
) -> None:
    model = parse_pod(obj)
    assert {c.name: (c.kind.value, model.exclusive_cpus(c)) for c in model.all_containers()} == kinds
    assert model.effective_request()[CPU] == effective_cpus * 1000
    assert model.pod_exclusive_cpus() == effective_cpus  # all whole CPUs in a Guaranteed pod
    # memory counts the same way: 1Gi per container
    per_container = {n: 1 for n in kinds}
    assert model.effective_request()["memory"] == GiB * _effective(obj, per_container)


def _effective(obj: dict[str, Any], amount: dict[str, int]) -> int:
    """The KEP-753 formula, written out independently for the memory check."""
    sidecars, peak = 0, 0
    for c in obj["spec"].get("initContainers", []):
        if c.get("restartPolicy") == "Always":
            sidecars += amount[c["name"]]
        else:
            peak = max(peak, sidecars + amount[c["name"]])
    return max(peak, sidecars + sum(amount[c["name"]] for c in obj["spec"]["containers"]))


# ------------------------------------------------------------ hugepages and devices
# HP: kubernetes.io "Manage HugePages": hugepages-<size> requests in bytes, per size; a
#     limit without a request defaults the request (hugepages must set limits, requests
#     may be left out); hugepages do not count for QoS.
# DP: kubernetes.io "Device Plugins": extended resources are requested as limits (a
#     request, if given, must equal the limit) and are counted, not shared.
def test_hugepages_per_size() -> None:
    limits = res("2", "1Gi", hugepages_2Mi="64Mi", hugepages_1Gi="2Gi")
    obj = pod(ctr("a", None, limits))
    model = parse_pod(obj)
    (c,) = model.containers
    assert model.qos is QOSClass.GUARANTEED
    assert dict(c.hugepages) == {"hugepages-2Mi": 64 * MiB, "hugepages-1Gi": 2 * GiB}
    assert model.effective_request()["hugepages-1Gi"] == 2 * GiB
    # the node path hands the manager the same integers, never a re-formatted string
    obj["status"] = {
        "containerStatuses": [{"name": "a", "containerID": "containerd://ab", "state": {"running": {}}}]
    }
    (info,) = pod_containers(obj)
    assert info.hugepages == {"hugepages-2Mi": 64 * MiB, "hugepages-1Gi": 2 * GiB}
    assert info.exclusive_cpus == 2


def test_hugepages_not_whole_pages_rejected_on_the_node() -> None:
    obj = pod(ctr("a", None, res("2", "1Gi", hugepages_1Gi="1536Mi")))
    obj["status"] = {
        "containerStatuses": [{"name": "a", "containerID": "containerd://ab", "state": {"running": {}}}]
    }
    with pytest.raises(HugePagesRequestError, match="whole number of 1Gi pages"):
        pod_containers(obj)


def test_devices() -> None:
    obj = pod(
        ctr("a", None, {**G, "nvidia.com/gpu": "2", "example.com/nic": "1"}),
        ctr("b", G, G),
    )
    model = parse_pod(obj)
    a, b = model.containers
    assert dict(a.devices) == {"nvidia.com/gpu": 2, "example.com/nic": 1}
    assert dict(b.devices) == {}
    assert model.qos is QOSClass.GUARANTEED and model.requests_non_native()
    assert model.effective_request()["nvidia.com/gpu"] == 2


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"spec": {}}, "spec.containers"),
        ({"spec": {"containers": [{"name": ""}]}}, "spec.containers[0].name"),
        (
            {"spec": {"containers": [ctr("a", {"cpu": "two"})]}},
            "spec.containers[0].resources.requests['cpu']",
        ),
        (
            {"spec": {"containers": [ctr("a")], "initContainers": [{"name": "i", "restartPolicy": 1}]}},
            "spec.initContainers[0].restartPolicy",
        ),
    ],
)
def test_malformed_pod_names_the_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPodError) as err:
        parse_pod(obj)
    assert err.value.field == field
    with pytest.raises(PodSpecError) as serr:  # the extender's 400
        scheduler_parse_pod(obj)
    assert serr.value.field == field


# ------------------------------------------- node path == simulator path (property)
TOPO = build_topology(NODE_TYPES["epyc-7763-nps4"])  # 4 NUMA nodes x 32 CPUs
CPU_CHOICES = ["500m", "1", "1500m", "2", "3", "4"]


STYLES = ("none", "guaranteed", "limits-only", "burstable", "cpu-only")


@st.composite
def resources(draw: st.DrawFn, styles: tuple[str, ...] = STYLES) -> dict[str, Any]:
    style = draw(st.sampled_from(styles))
    cpu = draw(st.sampled_from(CPU_CHOICES))
    memory = draw(st.sampled_from(["256Mi", "1Gi"]))
    pages = draw(st.sampled_from([{}, {"hugepages-2Mi": "64Mi"}]))
    if style == "none":
        return {}
    if style == "guaranteed":
        return {"requests": res(cpu, memory) | pages, "limits": res(cpu, memory) | pages}
    if style == "limits-only":
        return {"limits": res(cpu, memory) | pages}
    if style == "cpu-only":
        return {"requests": res(cpu), "limits": res(cpu)}
    return {"requests": res("500m", memory), "limits": res(cpu, "2Gi")}


@st.composite
def random_pods(draw: st.DrawFn) -> dict[str, Any]:
    # half the pods are Guaranteed by construction (every container limits cpu and memory,
    # requests equal or absent), so that exclusive CPUs, reuse and sidecars actually happen
    guaranteed = draw(st.booleans())
    styles = ("guaranteed", "limits-only") if guaranteed else STYLES
    n_init = draw(st.integers(0, 3))
    n_app = draw(st.integers(1, 3))

    def one(name: str) -> dict[str, Any]:
        return {"name": name, "resources": draw(resources(styles))}

    init = []
    for i in range(n_init):
        c = one(f"init{i}")
        if draw(st.booleans()):
            c["restartPolicy"] = "Always"
        init.append(c)
    apps = [one(f"app{i}") for i in range(n_app)]
    return {
        "metadata": {"name": "rnd", "namespace": "ns", "uid": "uid-rnd"},
        "spec": {"initContainers": init, "containers": apps},
    }


def _with_running(obj: dict[str, Any], running: list[str]) -> dict[str, Any]:
    ids = {
        c["name"]: f"containerd://{i:04x}"
        for i, c in enumerate(obj["spec"]["initContainers"] + obj["spec"]["containers"])
    }
    statuses = [{"name": n, "containerID": ids[n], "state": {"running": {}}} for n in running]
    return {**obj, "status": {"phase": "Running", "containerStatuses": statuses}}


def node_path(obj: dict[str, Any]) -> tuple[dict[str, tuple[int, ContainerKind]], dict[str, int]]:
    """Start the pod's containers in kubelet's order (init containers one at a time, each
    finishing before the next starts, sidecars staying up, then the app containers) and feed
    every status to the node's pod source logic and a real CPU manager. Returns what the
    pod source said per container, and the exclusive CPUs each container holds at the end."""
    manager = CPUManager(TOPO, StaticPolicy(CPUTopology.from_topology(TOPO), num_reserved_cpus=2))
    manager.start()
    seen: dict[str, tuple[int, ContainerKind]] = {}
    current: dict[str, ContainerInfo] = {}
    sidecars: list[str] = []
    steps: list[list[str]] = []
    for c in obj["spec"]["initContainers"]:
        if c.get("restartPolicy") == "Always":
            sidecars.append(c["name"])
            steps.append(list(sidecars))
        else:
            steps += [[*sidecars, c["name"]], list(sidecars)]
    steps.append(sidecars + [c["name"] for c in obj["spec"]["containers"]])
    for running in steps:
        infos = {i.container_name: i for i in pod_containers(_with_running(obj, running))}
        for name in [n for n in current if n not in infos]:  # as KubePodSource._apply_pod: stopped first
            manager.remove_container("uid-rnd", name)
        for name, info in infos.items():
            seen[name] = (info.exclusive_cpus, info.container_kind)
            if name not in current:
                manager.add_container(info)
        current = infos
    held = {name: len(cpus) for name, cpus in manager.state.assignments().get("uid-rnd", {}).items()}
    return seen, held


def simulator_path(obj: dict[str, Any]) -> tuple[dict[str, tuple[int, ContainerKind]], dict[str, int]]:
    """The simulator's kubelet admitting the same pod (parsed as the simulator's trace does)."""
    model = scheduler_parse_pod(obj)
    node = KubeletNode("w", TOPO)
    result = node.admit(model, "uid-rnd")
    assert result.admitted, result
    said = {c.name: (pinned_request(model, c).get(CPU, 0) // 1000, c.kind) for c in model.all_containers()}
    held = {name: len(cpus) for name, cpus in node.state.assignments().get("uid-rnd", {}).items()}
    return said, held


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_pods())
def test_node_and_simulator_agree(obj: dict[str, Any]) -> None:
    node_said, node_held = node_path(obj)
    sim_said, sim_held = simulator_path(obj)
    pinned_kinds = sorted({kind.value for n, kind in node_said.values() if n})
    event(f"containers with exclusive CPUs: {', '.join(pinned_kinds) or 'none'}")
    assert node_said == sim_said
    assert node_held == sim_held
    # and both match the model's own answer: app containers and sidecars keep their CPUs
    model = parse_pod(obj)
    kept = {
        c.name: model.exclusive_cpus(c) for c in model.all_containers() if c.kind is not ContainerKind.INIT
    }
    assert node_held == {n: k for n, k in kept.items() if k}


def test_reuse_and_sidecar_on_both_paths() -> None:
    """One fixed pod through both paths: the init container's CPUs are given back (and
    reusable), the sidecar keeps its CPU beside the app."""
    obj = pod(
        ctr("app0", g("2"), g("2")),
        init=(ctr("init0", g("4"), g("4")), ctr("init1", g("1"), g("1"), restart="Always")),
    )
    obj["metadata"]["uid"] = "uid-rnd"
    obj["spec"]["initContainers"] = list(obj["spec"]["initContainers"])
    node_said, node_held = node_path(obj)
    assert node_said == {
        "init0": (4, ContainerKind.INIT),
        "init1": (1, ContainerKind.SIDECAR),
        "app0": (2, ContainerKind.APP),
    }
    assert node_held == {"init1": 1, "app0": 2} == simulator_path(obj)[1]
