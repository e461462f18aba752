"""The deploy manifests for the second scheduler: key spelling and wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: Keys of the v1 ``Extender`` type; the config decoder is strict, so nothing else may appear.
EXTENDER_KEYS = {
    "urlPrefix",
    "filterVerb",
    "preemptVerb",
    "prioritizeVerb",
    "weight",
    "bindVerb",
    "enableHTTPS",
    "tlsConfig",
    "httpTimeout",
    "nodeCacheCapable",
    "managedResources",
    "ignorable",
}


def docs(relative: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / relative).read_text()) if d]


def scheduler_config() -> dict[str, Any]:
    (cm,) = docs("scheduler/scheduler-config.yaml")
    config: dict[str, Any] = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
    return config


def extender_args() -> list[str]:
    deployment = next(d for d in docs("scheduler/extender.yaml") if d["kind"] == "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_scheduler_configuration_has_one_profile_and_our_extender() -> None:
    config = scheduler_config()
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert [p["schedulerName"] for p in config["profiles"]] == ["topolet-scheduler"]
    (ext,) = config["extenders"]
    assert set(ext) <= EXTENDER_KEYS
    assert (
        ext["filterVerb"] == "filter" and ext["prioritizeVerb"] == "prioritize" and ext["bindVerb"] == "bind"
    )
    assert ext["nodeCacheCapable"] is True and ext["enableHTTPS"] is False and ext["weight"] > 0
    assert isinstance(ext["httpTimeout"], str) and ext["httpTimeout"].endswith("s")
    assert {m["name"] for m in ext["managedResources"]} == {"nvidia.com/gpu", "topolet.io/exclusive-cpus"}
    assert all(m["ignoredByScheduler"] is False for m in ext["managedResources"])
    assert config["leaderElection"]["resourceName"] != "kube-scheduler"


def test_url_prefix_matches_the_extender_service_and_path() -> None:
    url = scheduler_config()["extenders"][0]["urlPrefix"]
    assert url.startswith("http://topolet-extender.kube-system.svc:8888/")
    assert f"--path-prefix={url.rsplit(':8888', 1)[1]}" in extender_args()


def test_scheduler_uses_the_official_image() -> None:
    (deployment,) = docs("scheduler/scheduler.yaml")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.k8s.io/kube-scheduler:")


@pytest.mark.parametrize(
    ("group", "resource", "verbs"),
    [
        pytest.param(
            "topology.node.k8s.io", "noderesourcetopologies", {"get", "list", "watch"}, id="nrt-read"
        ),
        pytest.param("", "pods", {"get", "list", "watch"}, id="pods-read"),
        pytest.param("", "pods/binding", {"create"}, id="binding-create"),
    ],
)
def test_extender_rbac_is_least_privilege(group: str, resource: str, verbs: set[str]) -> None:
    role = next(d for d in docs("scheduler/rbac.yaml") if d["kind"] == "ClusterRole")
    rules = [r for r in role["rules"] if resource in r["resources"]]
    assert len(rules) == 1 and rules[0]["apiGroups"] == [group] and set(rules[0]["verbs"]) == verbs
    assert sum(len(r["resources"]) for r in role["rules"]) == 3


def test_crd_is_cluster_scoped_v1alpha2() -> None:
    (crd,) = docs("crd/noderesourcetopologies.yaml")
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "noderesourcetopologies.topology.node.k8s.io"
    assert spec["scope"] == "Cluster" and spec["names"]["shortNames"] == ["node-res-topo"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha2" and version["storage"] is True
    resource = version["schema"]["openAPIV3Schema"]["properties"]["zones"]["items"]["properties"]["resources"]
    assert resource["items"]["required"] == ["name", "capacity", "allocatable", "available"]
