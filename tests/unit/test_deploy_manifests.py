"""The deployment bundle in ``deploy/``: what ``kubectl apply -k deploy/`` would install.

There is no kubectl here, so the kustomization is loaded the way kustomize reads it:
every ``resources:`` entry must exist, every manifest under ``deploy/`` must be listed
(examples excepted) and ``configMapGenerator`` files must exist. Then every object is
validated against the Kubernetes OpenAPI schema in strict mode (unknown fields fail),
the example NRT object against our CRD's own schema, the KubeSchedulerConfiguration
against kube-scheduler's strict decoder's keys, and the node agent's DaemonSet against
the host paths and configuration the code itself declares. Each check has a negative
case on a mutated copy, so none of them can pass vacuously.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGE = "ghcr.io/topolet/topolet:0.1.0"
Doc = dict[str, Any]


# ------------------------------------------------------------------ loading
def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization() -> Doc:
    doc: Doc = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return doc


def generated_configmaps() -> list[Doc]:
    """The ConfigMaps kustomize's configMapGenerator makes (before the hash suffix)."""
    out = []
    for gen in kustomization().get("configMapGenerator", []):
        data = {}
        for entry in gen["files"]:
            key, _, rel = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
            data[key] = (DEPLOY / rel).read_text()
        meta = {"name": gen["name"], "namespace": gen["namespace"]}
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    return out


def installed() -> list[Doc]:
    """Every object ``kubectl apply -k deploy/`` creates."""
    docs = [d for rel in kustomization()["resources"] for d in load_docs(DEPLOY / rel)]
    return docs + generated_configmaps()


def examples() -> list[Doc]:
    return [d for p in sorted((DEPLOY / "examples").glob("*.yaml")) for d in load_docs(p)]


