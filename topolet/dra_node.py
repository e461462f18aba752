"""The node agent's DRA driver: the ResourceSlice publisher and the kubelet DRA plugin, wired.

:func:`kube_claim_getter` reads ResourceClaims through
:class:`kube.resources.ResourceClaims`; :class:`DRANode` builds, for this node, the
:class:`~topolet.resourceslice_publisher.ResourceSlicePublisher` (healthy GPUs only) and
the :class:`~deviceplugin.dra.server.DRAPluginServer`, and starts and stops them together.
Its :attr:`DRANode.plugin` tells the node's CPU manager where a prepared claim's GPUs are
(:meth:`~deviceplugin.dra.plugin.DRAPlugin.claim_numa_nodes`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from deviceplugin.dra.plugin import ClaimGetter, DRAPlugin
from deviceplugin.dra.server import PLUGINS_DIR, PLUGINS_REGISTRY, DRAPluginServer
from deviceplugin.gpu import discover_gpus
from topolet.resourceslice_publisher import KubeSliceAPI, ResourceSlicePublisher
from topology.model import Topology
from topology.resourceslice import DRIVER, build_resource_slices

__all__ = ["CDI_DIR", "DRANode", "kube_claim_getter"]

log = logging.getLogger(__name__)

#: Where generated CDI specs go (the runtime's dynamic spec folder).
CDI_DIR = Path("/var/run/cdi")


def kube_claim_getter(api_client: Any) -> ClaimGetter:
    """``get_claim(namespace, name)`` over ``ResourceV1Api`` (the object as a dict)."""
    from kube.resources import ResourceClaims  # the client library loads only when used

    return ResourceClaims(api_client).get


class DRANode:
    """This node as DRA driver ``gpu.topolet.io`` (see the module docstring).

    ``unhealthy()`` returns the PCI addresses of GPUs to leave out of the slice now; call
    :meth:`check_health` often (the node agent does, every tick).
    """

    def __init__(
        self,
        topo: Topology,
        *,
        node_name: str,
        api_client: Any,
        root: Path | str = "/",
        unhealthy: Callable[[], Collection[str]] = frozenset,
        cdi_dir: Path = CDI_DIR,
        registry_dir: Path = PLUGINS_REGISTRY,
        plugin_dir: Path = PLUGINS_DIR / DRIVER,
        resync_s: float = 60.0,
    ) -> None:
        self.topo, self.node_name, self.unhealthy = topo, node_name, unhealthy
        self._last_unhealthy: frozenset[str] = frozenset()
        self.publisher = ResourceSlicePublisher(
            KubeSliceAPI(api_client), self.slices, node_name=node_name, resync_s=resync_s
        )
        self.plugin = DRAPlugin(
            discover_gpus(topo, root=root),
            node_name=node_name,
            get_claim=kube_claim_getter(api_client),
            cdi_dir=cdi_dir,
            checkpoint_path=plugin_dir / "checkpoint.json",
            root=root,
        )
        self.server = DRAPluginServer(self.plugin, registry_dir=registry_dir, plugin_dir=plugin_dir)

    def slices(self) -> list[dict[str, Any]]:
        return build_resource_slices(self.topo, node_name=self.node_name, unhealthy=self.unhealthy())

    def check_health(self) -> None:
        """Republish when the set of unhealthy GPUs changed since the last check (cheap)."""
        now = frozenset(self.unhealthy())
        if now != self._last_unhealthy:
            self._last_unhealthy = now
            self.publisher.trigger()

    def start(self) -> None:
        self.server.start()
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()
        self.server.stop()
