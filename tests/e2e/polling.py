"""Small polling helpers over the official client for the e2e tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from bench.kube_stack import guaranteed_pod

__all__ = ["delete_pods", "events_of", "node_of", "submit", "wait_for"]

T = TypeVar("T")
NS = "default"


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 60.0, every_s: float = 0.3) -> T:
    """Poll *probe* until it returns something truthy; fail naming *what* after *timeout_s*."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def submit(core: Any, name: str, cpus: int, *, scheduler: str = "topolet-scheduler", **kw: Any) -> str:
    body = guaranteed_pod(name, cpus, scheduler=scheduler, **kw)
    if scheduler == "default-scheduler":
        del body["spec"]["schedulerName"]  # what a pod that names no scheduler looks like
    core.create_namespaced_pod(NS, body)
    return name


def node_of(core: Any, name: str) -> str | None:
    node: str | None = core.read_namespaced_pod(name, NS).spec.node_name
    return node or None


def events_of(core: Any, name: str) -> list[str]:
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
    return [f"{e.reason}: {e.message}" for e in events]


def delete_pods(core: Any, names: Iterable[str]) -> None:
    """Delete at once (no kubelet will ever confirm a graceful deletion) and wait until gone."""
    names = list(names)
    for n in names:
        try:
            core.delete_namespaced_pod(n, NS, grace_period_seconds=0)
        except ApiException as err:
            if err.status != 404:
                raise
    left = set(names)

    def gone() -> bool:
        left.intersection_update(p.metadata.name for p in core.list_namespaced_pod(NS).items)
        return not left

    wait_for(f"pods {sorted(left)} to be deleted", gone, 30.0)