def find(kind: str, name: str) -> Doc:
    (doc,) = [d for d in installed() + examples() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def generator_files() -> set[Path]:
    files = set()
    for gen in kustomization().get("configMapGenerator", []):
        files |= {DEPLOY / entry.rpartition("=")[2] for entry in gen["files"]}
    return files


# --------------------------------------------------------------- kustomize
def test_every_resource_entry_exists_once() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    missing = [r for r in resources if not (DEPLOY / r).is_file()]
    assert not missing, f"kustomization.yaml lists files that do not exist: {missing}"


def test_every_manifest_in_deploy_is_installed() -> None:
    listed = {DEPLOY / r for r in kustomization()["resources"]} | generator_files()
    manifests = {p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml"}
    unlisted = sorted(str(p.relative_to(DEPLOY)) for p in manifests - listed if "examples" not in p.parts)
    assert not unlisted, f"manifests that `kubectl apply -k deploy/` would skip: {unlisted}"
    assert {p for p in listed if "examples" in p.parts} == set(), "examples are applied by hand"


def test_generator_files_exist_and_names_are_unique() -> None:
    assert all(p.is_file() for p in generator_files()), sorted(map(str, generator_files()))
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in installed()]
    assert len(names) == len(set(names)), "two objects share kind, namespace and name"


def test_namespaced_objects_name_their_namespace() -> None:
    """No namespace transformer runs, so every namespaced object says where it goes."""
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    cluster_scoped |= {"DeviceClass", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for doc in installed():
        ns = doc["metadata"].get("namespace")
        if doc["kind"] in cluster_scoped:
            assert ns is None, f"{doc['kind']}/{doc['metadata']['name']} is cluster-scoped"
        elif doc["metadata"]["name"].endswith("extension-apiserver-authentication-reader"):
            assert ns == "kube-system"
        else:
            assert ns == "topolet-system", f"{doc['kind']}/{doc['metadata']['name']} in {ns}"


# ------------------------------------------------------- OpenAPI (strict)
def scheduler_version() -> str:
    """The Kubernetes version the bundle targets: the second scheduler's image tag."""
    image = find("Deployment", "topolet-scheduler")["spec"]["template"]["spec"]["containers"][0]["image"]
    return str(image.rpartition(":v")[2])


def k8s_versions() -> list[str]:
    return sorted({scheduler_version(), kubernetes_validate.latest_version()})


def builtin_objects() -> list[Doc]:
    """Objects of built-in kinds (the CRD's own custom objects are checked against the CRD)."""
    return [d for d in installed() + examples() if not d["apiVersion"].startswith("topology.node.k8s.io/")]


def validate_builtin(doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", k8s_versions())
@pytest.mark.parametrize("doc", builtin_objects(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_validates_against_kubernetes_openapi(doc: Doc, version: str) -> None:
    validate_builtin(doc, version)


def rename_key(doc: Doc, path: str, new: str) -> Doc:
    """A copy of *doc* whose key at dotted *path* (list indexes allowed) is renamed *new*."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[new] = node.pop(last)
    return out


MISSPELLED = [
    pytest.param(
        "DaemonSet", "topolet-node", "spec.template.spec.volumes.1.hostPath", "hostpath", id="ds-hostpath"
    ),
    pytest.param(
        "DaemonSet",
        "topolet-node",
        "spec.template.spec.containers.0.volumeMounts",
        "volumeMount",
        id="ds-volumeMount",
    ),
    pytest.param(
        "Pod", "numa-aligned-example", "spec.schedulerName", "schedulername", id="pod-schedulername"
    ),
    pytest.param("ClusterRole", "topolet-node", "rules.0.verbs", "verb", id="clusterrole-verb"),
    pytest.param(
        "Deployment",
        "topolet-scheduler",
        "spec.template.spec.serviceAccountName",
        "serviceAccount_name",
        id="scheduler-serviceAccount_name",
    ),
]


@pytest.mark.parametrize(("kind", "name", "path", "typo"), MISSPELLED)
def test_misspelled_field_is_rejected(kind: str, name: str, path: str, typo: str) -> None:
    bad = rename_key(find(kind, name), path, typo)
    with pytest.raises(kubernetes_validate.ValidationError, match=typo):
        validate_builtin(bad, scheduler_version())


# ------------------------------------------------------------ NRT vs CRD
def structural_to_jsonschema(schema: Any) -> Any:
    """Our CRD's openAPIV3Schema as a JSON Schema that rejects unknown fields.

    The API server prunes unknown fields of a structural schema, and kubectl's default
    strict field validation turns that into an error; ``additionalProperties: false`` on
    every object with ``properties`` (and no ``x-kubernetes-preserve-unknown-fields``) says
    the same. ``x-kubernetes-*`` keys are dropped: ``int-or-string`` is already spelled
    out as ``anyOf`` integer/string in the CRD.
    """
    if isinstance(schema, list):
        return [structural_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: structural_to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def nrt_validator() -> jsonschema.Draft4Validator:
    crd = find("CustomResourceDefinition", "noderesourcetopologies.topology.node.k8s.io")
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def example_nrt() -> Doc:
    (doc,) = [d for d in examples() if d["kind"] == "NodeResourceTopology"]
    return doc


def test_example_nrt_validates_against_our_crd() -> None:
    nrt = example_nrt()
    crd = find("CustomResourceDefinition", "noderesourcetopologies.topology.node.k8s.io")
    assert nrt["apiVersion"] == f"{crd['spec']['group']}/v1alpha2"
    assert nrt["kind"] == crd["spec"]["names"]["kind"]
    errors = [e.message for e in nrt_validator().iter_errors(nrt)]
    assert not errors, errors


def test_example_nrt_is_what_the_scheduler_reads() -> None:
    from topology.nrt import NodeResourceTopology

    nrt = NodeResourceTopology.from_dict(example_nrt())
    assert nrt.topology_manager().policy == "single-numa-node"
    assert [c.numa_id for c in nrt.numa_cells()] == [0, 1]


def _set(doc: Doc, path: str, value: Any) -> Doc:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(rename_key(example_nrt(), "zones.0.resources", "resource"), id="zone-field-misspelled"),
        pytest.param(rename_key(example_nrt(), "attributes", "attribute"), id="top-field-misspelled"),
        pytest.param(
            _set(example_nrt(), "zones.0.resources.0.capacity", "lots"), id="quantity-not-a-quantity"
        ),
        pytest.param(_set(example_nrt(), "zones.1.resources.0.available", None), id="available-missing"),
        pytest.param(_set(example_nrt(), "zones.0.costs.0.value", "10"), id="cost-not-an-integer"),
        pytest.param(_set(example_nrt(), "zones", None), id="zones-missing"),
    ],
)
def test_broken_nrt_is_rejected_by_our_crd(bad: Doc) -> None:
    assert list(nrt_validator().iter_errors(bad))


# ------------------------------------------------------- node agent wiring
NODE_CONFIG = DEPLOY / "node" / "config.yaml"


def node_pod_spec(ds: Doc | None = None) -> Doc:
    spec: Doc = (ds or find("DaemonSet", "topolet-node"))["spec"]["template"]["spec"]
    return spec


def host_mounts(spec: Doc) -> dict[Path, Path]:
    """Host path → where the agent's container sees it, for every hostPath volume mounted."""
    host = {v["name"]: Path(v["hostPath"]["path"]) for v in spec["volumes"] if "hostPath" in v}
    (container,) = spec["containers"]
    return {host[m["name"]]: Path(m["mountPath"]) for m in container["volumeMounts"] if m["name"] in host}


def unmounted(required: tuple[Path, ...], spec: Doc) -> list[str]:
    """Required host paths with no hostPath mount of themselves or a parent, at the same path."""
    mounts = {h for h, inside in host_mounts(spec).items() if h == inside}
    return [str(p) for p in required if not any(m == p or m in p.parents for m in mounts)]


def test_node_config_in_the_bundle_loads() -> None:
    from topolet.node_config import NodeConfig

    NodeConfig.load(NODE_CONFIG)


def test_daemonset_mounts_every_host_path_the_agent_uses() -> None:
    from topolet.node_config import NodeConfig

    for config in (NodeConfig(), NodeConfig.load(NODE_CONFIG)):
        required = config.host_paths()
        assert required, "NodeConfig.host_paths() names no path"
        missing = unmounted(required, node_pod_spec())
        assert not missing, f"host paths the agent uses but the DaemonSet does not mount: {missing}"


def test_a_missing_mount_is_noticed() -> None:
    from topolet.node_config import NodeConfig

    required = NodeConfig().host_paths()
    spec = copy.deepcopy(node_pod_spec())
    drop = {v["name"] for v in spec["volumes"] if v.get("hostPath", {}).get("path") == "/var/lib/topolet"}
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in drop]
    assert any(p.is_relative_to("/var/lib/topolet") for p in required)
    assert unmounted(required, spec)


@pytest.mark.parametrize(
    ("host", "required", "ok"),
    [
        pytest.param("/sys", "/sys/devices/system/cpu", True, id="parent-mount-covers"),
        pytest.param("/sys/fs/cgroup", "/sys/fs/cgroup", True, id="exact-mount"),
        pytest.param("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", False, id="child-does-not-cover"),
        pytest.param("/var/lib/top", "/var/lib/topolet", False, id="prefix-is-not-a-parent"),
    ],
)
def test_mount_coverage_rule(host: str, required: str, ok: bool) -> None:
    spec = {
        "volumes": [{"name": "v", "hostPath": {"path": host}}],
        "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": host}]}],
    }
    assert (unmounted((Path(required),), spec) == []) is ok


