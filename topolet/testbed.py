"""Nodes without a kubelet for a loopback cluster: a Node object plus the NRT object that
topolet's own publisher (:class:`topolet.nrt_publisher.NRTPublisher`) writes for a real
topology, as the node agent would on a fresh node (nothing allocated, nothing reserved).

Used by the end-to-end tests and ``topolet bench scheduler``.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.kube_stack import fake_node
from kube.resources import Nodes, node_resource_topologies
from topolet.nrt_publisher import NRTPublisher, node_nrt
from topology.cpuset import CPUSet
from topology.model import Topology

__all__ = ["DEFAULT_NODE_MEMORY", "add_nodes", "publish_nrt"]

#: Node memory when the topology does not say (bytes).
DEFAULT_NODE_MEMORY = 64 << 30


def publish_nrt(
    api_client: Any,
    name: str,
    topo: Topology,
    *,
    policy: str = "single-numa-node",
    scope: str = "container",
    assignable: CPUSet | None = None,
) -> str:
    """Write node *name*'s NRT object through the publisher; returns its verb
    (``create``, ``replace`` or ``unchanged``)."""
    free = topo.online_cpus if assignable is None else assignable
    publisher = NRTPublisher(
        node_resource_topologies(api_client),
        lambda: node_nrt(
            topo, node_name=name, policy=policy, scope=scope, reserved=CPUSet(), assignable=free
        ),
    )
    return publisher.publish(force=True)


def _memory(topo: Topology) -> int:
    known = [n.memory_bytes for n in topo.numa_nodes.values() if n.memory_bytes]
    return sum(known) if known else DEFAULT_NODE_MEMORY


def add_nodes(
    api_client: Any,
    nodes: Iterable[tuple[str, Topology]],
    *,
    policy: str = "single-numa-node",
    scope: str = "container",
    threads: int = 8,
) -> int:
    """Create a Node object and publish an NRT object for each ``(name, topology)``;
    returns how many. Objects that already exist are replaced by the publisher."""
    node_api = Nodes(api_client)

    def one(item: tuple[str, Topology]) -> None:
        name, topo = item
        node_api.create(fake_node(name, len(topo.online_cpus), _memory(topo)), exist_ok=True)
        publish_nrt(api_client, name, topo, policy=policy, scope=scope)

    items = list(nodes)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, items))
    return len(items)
