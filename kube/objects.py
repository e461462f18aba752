"""Plain API objects (JSON dicts) and the few fields every caller reads from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NRT_GROUP", "NRT_PLURAL", "NRT_VERSION", "Obj", "object_key", "resource_version"]

#: NodeResourceTopology: cluster scoped, name = node name.
NRT_GROUP, NRT_VERSION, NRT_PLURAL = "topology.node.k8s.io", "v1alpha2", "noderesourcetopologies"

#: An API object as the server sends it: a JSON object.
Obj = dict[str, Any]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def object_key(obj: Mapping[str, Any]) -> str:
    """What tells two objects apart: the uid when the object has one (a pod deleted and
    created again under its name is another pod), else ``namespace/name``."""
    meta = _meta(obj)
    uid = meta.get("uid")
    if uid:
        return str(uid)
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    return f"{ns}/{name}" if ns else str(name)


def resource_version(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("resourceVersion") or "")