def test_daemonset_reads_the_generated_config_where_args_say() -> None:
    spec = node_pod_spec()
    (container,) = spec["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == ["node", "--config", "/etc/topolet/config.yaml"]
    (config_volume,) = [v for v in spec["volumes"] if "configMap" in v]
    (cm,) = generated_configmaps()
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == config_volume["name"]]
    assert Path(mount["mountPath"]) / "config.yaml" == Path(container["args"][2])
    assert "config.yaml" in cm["data"]


def test_daemonset_args_parse_with_the_cli() -> None:
    from topolet.cli import build_parser

    (container,) = node_pod_spec()["containers"]
    try:
        args = build_parser().parse_args(container["args"])
    except SystemExit:
        pytest.fail(
            f"`topolet {' '.join(container['args'])}` does not parse: is topolet.cmd_node in "
            "topolet.cli.COMMAND_MODULES?"
        )
    assert Path(args.config) == Path("/etc/topolet/config.yaml")


def test_probes_and_port_follow_the_configured_metrics_address() -> None:
    address = yaml.safe_load(NODE_CONFIG.read_text())["metricsBindAddress"]
    port = int(address.rpartition(":")[2])
    (container,) = node_pod_spec()["containers"]
    (metrics,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_daemonset_runs_everywhere_as_node_critical() -> None:
    spec = node_pod_spec()
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"], "must tolerate every taint (GPU nodes)"
    assert spec.get("hostPID") is not True
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_only_the_node_agent_is_privileged() -> None:
    privileged = [
        d["metadata"]["name"]
        for d in installed()
        if d["kind"] in {"DaemonSet", "Deployment"}
        for c in d["spec"]["template"]["spec"]["containers"]
        if c.get("securityContext", {}).get("privileged")
    ]
    assert privileged == ["topolet-node"]


def test_one_image_placeholder_everywhere() -> None:
    images = {
        c["image"]
        for d in installed()
        if d["kind"] in {"DaemonSet", "Deployment"}
        for c in d["spec"]["template"]["spec"]["containers"]
        if not c["image"].startswith("registry.k8s.io/")
    }
    assert images == {IMAGE}
    assert f"ghcr.io/topolet/topolet:{_project_version()}" == IMAGE


def _project_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert match, "pyproject.toml has no version"
    return match.group(1)


# ------------------------------------------------------------------- RBAC
def rules(kind: str, name: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in find(kind, name)["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        pytest.param(
            "topolet-node",
            {
                ("", "pods"): {"get", "list", "watch"},
                ("topology.node.k8s.io", "noderesourcetopologies"): {"create", "get", "update", "patch"},
                ("", "nodes"): {"get"},
            },
            id="node-agent",
        ),
        pytest.param(
            "topolet-extender",
            {
                ("topology.node.k8s.io", "noderesourcetopologies"): {"get", "list", "watch"},
                ("", "pods"): {"list", "watch"},
                ("", "pods/binding"): {"create"},
                ("resource.k8s.io", "resourceclaims"): {"get", "list", "watch"},
                ("resource.k8s.io", "resourceslices"): {"list", "watch"},
            },
            id="extender",
        ),
    ],
)
def test_cluster_roles_are_least_privilege(role: str, expected: dict[tuple[str, str], set[str]]) -> None:
    assert rules("ClusterRole", role) == expected


