"""The second scheduler's manifests: KubeSchedulerConfiguration spelling and wiring.

kube-scheduler decodes its configuration strictly: an unknown or misspelled key is a
start-up error, and a value of the wrong type is one too. :data:`SCHEMA` is the key table
of ``kubescheduler.config.k8s.io/v1`` (``KubeSchedulerConfiguration``,
``KubeSchedulerProfile``, ``Extender`` and the component-base types they embed), taken from
the upstream Go types' JSON tags; the check walks the embedded config with it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

#: Go duration strings as metav1.Duration accepts them ("2s", "1m30s", "500ms").
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
#: A leaf is a Python type (or "duration"); a nested type is its name; lists are "[T]".
Field = type | str
SCHEMA: dict[str, dict[str, Field]] = {
    "KubeSchedulerConfiguration": {
        "apiVersion": str,
        "kind": str,
        "parallelism": int,
        "leaderElection": "LeaderElectionConfiguration",
        "clientConnection": "ClientConnectionConfiguration",
        "enableProfiling": bool,  # DebuggingConfiguration, embedded inline
        "enableContentionProfiling": bool,
        "percentageOfNodesToScore": int,
        "podInitialBackoffSeconds": int,
        "podMaxBackoffSeconds": int,
        "profiles": "[KubeSchedulerProfile]",
        "extenders": "[Extender]",
        "delayCacheUntilActive": bool,
    },
    "LeaderElectionConfiguration": {
        "leaderElect": bool,
        "leaseDuration": "duration",
        "renewDeadline": "duration",
        "retryPeriod": "duration",
        "resourceLock": str,
        "resourceName": str,
        "resourceNamespace": str,
    },
    "ClientConnectionConfiguration": {
        "kubeconfig": str,
        "acceptContentTypes": str,
        "contentType": str,
        "qps": float,
        "burst": int,
    },
    "KubeSchedulerProfile": {
        "schedulerName": str,
        "percentageOfNodesToScore": int,
        "plugins": dict,  # per-extension-point PluginSets; not used here
        "pluginConfig": list,  # plugin args are decoded by each plugin
    },
    "Extender": {
        "urlPrefix": str,
        "filterVerb": str,
        "preemptVerb": str,
        "prioritizeVerb": str,
        "weight": int,
        "bindVerb": str,
        "enableHTTPS": bool,
        "tlsConfig": "ExtenderTLSConfig",
        "httpTimeout": "duration",
        "nodeCacheCapable": bool,
        "managedResources": "[ExtenderManagedResource]",
        "ignorable": bool,
    },
    "ExtenderManagedResource": {"name": str, "ignoredByScheduler": bool},
    "ExtenderTLSConfig": {
        "insecure": bool,
        "serverName": str,
        "certFile": str,
        "keyFile": str,
        "caFile": str,
        "certData": str,
        "keyData": str,
        "caData": str,
    },
}


def decode_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    """What kube-scheduler's strict decoder would refuse in *value* of type *type_name*."""
    if not isinstance(value, dict):
        return [f"{path or '.'}: expected an object"]
    errors = []
    for key, item in value.items():
        where = f"{path}.{key}"
        field = SCHEMA[type_name].get(key)
        if field is None:
            errors.append(f'{where}: unknown field "{key}"')
        else:
            errors += _field_errors(item, field, where)
    return errors


def _field_errors(item: Any, field: Field, where: str) -> list[str]:
    if isinstance(field, type):
        ok = isinstance(item, field) and not (field is int and isinstance(item, bool))
        return (
            []
            if ok or (field is float and isinstance(item, int))
            else [f"{where}: expected {field.__name__}"]
        )
    if field == "duration":
        return (
            []
            if isinstance(item, str) and DURATION.match(item)
            else [f"{where}: expected a duration like 2s"]
        )
    if field.startswith("["):
        if not isinstance(item, list):
            return [f"{where}: expected a list"]
        return [e for i, x in enumerate(item) for e in decode_errors(x, field[1:-1], f"{where}[{i}]")]
    return decode_errors(item, field, where)


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


def test_scheduler_configuration_decodes_strictly() -> None:
    assert decode_errors(scheduler_config(), "KubeSchedulerConfiguration") == []


