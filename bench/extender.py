"""Extender benchmark: filter + prioritize latency over many node names, and pods/s.

A synthetic cluster of ``nodes`` NRT objects with 2-8 NUMA zones each (cpu, memory,
hugepages on some, GPUs on some; mostly ``single-numa-node``, some ``restricted``,
``best-effort`` and ``none``; zones partly used) is loaded into an
:class:`~scheduler.cache.NRTCache`. A stream of pods drawn from a few realistic shapes
is then scheduled the way kube-scheduler drives an extender: ``filter`` over N node
names, ``prioritize`` over the survivors, ``bind`` to the best one (which reserves
zones, so cached results of that node go stale as they would in a cluster).

Figures, per candidate-list size (500 = what kube-scheduler sends at 5000 nodes by
default; 5000 = every node):

* ``in_process``: filter + prioritize through :class:`ExtenderCore` (request parsing
  included, HTTP excluded); bind runs after each pod but is not timed;
* ``http``: the same over loopback HTTP with one keep-alive connection (client-side
  JSON encoding included);
* ``sustained``: pods/s completed by several concurrent loopback clients, each pod
  filter + prioritize + bind, for a bounded time.

:func:`run` returns the figures as a dict; ``python -m bench.extender`` prints them.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from scheduler.cache import NRTCache
from scheduler.extender import ExtenderServer
from scheduler.service import ExtenderCore
from scheduler.wire import parse_binding_args, parse_extender_args
from topology.nrt import NodeResourceTopology

__all__ = ["build_cluster", "pod_shapes", "run"]

_GI = 1024**3
_POLICIES = (("single-numa-node", 70), ("restricted", 10), ("best-effort", 10), ("none", 10))


def _zone(rng: random.Random, numa: int, zones: int, gpus: int, hugepages: bool) -> dict[str, Any]:
    cpus = rng.choice((8, 16, 24, 32, 48))
    mem = rng.choice((32, 64, 128)) * _GI
    used = rng.random() * 0.8
    resources = [
        ("cpu", cpus, max(int(cpus * (1 - used)), 0)),
        ("memory", mem, int(mem * (1 - used * 0.5))),
    ]
    if hugepages:
        resources.append(("hugepages-1Gi", 16 * _GI, rng.randint(0, 16) * _GI))
    if gpus:
        resources.append(("nvidia.com/gpu", gpus, rng.randint(0, gpus)))
    return {
        "name": f"node-{numa}",
        "type": "Node",
        "costs": [{"name": f"node-{o}", "value": 10 if o == numa else 21} for o in range(zones)],
        "resources": [
            {"name": n, "capacity": str(c), "allocatable": str(c), "available": str(a)}
            for n, c, a in resources
        ],
    }


def build_cluster(nodes: int, seed: int = 1) -> list[NodeResourceTopology]:
    """*nodes* NRT objects named ``node-00000``... with 2-8 NUMA zones each."""
    rng = random.Random(seed)
    policies = [p for p, weight in _POLICIES for _ in range(weight)]
    out = []
    for i in range(nodes):
        zones = rng.choice((2, 2, 2, 4, 4, 8))
        gpus = rng.choice((0, 0, 0, 2, 4))
        hugepages = rng.random() < 0.3
        obj = {
            "metadata": {"name": f"node-{i:05d}"},
            "attributes": [
                {"name": "topologyManagerPolicy", "value": rng.choice(policies)},
                {"name": "topologyManagerScope", "value": rng.choice(("container", "pod"))},
            ],
            "zones": [_zone(rng, n, zones, gpus, hugepages) for n in range(zones)],
        }
        out.append(NodeResourceTopology.from_dict(obj))
    return out


def _container(name: str, guaranteed: bool, **res: str) -> dict[str, Any]:
    resources = {k.replace("_", "/").replace("gpu/", "nvidia.com/gpu"): v for k, v in res.items()}
    body = {"requests": resources, "limits": resources} if guaranteed else {"requests": resources}
    return {"name": name, "image": "registry.k8s.io/pause:3.9", "resources": body}


def pod_shapes() -> list[list[dict[str, Any]]]:
    """Container lists of the pods the benchmark schedules (Guaranteed mostly)."""
    gpu = "nvidia.com/gpu"
    return [
        [_container("app", True, cpu="2", memory="4Gi")],
        [_container("app", True, cpu="4", memory="8Gi")],
        [_container("app", True, cpu="8", memory="16Gi")],
        [_container("app", True, cpu="16", memory="32Gi")],
        [_container("app", True, cpu="4", memory="8Gi"), _container("sidecar", True, cpu="1", memory="1Gi")],
        [
            {
                **_container("train", True, cpu="8", memory="32Gi"),
                "resources": {
                    "requests": {"cpu": "8", "memory": "32Gi", gpu: "1"},
                    "limits": {"cpu": "8", "memory": "32Gi", gpu: "1"},
                },
            }
        ],
        [_container("db", True, cpu="4", memory="8Gi", hugepages_1Gi="2Gi")],
        [_container("web", False, cpu="500m", memory="512Mi")],
    ]


def _pod(shape: list[dict[str, Any]], n: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"bench-{n}", "namespace": "bench", "uid": str(uuid.uuid4())},
        "spec": {"schedulerName": "topolet-scheduler", "containers": shape},
        "status": {"phase": "Pending"},
    }


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "p50_ms": round(q[49] * 1e3, 3),
        "p99_ms": round(q[98] * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
        "samples": len(ordered),
    }


#: Schedules one pod (filter, prioritize, bind); returns the seconds filter + prioritize took.
Step = Callable[[dict[str, Any], list[str]], float]


def _in_process(core: ExtenderCore) -> Step:
    def step(pod: dict[str, Any], names: list[str]) -> float:
        start = time.perf_counter()
        body = {"Pod": pod, "Nodes": None, "NodeNames": names}
        result = core.filter(parse_extender_args(body))
        survivors = result.get("NodeNames") or []
        scores = core.prioritize(parse_extender_args({**body, "NodeNames": survivors})) if survivors else []
        elapsed = time.perf_counter() - start
        _bind_best(lambda b: core.bind(parse_binding_args(b)), pod, scores)
        return elapsed

    return step


def _bind_best(bind: Callable[[dict[str, Any]], Any], pod: dict[str, Any], scores: list[Any]) -> None:
    if not scores:
        return
    best = max(scores, key=lambda e: e["Score"])["Host"]
    meta = pod["metadata"]
    bind({"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": best})


class _Client:
    def __init__(self, address: tuple[str, int]) -> None:
        self.conn = http.client.HTTPConnection(*address, timeout=30)

    def post(self, path: str, body: Any) -> Any:
        self.conn.request(
            "POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{path}: HTTP {reply.status}: {data[:200]!r}")
        return json.loads(data)

    def step(self, pod: dict[str, Any], names: list[str]) -> float:
        start = time.perf_counter()
        result = self.post("/filter", {"Pod": pod, "Nodes": None, "NodeNames": names})
        survivors = result.get("NodeNames") or []
        body = {"Pod": pod, "Nodes": None, "NodeNames": survivors}
        scores = self.post("/prioritize", body) if survivors else []
        elapsed = time.perf_counter() - start
        _bind_best(lambda b: self.post("/bind", b), pod, scores)
        return elapsed


def _measure(
    step: Step, names_for: Callable[[], list[str]], pods: int, rng: random.Random
) -> dict[str, float]:
    shapes = pod_shapes()
    samples: list[float] = []
    for n in range(pods):
        samples.append(step(_pod(rng.choice(shapes), n), names_for()))
    return _percentiles(samples)


def _sustained(
    address: tuple[str, int], names_for: Callable[[], list[str]], clients: int, seconds: float, max_pods: int
) -> dict[str, float]:
    shapes = pod_shapes()
    done: list[int] = [0] * clients
    deadline = time.perf_counter() + seconds

    def worker(k: int) -> None:
        client, rng = _Client(address), random.Random(k)
        while time.perf_counter() < deadline and sum(done) < max_pods:
            client.step(_pod(rng.choice(shapes), k * 1_000_000 + done[k]), names_for())
            done[k] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "pods": sum(done),
        "seconds": round(elapsed, 3),
        "pods_per_s": round(sum(done) / elapsed, 1),
        "clients": clients,
    }


def run(
    nodes: int = 5000,
    pods: int = 300,
    name_counts: tuple[int, ...] = (500, 5000),
    *,
    sustained_s: float = 5.0,
    clients: int = 4,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"in_process": {N: {...}}, "http": {...}, "sustained": {...}}``."""
    cluster = build_cluster(nodes, seed)
    all_names = [n.name for n in cluster]
    out: dict[str, Any] = {"nodes": nodes, "pods_per_measure": pods, "in_process": {}, "http": {}}
    for count in name_counts:
        rng = random.Random(seed + count)

        def names_for(count: int = count, rng: random.Random = rng) -> list[str]:
            return all_names if count >= len(all_names) else rng.sample(all_names, count)

        for kind in ("in_process", "http"):
            cache = NRTCache()
            for nrt in cluster:
                cache.upsert(nrt)
            core = ExtenderCore(cache)
            if kind == "in_process":
                out[kind][count] = _measure(_in_process(core), names_for, pods, rng)
                continue
            server = ExtenderServer(core, ("127.0.0.1", 0))
            server.start()
            try:
                client = _Client(server.address)
                out[kind][count] = _measure(client.step, names_for, pods, rng)
            finally:
                server.stop()
    cache = NRTCache()
    for nrt in cluster:
        cache.upsert(nrt)
    server = ExtenderServer(ExtenderCore(cache), ("127.0.0.1", 0))
    server.start()
    try:
        rng = random.Random(seed)
        count = min(name_counts)
        out["sustained"] = _sustained(
            server.address,
            lambda: rng.sample(all_names, min(count, len(all_names))),
            clients,
            sustained_s,
            max_pods=100_000,
        )
        out["sustained"]["node_names"] = count
    finally:
        server.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