def bindings_of(account: str) -> Iterator[tuple[str, str, str | None]]:
    for doc in installed():
        if doc["kind"] in {"RoleBinding", "ClusterRoleBinding"}:
            for subject in doc["subjects"]:
                if subject["kind"] == "ServiceAccount" and subject["name"] == account:
                    assert subject["namespace"] == "topolet-system"
                    yield doc["kind"], doc["roleRef"]["name"], doc["metadata"].get("namespace")


def test_second_scheduler_gets_what_kube_scheduler_needs() -> None:
    assert set(bindings_of("topolet-scheduler")) == {
        ("ClusterRoleBinding", "system:kube-scheduler", None),
        ("ClusterRoleBinding", "system:volume-scheduler", None),
        ("RoleBinding", "extension-apiserver-authentication-reader", "kube-system"),
        ("RoleBinding", "topolet-scheduler-leader-election", "topolet-system"),
    }
    assert rules("Role", "topolet-scheduler-leader-election") == {
        ("coordination.k8s.io", "leases"): {"create", "get", "update"}
    }


def test_each_workload_runs_as_its_own_account() -> None:
    accounts = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["serviceAccountName"]
        for d in installed()
        if d["kind"] in {"DaemonSet", "Deployment"}
    }
    assert accounts == {n: n for n in ("topolet-node", "topolet-extender", "topolet-scheduler")}
    declared = {d["metadata"]["name"] for d in installed() if d["kind"] == "ServiceAccount"}
    assert declared == set(accounts.values())


# --------------------------------------------------------------- example pod
def test_example_pod_is_guaranteed_and_aligned() -> None:
    pod = find("Pod", "numa-aligned-example")
    assert pod["spec"]["schedulerName"] == "topolet-scheduler"
    (container,) = pod["spec"]["containers"]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests == limits, "Guaranteed QoS: requests == limits"
    assert requests["cpu"] == "4" and requests["nvidia.com/gpu"] == 1 and requests["hugepages-2Mi"] == "1Gi"
    assert "memory" in requests
    (volume,) = pod["spec"]["volumes"]
    assert volume["emptyDir"] == {"medium": "HugePages-2Mi"}
    assert [m["name"] for m in container["volumeMounts"]] == [volume["name"]]


# ------------------------------------------------------------------ image
def test_dockerfile_builds_every_package_the_wheel_needs() -> None:
    text = (REPO / "pyproject.toml").read_text()
    include = re.search(r"^include = \[(.*)\]$", text, re.MULTILINE)
    assert include, "pyproject.toml: [tool.setuptools.packages.find] include"
    packages = {p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")}
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./\1$", dockerfile, re.MULTILINE))
    assert packages <= copied, f"packages not copied into the build stage: {sorted(packages - copied)}"
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert not (packages | {"pyproject.toml", "README.md"}) & ignored
    assert 'ENTRYPOINT ["topolet"]' in dockerfile
