"""Pod traces: a seeded generator and a YAML trace format, both giving :class:`SimPod` lists.

The generator draws pods from :data:`SHAPES` (Guaranteed pods with whole CPUs,
memory, some with hugepages or GPUs, a two-container pod with a sidecar, and
Burstable pods) by weight; arrivals are a Poisson process (exponential gaps with mean
``mean_gap_s``) and lifetimes are exponential with mean ``mean_duration_s``.

YAML trace format (a mapping with one key, ``pods``, a non-empty list)::

    pods:
      - name: db-0              # optional; default pod-<index>
        arrival_s: 0            # required, number >= 0 (seconds from the start)
        duration_s: 600         # required, number > 0
        qos: Guaranteed         # optional: Guaranteed (requests = limits, the default)
                                #           or Burstable (requests only)
        containers:             # required, a non-empty list
          - name: db            # required, unique within the pod
            cpu: "4"            # Kubernetes quantities, all optional:
            memory: 8Gi         #   cpu, memory, hugepages-2Mi, hugepages-1Gi,
            hugepages-2Mi: 1Gi  #   nvidia.com/gpu
            nvidia.com/gpu: 1

Every error names the field (``pods[3].containers[0].cpu``) and the accepted form.
Pods are returned sorted by arrival (stable for equal times).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError
from scheduler.errors import PodSpecError
from scheduler.pod import PodRequest, parse_pod
from topology.quantity import QuantityError, parse_amount

__all__ = ["RESOURCES", "SHAPES", "Shape", "SimPod", "TraceError", "generate", "load_trace", "mean_cpus"]

#: Resources a trace container may ask for.
RESOURCES = ("cpu", "memory", "hugepages-2Mi", "hugepages-1Gi", "nvidia.com/gpu")
_QOS = ("Guaranteed", "Burstable")


class TraceError(BenchError, ValueError):
    """A trace is malformed; the message names the field and the accepted form."""


@dataclass(frozen=True, slots=True)
class SimPod:
    """One pod of a trace: the pod object as the API serves it, and its parsed request."""

    uid: str
    name: str
    shape: str
    arrival_s: float
    duration_s: float
    manifest: Mapping[str, Any]
    request: PodRequest


@dataclass(frozen=True, slots=True)
class Shape:
    """A pod shape of the generator: ``containers`` are resource maps (quantity strings)."""

    name: str
    weight: int
    qos: str
    containers: tuple[Mapping[str, str], ...]


SHAPES: tuple[Shape, ...] = (
    Shape("g-2cpu", 24, "Guaranteed", ({"cpu": "2", "memory": "4Gi"},)),
    Shape("g-4cpu", 14, "Guaranteed", ({"cpu": "4", "memory": "8Gi"},)),
    Shape("g-8cpu", 10, "Guaranteed", ({"cpu": "8", "memory": "16Gi"},)),
    Shape("g-16cpu", 6, "Guaranteed", ({"cpu": "16", "memory": "32Gi"},)),
    Shape("g-20cpu", 4, "Guaranteed", ({"cpu": "20", "memory": "48Gi"},)),
    Shape("g-hugepages", 8, "Guaranteed", ({"cpu": "6", "memory": "8Gi", "hugepages-2Mi": "2Gi"},)),
    Shape("g-sidecar", 6, "Guaranteed", ({"cpu": "4", "memory": "8Gi"}, {"cpu": "1", "memory": "1Gi"})),
    Shape("gpu-1", 5, "Guaranteed", ({"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},)),
    Shape(
        "gpu-2",
        3,
        "Guaranteed",
        ({"cpu": "16", "memory": "64Gi", "hugepages-1Gi": "4Gi", "nvidia.com/gpu": "2"},),
    ),
    Shape("gpu-4", 2, "Guaranteed", ({"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "4"},)),
    Shape("burstable-small", 10, "Burstable", ({"cpu": "500m", "memory": "1Gi"},)),
    Shape("burstable", 8, "Burstable", ({"cpu": "2", "memory": "4Gi"},)),
)


def mean_cpus(shapes: Sequence[Shape] = SHAPES) -> float:
    """The generator's mean CPU request per pod, in CPUs."""
    total = sum(s.weight for s in shapes)
    cpus = sum(
        s.weight * sum(parse_amount("cpu", c.get("cpu", "0"), field="cpu") for c in s.containers) / 1000
        for s in shapes
    )
    return cpus / total


