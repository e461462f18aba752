"""The real kube-scheduler calling topolet's extender on a loopback control plane.

Nodes (no kubelet; NRT objects from topolet's publisher, never updated afterwards, so any
accounting between binds is the extender's own reservations): ``wide`` 2 NUMA x 16 CPUs,
``mid`` 4 NUMA x 10 CPUs, ``narrow`` 8 NUMA x 2 CPUs; topology policy single-numa-node.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bench.kube_stack import DEFAULT_DEPLOY, filter_probe, guaranteed_pod, shipped_scheduler_config
from tests.e2e.cluster import E2ECluster
from tests.e2e.polling import NS, delete_pods, events_of, node_of, submit, wait_for

_ids = itertools.count()
SHIPPED = shipped_scheduler_config(DEFAULT_DEPLOY, "127.0.0.1:1", Path("unused"))["extenders"][0]


def _count(cluster: E2ECluster, verb: str) -> float:
    return cluster.extender_metric("topolet_extender_request_duration_seconds_count", {"verb": verb})


def _bound(cluster: E2ECluster) -> float:
    return cluster.extender_metric("topolet_extender_decisions_total", {"verb": "bind", "outcome": "bound"})


class Pods:
    """Names pods uniquely and deletes them after the test."""

    def __init__(self, cluster: E2ECluster) -> None:
        self.cluster, self.names = cluster, list[str]()

    def submit(self, prefix: str, cpus: int, **kw: Any) -> str:
        name = f"{prefix}-{next(_ids)}"
        self.names.append(submit(self.cluster.core, name, cpus, **kw))
        return name


@pytest.fixture
def pods(cluster: E2ECluster) -> Iterator[Pods]:
    p = Pods(cluster)
    yield p
    delete_pods(cluster.core, p.names)
    if cluster.extender is not None:
        cluster.wait_released()


def test_guaranteed_pod_is_bound_through_filter_and_bind_to_the_node_where_one_numa_node_fits(
    cluster: E2ECluster, pods: Pods
) -> None:
    filters, binds = _count(cluster, "filter"), _bound(cluster)
    name = pods.submit("twelve", 12)  # only wide has a NUMA node with 12 CPUs
    node = wait_for(f"{name} bound", lambda: node_of(cluster.core, name))
    assert node == "wide"
    assert _count(cluster, "filter") > filters
    assert _bound(cluster) == binds + 1  # bound by the extender's /bind, not kube-scheduler's binder


def test_two_fitting_nodes_are_prioritized_by_the_extender(cluster: E2ECluster, pods: Pods) -> None:
    prioritizes = _count(cluster, "prioritize")
    name = pods.submit("eight", 8)  # wide and mid fit; narrow's NUMA nodes hold 2 CPUs
    assert wait_for(f"{name} bound", lambda: node_of(cluster.core, name)) in {"wide", "mid"}
    assert _count(cluster, "prioritize") > prioritizes


def test_nodes_kubelet_would_refuse_are_filtered_with_the_reason_in_the_pods_events(
    cluster: E2ECluster, pods: Pods
) -> None:
    # 20 CPUs: wide (32) and mid (40) pass kube-scheduler's own resource fit, but no NUMA
    # node of either holds 20, so kubelet's single-numa-node admission would refuse it.
    name = pods.submit("twenty", 20)

    def failed() -> list[str]:
        return [e for e in events_of(cluster.core, name) if e.startswith("FailedScheduling")]

    message = wait_for(f"a FailedScheduling event of {name}", failed)[-1]
    assert "0/3 nodes are available" in message, message
    assert "1 Insufficient cpu" in message, message  # narrow: kube-scheduler's own check
    # wide and mid: the extender's reason, naming what each NUMA node has
    assert message.count("no single NUMA node has cpu 20") == 2, message
    assert "(node-0: 16, node-1: 16)" in message, message
    assert "(node-0: 10, node-1: 10, node-2: 10, node-3: 10)" in message, message
    assert node_of(cluster.core, name) is None


def test_a_burst_before_any_nrt_update_never_overcommits_a_numa_node(cluster: E2ECluster, pods: Pods) -> None:
    # 6 CPUs each: wide's NUMA nodes hold 2 (4 pods), mid's 1 (4 pods), narrow's none.
    # By node CPU alone, kube-scheduler would place 5 on wide and 6 on mid: all 10.
    names = [pods.submit("burst", 6) for _ in range(10)]

    def placed() -> dict[str, str] | None:
        where = {n: node_of(cluster.core, n) for n in names}
        bound = {n: node for n, node in where.items() if node}
        pending = [n for n in names if n not in bound]
        if len(bound) < 8 or not all(
            any(e.startswith("FailedScheduling") for e in events_of(cluster.core, n)) for n in pending
        ):
            return None
        return {n: str(node) for n, node in bound.items()}

    bound = wait_for("8 bound pods and FailedScheduling for the rest", placed, 90.0)
    per_node = Counter(bound.values())
    assert per_node == {"wide": 4, "mid": 4}, per_node


def test_default_scheduler_pods_never_reach_the_extender(cluster: E2ECluster, pods: Pods) -> None:
    filters, binds = _count(cluster, "filter"), _bound(cluster)
    # The extender would refuse 20 CPUs everywhere; the default scheduler places it by node CPU.
    name = pods.submit("default", 20, scheduler="default-scheduler")
    assert wait_for(f"{name} bound", lambda: node_of(cluster.core, name)) in {"wide", "mid"}
    assert (_count(cluster, "filter"), _bound(cluster)) == (filters, binds)


def test_a_pod_another_scheduler_bound_is_accounted_by_the_extender(cluster: E2ECluster, pods: Pods) -> None:
    """The default scheduler binds a 6-CPU pod to wide. The NRT objects never change here
    (no kubelet), so only the extender's pod watch can count it: kubelet would put it on
    NUMA node 0, leaving (10, 16). Two topolet 11-CPU pods then fit wide's node CPU (6 +
    11 + 11 of 32) but only one fits a NUMA node; without the watch both would be bound."""
    other = f"other-{next(_ids)}"
    body = guaranteed_pod(other, 6, scheduler="default-scheduler")
    del body["spec"]["schedulerName"]
    body["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["wide"]}]}
                ]
            }
        }
    }
    core: Any = cluster.core
    core.create_namespaced_pod(NS, body)
    pods.names.append(other)
    assert wait_for(f"{other} bound", lambda: node_of(cluster.core, other)) == "wide"

    def wide_free() -> str | None:  # the extender's own account of wide, from a probe's reason
        reply = cluster.extender_call("filter", filter_probe(17, ["wide"]))
        reason = str((reply or {}).get("FailedNodes", {}).get("wide", ""))
        return reason if "(node-0: 10, node-1: 16)" in reason else None

    wait_for("the extender to account the default scheduler's pod on wide", wide_free)
    names = [pods.submit("eleven", 11) for _ in range(2)]

    def placed() -> tuple[str, str] | None:
        where = {n: node_of(cluster.core, n) for n in names}
        bound = [n for n, node in where.items() if node]
        pending = [n for n in names if n not in bound]
        if len(bound) != 1 or len(pending) != 1:
            return None
        failed = [e for e in events_of(cluster.core, pending[0]) if e.startswith("FailedScheduling")]
        return (str(where[bound[0]]), failed[-1]) if failed else None

    node, message = wait_for("one 11-CPU pod bound and a FailedScheduling for the other", placed, 90.0)
    assert node == "wide"
    assert "no single NUMA node has cpu 11 (node-0: 10, node-1: 5)" in message, message


def test_a_pod_created_on_its_node_is_accounted_by_the_extender(cluster: E2ECluster, pods: Pods) -> None:
    """A 6-CPU pod created with ``spec.nodeName: wide`` (no scheduler at all) is first seen
    bound by the extender's watch, created after its first list: it is held on wide where
    kubelet would put it, so a probe's reason shows NUMA node 0 at 10 free CPUs."""
    direct = f"direct-{next(_ids)}"
    body = guaranteed_pod(direct, 6, scheduler="default-scheduler")
    del body["spec"]["schedulerName"]
    body["spec"]["nodeName"] = "wide"
    core: Any = cluster.core
    core.create_namespaced_pod(NS, body)
    pods.names.append(direct)

    def wide_free() -> str | None:
        reply = cluster.extender_call("filter", filter_probe(17, ["wide"]))
        reason = str((reply or {}).get("FailedNodes", {}).get("wide", ""))
        return reason if "(node-0: 10, node-1: 16)" in reason else None

    wait_for("the extender to account the pod created on wide", wide_free)


