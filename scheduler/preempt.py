"""The ``preempt`` verb's topology check: would the pod fit once the victims are gone?

kube-scheduler proposes, per node, the pods it would evict. The extender keeps a node
only if, with those victims' NUMA holdings given back, the pod passes the node's
Topology Manager check. A victim's holdings are known when the extender bound it (its
reservation on that node, per NUMA zone); a victim the extender does not know frees
nothing it can place on a zone, as with NodeResourceTopologyMatch's preemption check,
so such a node is kept only if the pod fits without it. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from scheduler.views import NodeView

__all__ = ["Placement", "released_view"]

#: numa id -> resource -> amount.
Placement = Mapping[int, Mapping[str, int]]


def released_view(view: NodeView, placements: Iterable[Placement]) -> NodeView:
    """*view* with every amount of *placements* added back to its zone's ``available``."""
    back: dict[tuple[int, str], int] = {}
    for placement in placements:
        for numa, row in placement.items():
            for name, amount in row.items():
                back[(numa, name)] = back.get((numa, name), 0) + amount
    if not back:
        return view
    zones = []
    for zone in view.nrt.zones:
        zone_numa = zone.numa_id
        if zone_numa is None:
            zones.append(zone)
            continue
        resources = tuple(
            replace(r, available=r.available + back.get((zone_numa, r.name), 0)) for r in zone.resources
        )
        zones.append(replace(zone, resources=resources))
    return NodeView.build(replace(view.nrt, zones=tuple(zones)), -1)