def _mutated(path: str, change: Any) -> dict[str, Any]:
    config = copy.deepcopy(scheduler_config())
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if callable(change):
        node[change(last)] = node.pop(last)
    else:
        node[last] = change
    return config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            _mutated("extenders.0.urlPrefix", str.lower), 'unknown field "urlprefix"', id="lowercase-key"
        ),
        pytest.param(
            _mutated("extenders.0.enableHTTPS", lambda k: "enableHttps"),
            'unknown field "enableHttps"',
            id="legacy-policy-spelling",
        ),
        pytest.param(
            _mutated("profiles.0.schedulerName", lambda k: "scheduler_name"),
            'unknown field "scheduler_name"',
            id="snake-case-key",
        ),
        pytest.param(
            _mutated("extenders", lambda k: "extender"), 'unknown field "extender"', id="singular-list"
        ),
        pytest.param(
            _mutated("leaderElection.resourceName", lambda k: "name"),
            'unknown field "name"',
            id="leader-election-key",
        ),
        pytest.param(_mutated("extenders.0.httpTimeout", 2), "expected a duration", id="timeout-as-number"),
        pytest.param(_mutated("extenders.0.weight", "10"), "expected int", id="weight-as-string"),
        pytest.param(_mutated("extenders.0.nodeCacheCapable", "true"), "expected bool", id="bool-as-string"),
    ],
)
def test_strict_decoder_rejects(config: dict[str, Any], expected: str) -> None:
    errors = decode_errors(config, "KubeSchedulerConfiguration")
    assert any(expected in e for e in errors), errors


def test_scheduler_configuration_has_one_profile_and_our_extender() -> None:
    config = scheduler_config()
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert [p["schedulerName"] for p in config["profiles"]] == ["topolet-scheduler"]
    (ext,) = config["extenders"]
    assert (
        ext["filterVerb"] == "filter" and ext["prioritizeVerb"] == "prioritize" and ext["bindVerb"] == "bind"
    )
    assert ext["preemptVerb"] == "preempt"
    assert ext["nodeCacheCapable"] is True and ext["enableHTTPS"] is False and ext["weight"] > 0
    assert ext["ignorable"] is False
    # Every pod of this instance goes to the extender (CPU-only Guaranteed pods included).
    assert "managedResources" not in ext


def test_scheduler_has_its_own_lease() -> None:
    election = scheduler_config()["leaderElection"]
    assert election["resourceName"] == "topolet-scheduler", "not kube-scheduler's own lease"
    assert election["resourceNamespace"] == "topolet-system"


def test_url_prefix_matches_the_extender_service_and_path() -> None:
    url = scheduler_config()["extenders"][0]["urlPrefix"]
    service = next(d for d in docs("scheduler/extender.yaml") if d["kind"] == "Service")
    (port,) = service["spec"]["ports"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.startswith(f"http://{host}:{port['port']}/")
    assert f"--path-prefix={url.rsplit(':8888', 1)[1]}" in extender_args()
    assert f"--listen=0.0.0.0:{port['port']}" in extender_args()


def test_extender_args_parse_with_the_cli() -> None:
    from topolet.cli import build_parser

    args = build_parser().parse_args(extender_args())
    assert args.path_prefix == "/topolet" and args.nrt_dir is None


def test_scheduler_uses_the_official_image_and_mounts_its_config() -> None:
    (deployment,) = docs("scheduler/scheduler.yaml")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("registry.k8s.io/kube-scheduler:v")
    (config_flag,) = [a for a in container["command"] if a.startswith("--config=")]
    (mount,) = container["volumeMounts"]
    (volume,) = spec["volumes"]
    assert volume["configMap"]["name"] == "topolet-scheduler-config" and mount["name"] == volume["name"]
    assert config_flag == f"--config={mount['mountPath']}/scheduler-config.yaml"


def test_crd_is_cluster_scoped_v1alpha2() -> None:
    (crd,) = docs("crd/noderesourcetopologies.yaml")
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "noderesourcetopologies.topology.node.k8s.io"
    assert spec["scope"] == "Cluster" and spec["names"]["shortNames"] == ["node-res-topo"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha2" and version["storage"] is True
    resource = version["schema"]["openAPIV3Schema"]["properties"]["zones"]["items"]["properties"]["resources"]
    assert resource["items"]["required"] == ["name", "capacity", "allocatable", "available"]


def test_docs_describe_the_shipped_extender_config() -> None:
    """docs/scheduler.md names every verb the shipped config sets, and says what it says
    about managedResources."""
    (ext,) = scheduler_config()["extenders"]
    docs = (DEPLOY.parent / "docs" / "scheduler.md").read_text()
    for key in ("filterVerb", "prioritizeVerb", "preemptVerb", "bindVerb"):
        assert f"`{key}: {ext[key]}`" in docs, key
    assert "managedResources" not in ext and "**no `managedResources`**" in docs