def _manifest(
    name: str, uid: str, qos: str, containers: Sequence[tuple[str, Mapping[str, str]]]
) -> dict[str, Any]:
    specs = []
    for cname, res in containers:
        body = (
            {"requests": dict(res), "limits": dict(res)} if qos == "Guaranteed" else {"requests": dict(res)}
        )
        specs.append({"name": cname, "image": "registry.k8s.io/pause:3.9", "resources": body})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "sim", "uid": uid},
        "spec": {"schedulerName": "topolet-scheduler", "containers": specs},
    }


def _pod(name: str, shape: str, arrival: float, duration: float, manifest: dict[str, Any]) -> SimPod:
    uid = str(manifest["metadata"]["uid"])
    return SimPod(uid, name, shape, arrival, duration, manifest, parse_pod(manifest))


def generate(count: int, seed: int, *, mean_gap_s: float, mean_duration_s: float) -> list[SimPod]:
    """*count* pods from :data:`SHAPES` with Poisson arrivals and exponential lifetimes."""
    if count < 1:
        raise TraceError(f"pods: expected at least 1 pod, got {count}")
    if mean_gap_s <= 0 or mean_duration_s <= 0:
        raise TraceError("mean_gap_s and mean_duration_s must be > 0")
    rng = random.Random(seed)
    weights = [s.weight for s in SHAPES]
    pods: list[SimPod] = []
    now = 0.0
    for i in range(count):
        now += rng.expovariate(1.0 / mean_gap_s)
        shape = rng.choices(SHAPES, weights)[0]
        duration = rng.expovariate(1.0 / mean_duration_s)
        names = ("app", "proxy")
        manifest = _manifest(
            f"{shape.name}-{i}",
            f"pod-{i:05d}",
            shape.qos,
            [(f"c{k}" if k >= len(names) else names[k], c) for k, c in enumerate(shape.containers)],
        )
        pods.append(_pod(f"{shape.name}-{i}", shape.name, now, duration, manifest))
    return pods


# ---------------------------------------------------------------------- YAML
def _number(d: Mapping[str, Any], key: str, path: str, *, positive: bool) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"{path}.{key}: expected a number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise TraceError(f"{path}.{key}: expected a number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _container(obj: object, path: str) -> tuple[str, dict[str, str]]:
    if not isinstance(obj, Mapping):
        raise TraceError(f"{path}: expected a mapping with name and resources, got {obj!r}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise TraceError(f"{path}.name: expected a non-empty container name, got {name!r}")
    res: dict[str, str] = {}
    for key, value in obj.items():
        if key == "name":
            continue
        if key not in RESOURCES:
            raise TraceError(f"{path}.{key}: unknown field; expected name or one of {', '.join(RESOURCES)}")
        text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        try:
            parse_amount(key, text, field=f"{path}.{key}")
        except QuantityError as err:
            raise TraceError(str(err)) from err
        res[key] = str(text)
    return name, res


def _trace_pod(obj: object, index: int) -> SimPod:
    path = f"pods[{index}]"
    if not isinstance(obj, Mapping):
        raise TraceError(f"{path}: expected a mapping with arrival_s, duration_s and containers, got {obj!r}")
    name = obj.get("name", f"pod-{index}")
    if not isinstance(name, str) or not name:
        raise TraceError(f"{path}.name: expected a non-empty string, got {name!r}")
    qos = obj.get("qos", "Guaranteed")
    if qos not in _QOS:
        raise TraceError(f"{path}.qos: expected one of {', '.join(_QOS)}, got {qos!r}")
    raw = obj.get("containers")
    if not isinstance(raw, list) or not raw:
        raise TraceError(f"{path}.containers: expected a non-empty list of containers, got {raw!r}")
    containers = [_container(c, f"{path}.containers[{i}]") for i, c in enumerate(raw)]
    if len({n for n, _ in containers}) != len(containers):
        raise TraceError(f"{path}.containers: container names must be unique within a pod")
    arrival = _number(obj, "arrival_s", path, positive=False)
    duration = _number(obj, "duration_s", path, positive=True)
    manifest = _manifest(name, f"pod-{index:05d}", qos, containers)
    try:
        return _pod(name, name, arrival, duration, manifest)
    except PodSpecError as err:
        raise TraceError(f"{path}: {err}") from err


def load_trace(path: Path) -> list[SimPod]:
    """Read and validate a YAML trace (format in the module docstring)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise TraceError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, Mapping) or not isinstance(data.get("pods"), list) or not data["pods"]:
        raise TraceError(f"{path}: pods: expected a mapping with a non-empty list under 'pods'")
    pods = [_trace_pod(p, i) for i, p in enumerate(data["pods"])]
    return sorted(pods, key=lambda p: p.arrival_s)
