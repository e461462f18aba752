"""Setting up a loopback cluster: manifests, CRDs, namespaces and test pods (benchmarks, e2e)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from kubernetes import client as _client
from kubernetes import utils as _utils

from kube.client import ApiClient
from kube.errors import KubeConflict, api_errors, translate
from kube.objects import Obj
from kube.resources import done

__all__ = ["Namespace", "apply_manifest", "crd_established"]


def apply_manifest(api: ApiClient, path: Path) -> None:
    """Create every object of the YAML file *path*; objects that exist already are left
    as they are. The first other refusal raises :class:`~kube.errors.KubeError`."""
    try:
        with api_errors(f"apply {path}"):
            _utils.create_from_yaml(api, str(path))
    except _utils.FailToCreateError as err:
        other = [e for e in err.api_exceptions if getattr(e, "status", None) != 409]
        if other:
            raise translate(f"apply {path}", other[0]) from None


def crd_established(api: ApiClient, name: str) -> bool:
    """Whether CustomResourceDefinition *name* has condition Established=True."""
    with api_errors(f"read customresourcedefinition {name}"):
        crd: Any = _client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


class Namespace:
    """One namespace and its pods."""

    def __init__(self, api: ApiClient, name: str) -> None:
        self._core = _client.CoreV1Api(api)
        self.name = name

    def create(self, *, exist_ok: bool = False) -> None:
        try:
            with api_errors(f"create namespace {self.name}"):
                done(
                    self._core.create_namespace(
                        cast(Any, {"metadata": {"name": self.name}}), _preload_content=False
                    )
                )
        except KubeConflict:
            if not exist_ok:
                raise

    def create_pod(self, body: Obj) -> None:
        name = body.get("metadata", {}).get("name", "")
        with api_errors(f"create pod {self.name}/{name}"):
            done(self._core.create_namespaced_pod(self.name, cast(Any, body), _preload_content=False))

    def delete_pods(self) -> None:
        """Delete every pod of the namespace at once (grace period 0)."""
        with api_errors(f"delete pods of {self.name}"):
            done(
                self._core.delete_collection_namespaced_pod(
                    self.name, grace_period_seconds=0, _preload_content=False
                )
            )

    def has_pods(self) -> bool:
        with api_errors(f"list pods of {self.name}"):
            return bool(self._core.list_namespaced_pod(self.name, limit=1).items)