def test_extender_down_then_back(cluster: E2ECluster, pods: Pods) -> None:
    cluster.stop_extender()
    try:
        name = pods.submit("outage", 12)
        if SHIPPED.get("ignorable"):
            # Promised: scheduling goes on without the extender (kube-scheduler binds).
            assert wait_for(f"{name} bound", lambda: node_of(cluster.core, name)) in {"wide", "mid"}
            return

        # Promised (ignorable: false): no placement without the extender, the error is
        # visible on the pod, and it is retried.
        def refused() -> list[str]:
            return [e for e in events_of(cluster.core, name) if "connection refused" in e]

        message = wait_for(f"{name}'s event naming the unreachable extender", refused)[-1]
        assert "/filter" in message, message
        assert node_of(cluster.core, name) is None
    finally:
        cluster.start_extender()
    assert (
        wait_for(f"{name} bound after the extender came back", lambda: node_of(cluster.core, name)) == "wide"
    )


@pytest.mark.skipif(
    not SHIPPED.get("preemptVerb"), reason="the shipped deploy/scheduler config sets no preemptVerb"
)
def test_preemption_goes_through_the_extender(cluster: E2ECluster, pods: Pods) -> None:
    from kubernetes import client

    sched: Any = client.SchedulingV1Api(cluster.api)
    for pc, value in (("e2e-low", 10), ("e2e-high", 1000)):
        try:
            sched.create_priority_class(
                {
                    "metadata": {"name": pc},
                    "value": value,
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                }
            )
        except client.exceptions.ApiException as err:
            if err.status != 409:
                raise
    low = [pods.submit("low", 16, priority_class="e2e-low") for _ in range(2)]  # fill wide's NUMA nodes
    for n in low:
        assert wait_for(f"{n} bound", partial(node_of, cluster.core, n)) == "wide"
    preempts = _count(cluster, "preempt")
    high = pods.submit("high", 16, priority_class="e2e-high")

    def nominated() -> str | None:
        pod: Any = cluster.core.read_namespaced_pod(high, "default")
        node: str | None = pod.status.nominated_node_name
        return node or None

    assert wait_for(f"{high} nominated", nominated, 60.0) == "wide"
    assert _count(cluster, "preempt") > preempts
