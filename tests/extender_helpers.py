"""Builders shared by the extender tests: pods and nodes as kube-scheduler sends them
(official ``kubernetes`` client models, serialised to API JSON), NRT objects, and a
small HTTP client for loopback."""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any

from kubernetes import client

_API = client.ApiClient()


class MemoryBinder:
    """A binder that records Bindings in memory, for tests whose subject is the extender's
    own accounting (the binding subresource itself is tested against the API server
    stand-in in ``test_extender_sources.py`` and ``test_extender_binds.py``)."""

    def __init__(self) -> None:
        self.bound: dict[tuple[str, str], str] = {}

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        self.bound[(namespace, name)] = node


GU = "gu"
BU = "bu"


def v1_pod(
    name: str,
    *containers: tuple[str, str, dict[str, str]],
    init: tuple[Any, ...] = (),
    namespace: str = "default",
    uid: str | None = None,
) -> dict[str, Any]:
    """A ``v1.Pod`` as JSON. Each container is ``(name, GU|BU, resources)``."""

    def one(c: tuple[str, str, dict[str, str]]) -> client.V1Container:
        cname, kind, res = c
        limits = res if kind == GU else None
        return client.V1Container(
            name=cname,
            image="registry.k8s.io/pause:3.9",
            resources=client.V1ResourceRequirements(requests=res or None, limits=limits),
        )

    pod = client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, uid=uid or str(uuid.uuid4())),
        spec=client.V1PodSpec(
            scheduler_name="topolet-scheduler",
            containers=[one(c) for c in containers],
            init_containers=[one(c) for c in init] or None,
        ),
        status=client.V1PodStatus(phase="Pending"),
    )
    out: dict[str, Any] = _API.sanitize_for_serialization(pod)
    return out


def v1_node_list(*names: str) -> dict[str, Any]:
    nodes = [
        client.V1Node(
            api_version="v1",
            kind="Node",
            metadata=client.V1ObjectMeta(name=n, labels={"zone": "a"}),
            status=client.V1NodeStatus(allocatable={"cpu": "8", "memory": "16Gi"}),
        )
        for n in names
    ]
    out: dict[str, Any] = _API.sanitize_for_serialization(
        client.V1NodeList(metadata=client.V1ListMeta(), items=nodes)
    )
    return out


def args(pod: dict[str, Any], names: list[str], *, cache_capable: bool = True) -> dict[str, Any]:
    """``ExtenderArgs`` exactly as kube-scheduler marshals it (capitalised keys, null side)."""
    if cache_capable:
        return {"Pod": pod, "Nodes": None, "NodeNames": names}
    return {"Pod": pod, "Nodes": v1_node_list(*names), "NodeNames": None}


def nrt_obj(
    name: str,
    zones: dict[int, dict[str, str]],
    policy: str = "single-numa-node",
    scope: str = "container",
    allocatable: dict[int, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An NRT object; ``zones`` give ``available`` (``allocatable`` defaults to it)."""
    alloc = allocatable or zones
    return {
        "apiVersion": "topology.node.k8s.io/v1alpha2",
        "kind": "NodeResourceTopology",
        "metadata": {"name": name},
        "attributes": [
            {"name": "topologyManagerPolicy", "value": policy},
            {"name": "topologyManagerScope", "value": scope},
        ],
        "zones": [
            {
                "name": f"node-{numa}",
                "type": "Node",
                "costs": [{"name": f"node-{o}", "value": 10 if o == numa else 21} for o in zones],
                "resources": [
                    {
                        "name": r,
                        "capacity": alloc[numa].get(r, v),
                        "allocatable": alloc[numa].get(r, v),
                        "available": v,
                    }
                    for r, v in res.items()
                ],
            }
            for numa, res in zones.items()
        ],
    }


def post(address: tuple[str, int], path: str, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        data = raw if raw is not None else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        text = reply.read()
        return reply.status, json.loads(text) if text else None
    finally:
        conn.close()


def get(address: tuple[str, int], path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()
