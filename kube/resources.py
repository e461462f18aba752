"""The calls topolet makes on the API server, plain JSON both ways, errors from :mod:`kube.errors`.

Replies are read as raw JSON (``_preload_content=False``), never deserialised into the
client's models: one odd object cannot stop a watch, and the binding's ``Status`` reply is
not misread as a ``V1Binding`` (kubernetes-client/python #547).

* :class:`ListCall` — a :class:`~kube.watch.ListSource` over one of the client's list
  calls; :func:`pods`, :func:`cluster_objects`, :func:`resource_claims` and
  :func:`resource_slices` make topolet's watches.
* :class:`ClusterObjects` — get / create / replace / delete / watch of a cluster-scoped custom
  resource (:func:`node_resource_topologies`).
* :class:`Pods`, :class:`Nodes`, :class:`ResourceSlices`, :class:`ResourceClaims`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import quote

from kubernetes import client as _client

from kube.client import ApiClient
from kube.curl_post import CurlPoster, unsupported
from kube.errors import KubeConflict, KubeError, KubeNotFound, api_errors
from kube.objects import NRT_GROUP, NRT_PLURAL, NRT_VERSION, Obj

__all__ = [
    "NRT_GROUP",
    "NRT_PLURAL",
    "NRT_VERSION",
    "ClusterObjects",
    "ListCall",
    "Nodes",
    "Pods",
    "ResourceClaims",
    "ResourceSlices",
    "cluster_objects",
    "done",
    "node_resource_topologies",
    "pods",
    "resource_claims",
    "resource_slices",
]

log = logging.getLogger(__name__)


def _json(resp: Any) -> Obj:
    try:
        out = json.loads(resp.data)
    except ValueError as err:
        raise KubeError("reading the API server's reply", None, "", f"not JSON: {err}") from err
    if not isinstance(out, dict):
        raise KubeError("reading the API server's reply", None, "", f"not a JSON object: {out!r:.100}")
    return out


def done(resp: Any) -> None:
    """Read and drop a reply whose body topolet does not need, so that its connection goes
    back to the client's pool (an unread reply keeps it, and the next call opens a new
    TLS connection)."""
    resp.drain_conn()
    resp.release_conn()


class ListCall:
    """A :class:`~kube.watch.ListSource`: ``fn(*args, **params)`` is one of the client's
    list calls (``CoreV1Api.list_pod_for_all_namespaces`` ...)."""

    def __init__(self, what: str, fn: Callable[..., Any], *args: Any, **params: Any) -> None:
        self.what, self._fn, self._args, self._params = what, fn, args, params

    def list(self) -> Obj:
        with api_errors(f"list {self.what}"):
            return _json(self._fn(*self._args, **self._params, _preload_content=False))

    def watch(self, resource_version: str, timeout_s: int) -> Any:
        with api_errors(f"watch {self.what}"):
            return self._fn(
                *self._args,
                **self._params,
                resource_version=resource_version,
                timeout_seconds=timeout_s,
                allow_watch_bookmarks=True,
                watch=True,
                _preload_content=False,
            )


def pods(api: ApiClient, *, node_name: str = "") -> ListCall:
    """Pods of every namespace; only those bound to *node_name* when it is given."""
    core = _client.CoreV1Api(api)
    if not node_name:
        return ListCall("pods", core.list_pod_for_all_namespaces)
    selector = f"spec.nodeName={node_name}"
    return ListCall(f"pods on {node_name}", core.list_pod_for_all_namespaces, field_selector=selector)


def resource_claims(api: ApiClient) -> ListCall:
    """``resource.k8s.io/v1`` ResourceClaims of every namespace."""
    return ListCall("resourceclaims", _client.ResourceV1Api(api).list_resource_claim_for_all_namespaces)


def resource_slices(api: ApiClient, *, driver: str) -> ListCall:
    """``resource.k8s.io/v1`` ResourceSlices of one DRA driver, every node."""
    return ListCall(
        f"resourceslices of {driver}",
        _client.ResourceV1Api(api).list_resource_slice,
        field_selector=f"spec.driver={driver}",
    )


def cluster_objects(api: ApiClient, group: str, version: str, plural: str) -> ListCall:
    """A cluster-scoped custom resource, every object."""
    custom = _client.CustomObjectsApi(api)
    return ListCall(plural, custom.list_cluster_custom_object, group, version, plural)


class ClusterObjects:
    """Objects of a cluster-scoped custom resource, read and written as dicts."""

    def __init__(self, api: ApiClient, group: str, version: str, plural: str) -> None:
        self._api = _client.CustomObjectsApi(api)
        self.group, self.version, self.plural = group, version, plural

    def _at(self) -> tuple[str, str, str]:
        return self.group, self.version, self.plural

    def get(self, name: str) -> Obj | None:
        """The object, or None when there is none."""
        try:
            with api_errors(f"get {self.plural}/{name}"):
                return _json(self._api.get_cluster_custom_object(*self._at(), name, _preload_content=False))
        except KubeNotFound:
            return None

    def create(self, body: Obj) -> Obj:
        name = body.get("metadata", {}).get("name", "")
        with api_errors(f"create {self.plural}/{name}"):
            return _json(self._api.create_cluster_custom_object(*self._at(), body, _preload_content=False))

    def replace(self, name: str, body: Obj) -> Obj:
        """Replace; the body's ``metadata.resourceVersion`` guards against lost updates
        (:class:`~kube.errors.KubeConflict` when it is stale)."""
        with api_errors(f"replace {self.plural}/{name}"):
            return _json(
                self._api.replace_cluster_custom_object(*self._at(), name, body, _preload_content=False)
            )

    def delete(self, name: str) -> None:
        """Delete; one that is gone already is no error."""
        try:
            with api_errors(f"delete {self.plural}/{name}"):
                done(self._api.delete_cluster_custom_object(*self._at(), name, _preload_content=False))
        except KubeNotFound:
            pass

    def list_source(self) -> ListCall:
        return ListCall(self.plural, self._api.list_cluster_custom_object, *self._at())


def node_resource_topologies(api: ApiClient) -> ClusterObjects:
    """``topology.node.k8s.io/v1alpha2`` NodeResourceTopology objects (name = node name)."""
    return ClusterObjects(api, NRT_GROUP, NRT_VERSION, NRT_PLURAL)


class Pods:
    """The pod writes topolet makes.

    A Binding goes through libcurl (:class:`~kube.curl_post.CurlPoster`) when the client's
    settings allow it, else through the ``kubernetes`` client; :attr:`transport` says which."""

    def __init__(self, api: ApiClient) -> None:
        self._core = _client.CoreV1Api(api)
        self._curl = CurlPoster.for_client(api)
        self.transport = "libcurl" if self._curl is not None else "kubernetes-client"
        if self._curl is None:
            log.info("Bindings go through the kubernetes client: %s", unsupported(api))
        else:
            log.debug("Bindings go through libcurl")

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        """``POST .../pods/{name}/binding`` to *node* (RBAC ``pods/binding`` ``create``)."""
        what = f"bind pod {namespace}/{name} to {node}"
        if self._curl is not None:
            body = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, **({"uid": uid} if uid else {})},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/binding"
            self._curl.post(path, json.dumps(body, separators=(",", ":")).encode(), what)
            return
        client_body = _client.V1Binding(
            api_version="v1",
            kind="Binding",
            metadata=_client.V1ObjectMeta(name=name, namespace=namespace, uid=uid or None),
            target=_client.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        with api_errors(what):
            done(
                self._core.create_namespaced_pod_binding(name, namespace, client_body, _preload_content=False)
            )

    def close(self) -> None:
        """Close the libcurl connections (the client's own pool is the client's to close)."""
        if self._curl is not None:
            self._curl.close()


class Nodes:
    """Node objects (for loopback clusters without kubelets)."""

    def __init__(self, api: ApiClient) -> None:
        self._core = _client.CoreV1Api(api)

    def create(self, body: Obj, *, exist_ok: bool = False) -> None:
        name = body.get("metadata", {}).get("name", "")
        try:
            with api_errors(f"create node {name}"):
                done(self._core.create_node(cast(Any, body), _preload_content=False))
        except KubeConflict:
            if not exist_ok:
                raise


class ResourceSlices:
    """``resource.k8s.io/v1`` ResourceSlices, as dicts."""

    def __init__(self, api: ApiClient) -> None:
        self._api = _client.ResourceV1Api(api)

    def list(self, node_name: str) -> list[Obj]:
        """The slices of *node_name* (the only list a node's credentials may make)."""
        with api_errors(f"list resourceslices on {node_name}"):
            resp = self._api.list_resource_slice(
                field_selector=f"spec.nodeName={node_name}", _preload_content=False
            )
            items: list[Obj] = _json(resp).get("items") or []
        return items

    def create(self, body: Obj) -> Obj:
        with api_errors("create resourceslice"):
            return _json(self._api.create_resource_slice(cast(Any, body), _preload_content=False))

    def replace(self, name: str, body: Obj) -> Obj:
        with api_errors(f"replace resourceslice {name}"):
            return _json(self._api.replace_resource_slice(name, cast(Any, body), _preload_content=False))

    def delete(self, name: str) -> None:
        """Delete; one that is gone already is no error."""
        try:
            with api_errors(f"delete resourceslice {name}"):
                done(self._api.delete_resource_slice(name, _preload_content=False))
        except KubeNotFound:
            pass


class ResourceClaims:
    """``resource.k8s.io/v1`` ResourceClaims, read as dicts."""

    def __init__(self, api: ApiClient) -> None:
        self._api = _client.ResourceV1Api(api)

    def get(self, namespace: str, name: str) -> Obj:
        with api_errors(f"get resourceclaim {namespace}/{name}"):
            return _json(self._api.read_namespaced_resource_claim(name, namespace, _preload_content=False))

    def find(self, namespace: str, name: str) -> Obj | None:
        """The claim, or None when there is none."""
        try:
            return self.get(namespace, name)
        except KubeNotFound:
            return None
