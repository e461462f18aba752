"""Pods from the Kubernetes API as the CPU manager sees them: QoS, exclusive CPUs, ids, cgroups."""

from __future__ import annotations

from typing import Any

import pytest

from cpumanager.cgroup_errors import InvalidIdentifierError
from cpumanager.kube_source import pod_containers, pod_qos


def container(
    name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = requests
    if limits is not None:
        res["limits"] = limits
    return {"name": name, "resources": res}


def pod(
    *containers: dict[str, Any],
    init: tuple[dict[str, Any], ...] = (),
    running: tuple[str, ...] = (),
    cid: str = "containerd://abc",
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
) -> dict[str, Any]:
    statuses = [
        {"name": n, "containerID": cid if i == 0 else f"{cid}{i}", "state": {"running": {}}}
        for i, n in enumerate(running)
    ]
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "1234-abcd", "annotations": annotations or {}},
        "spec": {"nodeName": "n", "containers": list(containers), "initContainers": list(init)},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


G2 = {"cpu": "2", "memory": "1Gi"}


@pytest.mark.parametrize(
    ("obj", "qos"),
    [
        pytest.param(pod(container("a", G2, G2)), "guaranteed", id="requests-equal-limits"),
        pytest.param(pod(container("a", None, G2)), "guaranteed", id="limits-only-default-requests"),
        pytest.param(
            pod(container("a", {"cpu": "1", "memory": "1Gi"}, G2)), "burstable", id="request-below-limit"
        ),
        pytest.param(pod(container("a", {"cpu": "2"}, {"cpu": "2"})), "burstable", id="no-memory-limit"),
        pytest.param(pod(container("a", G2, G2), container("b")), "burstable", id="one-container-unlimited"),
        pytest.param(
            pod(container("a", G2, G2), init=(container("i", {"cpu": "1"}),)),
            "burstable",
            id="init-container-counts",
        ),
        pytest.param(
            pod(container("a"), container("b", {"nvidia.com/gpu": "1"})), "besteffort", id="nothing"
        ),
    ],
)
def test_pod_qos(obj: dict[str, Any], qos: str) -> None:
    assert pod_qos(obj) == qos


@pytest.mark.parametrize(
    ("obj", "expect"),
    [
        pytest.param(
            pod(container("a", G2, G2), running=("a",)), [("a", 2, "guaranteed")], id="guaranteed-2"
        ),
        pytest.param(
            pod(
                container("a", {"cpu": "1500m", "memory": "1Gi"}, {"cpu": "1500m", "memory": "1Gi"}),
                running=("a",),
            ),
            [("a", 0, "guaranteed")],
            id="fractional-shared",
        ),
        pytest.param(
            pod(container("a", {"cpu": "2"}, {"cpu": "4"}), running=("a",)),
            [("a", 0, "burstable")],
            id="burstable-shared",
        ),
        pytest.param(pod(container("a", G2, G2)), [], id="not-started-yet"),
        pytest.param(
            pod(container("a", G2, G2), container("b", G2, G2), running=("b",)),
            [("b", 2, "guaranteed")],
            id="only-running-ones",
        ),
        pytest.param(pod(container("a", G2, G2), running=("a",), phase="Succeeded"), [], id="finished-pod"),
    ],
)
def test_pod_containers(obj: dict[str, Any], expect: list[tuple[str, int, str]]) -> None:
    got = pod_containers(obj)
    assert [(i.container_name, i.exclusive_cpus, i.cgroup.qos if i.cgroup else "") for i in got] == expect


@pytest.mark.parametrize(
    ("cid", "runtime", "scope"),
    [
        ("containerd://abc", "cri-containerd", "cri-containerd-abc.scope"),
        ("cri-o://abc", "crio", "crio-abc.scope"),
        ("docker://abc", "docker", "docker-abc.scope"),
    ],
)
def test_container_id_and_systemd_scope(cid: str, runtime: str, scope: str) -> None:
    (info,) = pod_containers(pod(container("a", G2, G2), running=("a",), cid=cid))
    assert info.cgroup is not None
    assert (info.cgroup.container_id, info.cgroup.runtime) == ("abc", runtime)
    assert info.cgroup.relative_path("systemd").name == scope
    assert str(info.cgroup.relative_path("cgroupfs")) == "kubepods/pod1234-abcd/abc"


def test_isolated_annotation_and_hugepages() -> None:
    res = {**G2, "hugepages-2Mi": "64Mi"}
    obj = pod(container("a", res, res), running=("a",), annotations={"topolet.io/isolated-cpus": "true"})
    (info,) = pod_containers(obj)
    assert info.isolated and info.exclusive_cpus == 2
    assert info.hugepages == {"hugepages-2Mi": 64 * 2**20}


@pytest.mark.parametrize("cid", ["containerd://../../etc", "containerd:///abs", "containerd://a\x00b"])
def test_unsafe_container_id_rejected(cid: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        pod_containers(pod(container("a", G2, G2), running=("a",), cid=cid))
