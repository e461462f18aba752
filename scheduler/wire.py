"""The kube-scheduler extender wire format: typed shapes and strict parsers, pure.

kube-scheduler marshals its extender types with Go's ``encoding/json`` and no JSON
tags, so request keys are the capitalised Go field names: ``Pod``, ``Nodes``,
``NodeNames`` (filter, prioritize), ``PodName``, ``PodNamespace``, ``PodUID``, ``Node``
(bind) and ``Pod``, ``NodeNameToVictims``, ``NodeNameToMetaVictims`` (preempt). Replies
are decoded case-insensitively by Go, but value types must match: ``Score`` is an
integer, the prioritize reply a bare array, the preempt reply always the UID form.

Parsing is strict: a key spelt in another case (``pod``, as pre-2019 tutorials show)
is an error naming the expected key, never a silent miss; wrong value types are errors
naming the key and the accepted form. Unknown extra keys are ignored, as Go ignores
them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import getitem
from typing import Any, TypedDict

import msgspec

from scheduler.errors import InputError

__all__ = [
    "MAX_EXTENDER_PRIORITY",
    "MIN_EXTENDER_PRIORITY",
    "BindRequest",
    "ExtenderArgs",
    "ExtenderBindingArgs",
    "ExtenderBindingResult",
    "ExtenderFilterResult",
    "ExtenderPreemptionResult",
    "FilterRequest",
    "HostPriority",
    "MetaVictims",
    "NodeVictims",
    "PreemptRequest",
    "PriorityEncoder",
    "WireError",
    "decode_extender_args",
    "filter_result",
    "host_priority",
    "parse_binding_args",
    "parse_extender_args",
    "parse_preemption_args",
    "preemption_result",
]

#: kube-scheduler ``MinExtenderPriority`` / ``MaxExtenderPriority``.
MIN_EXTENDER_PRIORITY = 0
MAX_EXTENDER_PRIORITY = 10


class WireError(InputError):
    """A request body does not have the extender wire shape; names the key."""

    def __init__(self, key: str, expected: str, given: object = None, *, note: str = "") -> None:
        self.key = key
        self.expected = expected
        got = "" if given is None else f", got {_short(given)}"
        super().__init__(f"{key}: expected {expected}{got}{note}")


class ExtenderArgs(TypedDict):
    """Filter and prioritize request. ``Nodes`` is a ``v1.NodeList`` (nodeCacheCapable
    false) and ``NodeNames`` a list of names (nodeCacheCapable true); the other is null."""

    Pod: dict[str, Any]
    Nodes: dict[str, Any] | None
    NodeNames: list[str] | None


class ExtenderFilterResult(TypedDict, total=False):
    """Filter reply. Survivors go in ``NodeNames`` or ``Nodes``, whichever the request used."""

    Nodes: dict[str, Any] | None
    NodeNames: list[str] | None
    FailedNodes: dict[str, str]
    FailedAndUnresolvableNodes: dict[str, str]
    Error: str


class HostPriority(TypedDict):
    """One entry of the prioritize reply (a bare JSON array of these)."""

    Host: str
    Score: int


class ExtenderBindingArgs(TypedDict):
    """Bind request: only these four strings; the pod object is not sent."""

    PodName: str
    PodNamespace: str
    PodUID: str
    Node: str


class ExtenderBindingResult(TypedDict):
    """Bind reply; a non-empty ``Error`` is a bind failure."""

    Error: str


@dataclass(frozen=True, slots=True)
class FilterRequest:
    """A parsed filter/prioritize request.

    ``names`` are the candidate node names in request order. ``node_objects`` holds the
    full node objects by name when the request carried ``Nodes`` (nodeCacheCapable
    false), so that a reply can echo them back unchanged; it is None otherwise.
    """

    pod: Mapping[str, Any]
    names: tuple[str, ...]
    node_objects: Mapping[str, Mapping[str, Any]] | None
    node_list_meta: Mapping[str, Any] | None = None

    @property
    def node_cache_capable(self) -> bool:
        return self.node_objects is None


@dataclass(frozen=True, slots=True)
class BindRequest:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require(body: Mapping[str, Any], key: str, where: str) -> Any:
    """``body[key]``; a missing key is an error that also names a wrong-case spelling."""
    if key in body:
        return body[key]
    wrong = [k for k in body if isinstance(k, str) and k.lower() == key.lower()]
    note = f" (found {wrong[0]!r}: keys are case-sensitive Go field names, e.g. {key!r})" if wrong else ""
    raise WireError(f"{where}.{key}", "a key that is present", note=note or " (missing)")


def _object(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WireError(key, "a JSON object", value)
    return value


def parse_extender_args(body: object) -> FilterRequest:
    """Parse a filter/prioritize body (``ExtenderArgs``)."""
    args = _object(body, "ExtenderArgs")
    pod = _require(args, "Pod", "ExtenderArgs")
    if pod is None:
        raise WireError("ExtenderArgs.Pod", "a v1.Pod object", note=" (got null)")
    pod = _object(pod, "ExtenderArgs.Pod")
    names_raw = args.get("NodeNames")
    nodes_raw = args.get("Nodes")
    if names_raw is None and nodes_raw is None:
        _require(args, "NodeNames", "ExtenderArgs")  # names a wrong-case key when there is one
        _require(args, "Nodes", "ExtenderArgs")
        raise WireError(
            "ExtenderArgs.NodeNames",
            "a list of node names, or Nodes as a v1.NodeList",
            note=" (both are null)",
        )
    if names_raw is not None:
        return FilterRequest(pod, _names(names_raw), None)
    return _from_node_list(pod, nodes_raw)


class _TypedArgs(msgspec.Struct):
    """``ExtenderArgs`` as msgspec decodes it straight from the body bytes."""

    Pod: dict[str, Any] | None = None
    Nodes: dict[str, Any] | None = None
    NodeNames: list[str] | None = None


_ARGS = msgspec.json.Decoder(_TypedArgs)


def decode_extender_args(body: bytes) -> FilterRequest | None:
    """A filter/prioritize body decoded in one typed pass (msgspec: no intermediate dicts
    for the name list); None when the body is not the common well-formed ``NodeNames``
    shape, so that :func:`parse_extender_args` on the parsed JSON names what is wrong."""
    try:
        args = _ARGS.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    names = args.NodeNames
    if args.Pod is None or names is None or "" in names:
        return None
    return FilterRequest(args.Pod, tuple(names), None)


def _names(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise WireError("ExtenderArgs.NodeNames", "a list of node names", raw)
    try:
        "".join(raw)  # a TypeError names no position: the loop below does
        if "" not in raw:
            return tuple(raw)
    except TypeError:
        pass
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not name:
            raise WireError(f"ExtenderArgs.NodeNames[{i}]", "a non-empty string", name)
    return tuple(raw)


def _from_node_list(pod: Mapping[str, Any], raw: object) -> FilterRequest:
    node_list = _object(raw, "ExtenderArgs.Nodes")
    items = node_list.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise WireError("ExtenderArgs.Nodes.items", "a list of v1.Node objects", items)
    objects: dict[str, Mapping[str, Any]] = {}
    for i, item in enumerate(items):
        where = f"ExtenderArgs.Nodes.items[{i}]"
        node = _object(item, where)
        meta = _object(node.get("metadata"), f"{where}.metadata")
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise WireError(f"{where}.metadata.name", "a non-empty string", name)
        objects[name] = node
    list_meta = node_list.get("metadata")
    return FilterRequest(pod, tuple(objects), objects, list_meta if isinstance(list_meta, Mapping) else None)


def parse_binding_args(body: object) -> BindRequest:
    """Parse a bind body (``ExtenderBindingArgs``); all four strings are required."""
    args = _object(body, "ExtenderBindingArgs")
    values: list[str] = []
    for key in ("PodName", "PodNamespace", "PodUID", "Node"):
        value = _require(args, key, "ExtenderBindingArgs")
        if not isinstance(value, str) or (not value and key != "PodUID"):
            raise WireError(f"ExtenderBindingArgs.{key}", "a non-empty string", value)
        values.append(value)
    return BindRequest(*values)


def filter_result(
    request: FilterRequest,
    passed: Sequence[str],
    failed: Mapping[str, str],
    unresolvable: Mapping[str, str],
    error: str = "",
) -> ExtenderFilterResult:
    """The reply naming survivors the way the request named candidates."""
    out: ExtenderFilterResult = {
        "FailedNodes": dict(failed),
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": error,
    }
    if request.node_objects is None:
        out["NodeNames"] = list(passed)
        out["Nodes"] = None
    else:
        items = [request.node_objects[name] for name in passed]
        out["Nodes"] = {"metadata": dict(request.node_list_meta or {}), "items": items}
        out["NodeNames"] = None
    return out


def host_priority(host: str, score: int) -> HostPriority:
    """One prioritize entry, the score clamped to 0..10 as an int."""
    return {"Host": host, "Score": min(max(int(score), MIN_EXTENDER_PRIORITY), MAX_EXTENDER_PRIORITY)}


class PriorityEncoder:
    """Encodes prioritize replies from pre-encoded entries: per node name, the eleven
    ``{"Host":"NAME","Score":S}`` objects (S = 0..10), so a reply over thousands of
    names is one join of cached bytes. Names are forgotten all at once past *max_names*."""

    def __init__(self, max_names: int = 100_000) -> None:
        self._max = max_names
        self._entries: dict[str, tuple[bytes, ...]] = {}

    def _entry(self, name: str) -> tuple[bytes, ...]:
        head = f'{{"Host":{json.dumps(name)},"Score":'.encode()
        return tuple(head + b"%d}" % s for s in range(MAX_EXTENDER_PRIORITY + 1))

    def encode(self, names: Sequence[str], scores: Sequence[int]) -> bytes:
        """The bare JSON array of ``{"Host","Score"}`` (scores clamped to 0..10)."""
        if len(names) != len(scores):
            raise ValueError(f"{len(names)} names but {len(scores)} scores")
        entries = self._entries
        try:
            rows = list(map(entries.__getitem__, names))
        except KeyError:
            if len(entries) + len(names) > self._max:
                entries.clear()
            rows = [entries.get(n) or entries.setdefault(n, self._entry(n)) for n in names]
        if scores and min(scores) < MIN_EXTENDER_PRIORITY:
            scores = [max(s, MIN_EXTENDER_PRIORITY) for s in scores]
        try:
            return b"[" + b",".join(map(getitem, rows, scores)) + b"]"
        except IndexError:  # a score above the maximum
            clamped = [min(s, MAX_EXTENDER_PRIORITY) for s in scores]
            return b"[" + b",".join(map(getitem, rows, clamped)) + b"]"


# ------------------------------------------------------------------ preempt
class MetaVictims(TypedDict):
    """``extenderv1.MetaVictims``: the victims of one node by UID."""

    Pods: list[dict[str, str]]
    NumPDBViolations: int


class ExtenderPreemptionResult(TypedDict):
    """Preempt reply: always the meta (UID) form, whatever ``nodeCacheCapable`` is."""

    NodeNameToMetaVictims: dict[str, MetaVictims]


@dataclass(frozen=True, slots=True)
class NodeVictims:
    """The pods kube-scheduler proposes to evict on one node (UIDs, in its order)."""

    uids: tuple[str, ...]
    pdb_violations: int


@dataclass(frozen=True, slots=True)
class PreemptRequest:
    """A parsed ``ExtenderPreemptionArgs``: the pod and the candidate victims per node."""

    pod: Mapping[str, Any]
    victims: Mapping[str, NodeVictims]


def _victims(node: str, raw: object, key: str, *, full: bool) -> NodeVictims:
    where = f"ExtenderPreemptionArgs.{key}[{node!r}]"
    entry = _object(raw, where)
    pods = entry.get("Pods") or []
    if not isinstance(pods, list):
        raise WireError(f"{where}.Pods", "a list of pods", pods)
    uids: list[str] = []
    for i, item in enumerate(pods):
        pod = _object(item, f"{where}.Pods[{i}]")
        uid = (
            _object(pod.get("metadata"), f"{where}.Pods[{i}].metadata").get("uid") if full else pod.get("UID")
        )
        if not isinstance(uid, str) or not uid:
            field = "metadata.uid" if full else "UID"
            raise WireError(f"{where}.Pods[{i}].{field}", "a non-empty pod UID", uid)
        uids.append(uid)
    pdb = entry.get("NumPDBViolations", 0)
    if isinstance(pdb, bool) or not isinstance(pdb, int):
        raise WireError(f"{where}.NumPDBViolations", "an integer", pdb)
    return NodeVictims(tuple(uids), pdb)


def parse_preemption_args(body: object) -> PreemptRequest:
    """Parse a preempt body: ``NodeNameToMetaVictims`` (nodeCacheCapable) or else
    ``NodeNameToVictims`` (full pods)."""
    args = _object(body, "ExtenderPreemptionArgs")
    pod = _require(args, "Pod", "ExtenderPreemptionArgs")
    pod = _object(pod, "ExtenderPreemptionArgs.Pod")
    meta = args.get("NodeNameToMetaVictims")
    full = args.get("NodeNameToVictims")
    if meta is None and full is None:
        _require(args, "NodeNameToMetaVictims", "ExtenderPreemptionArgs")
        _require(args, "NodeNameToVictims", "ExtenderPreemptionArgs")
        raise WireError(
            "ExtenderPreemptionArgs.NodeNameToMetaVictims",
            "a map of node name to victims",
            note=" (both are null)",
        )
    key, table = ("NodeNameToMetaVictims", meta) if meta is not None else ("NodeNameToVictims", full)
    victims = {
        str(node): _victims(str(node), raw, key, full=meta is None)
        for node, raw in _object(table, f"ExtenderPreemptionArgs.{key}").items()
    }
    return PreemptRequest(pod, victims)


def preemption_result(kept: Mapping[str, NodeVictims]) -> ExtenderPreemptionResult:
    """The reply: the kept nodes with their victims as UIDs."""
    return {
        "NodeNameToMetaVictims": {
            node: {"Pods": [{"UID": uid} for uid in v.uids], "NumPDBViolations": v.pdb_violations}
            for node, v in kept.items()
        }
    }
