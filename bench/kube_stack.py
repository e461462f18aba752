"""topolet's shipped scheduler deployment, run against a loopback control plane.

:func:`shipped_scheduler_config` reads ``deploy/scheduler/scheduler-config.yaml`` (the
ConfigMap's KubeSchedulerConfiguration) and changes only addresses and paths: the
extender's ``urlPrefix`` host and port (its path is kept) and the kubeconfig.
:func:`shipped_extender_args` reads the extender's arguments from
``deploy/scheduler/extender.yaml`` and changes only ``--listen``. The rest are plain API
helpers: apply manifests, make Node objects without a kubelet, make Guaranteed pods.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError

__all__ = [
    "DEFAULT_DEPLOY",
    "StackError",
    "apply_manifest",
    "default_scheduler_config",
    "extender_post",
    "extender_prefix",
    "filter_probe",
    "wait_extender_synced",
    "fake_node",
    "guaranteed_pod",
    "shipped_extender_args",
    "shipped_scheduler_config",
    "wait_crd",
]

#: ``deploy/`` of this checkout.
DEFAULT_DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


class StackError(BenchError):
    """A manifest is missing or not what this module expects; one line."""


def _documents(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as err:
        raise StackError(f"{path}: {err}") from None
    return [d for d in docs if isinstance(d, dict)]


def shipped_scheduler_config(deploy: Path, extender: str, kubeconfig: Path) -> dict[str, Any]:
    """The shipped KubeSchedulerConfiguration with the extender at *extender* (``HOST:PORT``)
    and the API server reached through *kubeconfig*; nothing else changes."""
    path = deploy / "scheduler" / "scheduler-config.yaml"
    for doc in _documents(path):
        if doc.get("kind") == "ConfigMap":
            config: dict[str, Any] = yaml.safe_load(doc["data"]["scheduler-config.yaml"])
            break
    else:
        raise StackError(f"{path}: no ConfigMap with data.scheduler-config.yaml")
    for ext in config.get("extenders", []):
        url = urllib.parse.urlsplit(ext["urlPrefix"])
        ext["urlPrefix"] = urllib.parse.urlunsplit((url.scheme, extender, url.path, "", ""))
    config.setdefault("clientConnection", {})["kubeconfig"] = str(kubeconfig)
    return config


def shipped_extender_args(deploy: Path, listen: str) -> list[str]:
    """``topolet`` arguments of the shipped extender Deployment (``extender ...``), ``--listen``
    set to *listen*."""
    path = deploy / "scheduler" / "extender.yaml"
    for doc in _documents(path):
        if doc.get("kind") == "Deployment":
            args = [str(a) for a in doc["spec"]["template"]["spec"]["containers"][0]["args"]]
            break
    else:
        raise StackError(f"{path}: no Deployment")
    return [f"--listen={listen}" if a.startswith("--listen") else a for a in args]


def extender_prefix(config: dict[str, Any]) -> str:
    """The URL path of the (first) extender in *config*, e.g. ``/topolet``."""
    return str(urllib.parse.urlsplit(config["extenders"][0]["urlPrefix"]).path)


def default_scheduler_config(kubeconfig: Path, *, name: str = "default-scheduler") -> dict[str, Any]:
    """kube-scheduler's default profile, no extender, no leader election."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "leaderElection": {"leaderElect": False},
        "profiles": [{"schedulerName": name}],
    }


def apply_manifest(api_client: Any, path: Path) -> None:
    """Create every object of *path* (objects that already exist are left as they are)."""
    from kube.admin import apply_manifest as create_from_yaml
    from kube.errors import KubeError

    try:
        create_from_yaml(api_client, path)
    except KubeError as err:
        raise StackError(str(err)) from None


def wait_crd(api_client: Any, name: str, timeout_s: float = 30.0) -> None:
    """Wait until CustomResourceDefinition *name* is Established."""
    from kube.admin import crd_established

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if crd_established(api_client, name):
            return
        time.sleep(0.2)
    raise StackError(f"CustomResourceDefinition {name}: not Established after {timeout_s:.0f} s")


def fake_node(name: str, cpus: int, memory_bytes: int, *, pods: int = 110) -> dict[str, Any]:
    """A Node object with no kubelet behind it: Ready, schedulable, with this capacity."""
    capacity = {"cpu": str(cpus), "memory": str(memory_bytes), "pods": str(pods)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topolet.io/fake": "true"}},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "FakeNode", "message": "no kubelet"}
            ],
        },
    }


def guaranteed_pod(
    name: str,
    cpus: int,
    *,
    scheduler: str,
    memory: str = "64Mi",
    labels: dict[str, str] | None = None,
    priority_class: str = "",
) -> dict[str, Any]:
    """A Guaranteed pod (requests = limits, integer CPUs) for *scheduler*."""
    res = {"cpu": str(cpus), "memory": memory}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "app", "image": "pause", "resources": {"requests": res, "limits": res}}],
        },
    }
    if priority_class:
        pod["spec"]["priorityClassName"] = priority_class
    return pod


def filter_probe(cpus: int, nodes: list[str]) -> dict[str, Any]:
    """An extender filter request for a Guaranteed pod of *cpus* CPUs on *nodes*."""
    res = {"cpu": str(cpus), "memory": "64Mi"}
    pod = {
        "metadata": {"name": "probe", "namespace": "default", "uid": "probe"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": res, "limits": res}}]},
    }
    return {"Pod": pod, "Nodes": None, "NodeNames": nodes}


def extender_post(url: str, body: dict[str, Any], timeout_s: float = 10.0) -> Any:
    """POST *body* to the extender verb at *url*; the decoded reply, or None if unreachable."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return json.loads(r.read(64 << 20))
    except (OSError, ValueError):
        return None


def wait_extender_synced(filter_url: str, nodes: list[str], cpus: int, timeout_s: float = 120.0) -> None:
    """Wait until the extender's filter refuses a pod of *cpus* CPUs (more than any NUMA
    node has) on every one of *nodes*: its NRT mirror then holds them all (``/healthz``
    answers before the first list)."""
    body = filter_probe(cpus, nodes)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = extender_post(filter_url, body)
        if reply is not None and not reply.get("NodeNames"):
            return
        time.sleep(0.3)
    raise StackError(f"{filter_url}: the extender did not list the NRT objects within {timeout_s:.0f} s")
