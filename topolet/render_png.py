"""The ``png`` format of ``topolet discover``: ``topo.graph()`` drawn with matplotlib.

The layout is a layered tree computed here (no Graphviz): a node's depth is its distance
from the machine along containment and attachment edges, leaves are spread left to right
in depth-first order and every parent is centred above its children. NUMA distance
edges are drawn as faint arcs on top. A bare matplotlib ``Figure`` renders with Agg, so no
display and no pyplot state are involved.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from topology.model import Topology

__all__ = ["hierarchy_layout", "render_png"]

_COLOURS: Mapping[str, str] = {
    "machine": "#bbbbbb",
    "package": "#87cefa",
    "numa": "#98fb98",
    "l3": "#f0e68c",
    "core": "#ffa07a",
    "cpu": "#ffffff",
    "pci": "#dda0dd",
}
_TREE_EDGES = frozenset({"contains", "attached"})
_ROOT: Hashable = ("machine", 0)
#: Horizontal room of a PCI leaf, in CPU-leaf units (its label is a full bus address).
_PCI_WIDTH = 3.0
#: Above this many graph nodes, CPUs are drawn as dots and labels lose their cpu-lists.
_CROWDED = 120
#: NUMA distance arcs are left out above this many (8 nodes all to all), they would hide the tree.
_MAX_DISTANCE_ARCS = 28


def _sort_key(node: Hashable) -> tuple[str, str]:
    if isinstance(node, tuple) and len(node) == 2:
        ident = node[1]
        return (str(node[0]), f"{ident:012d}" if isinstance(ident, int) else str(ident))
    return ("", str(node))


def _children(g: nx.Graph) -> dict[Hashable, list[Hashable]]:
    """A spanning tree of the containment/attachment edges, breadth first from the machine."""
    tree: dict[Hashable, list[Hashable]] = {}
    seen = {_ROOT}
    frontier = [_ROOT]
    while frontier:
        nxt: list[Hashable] = []
        for node in frontier:
            kids = sorted(
                (
                    n
                    for n in g.neighbors(node)
                    if n not in seen and g.edges[node, n].get("kind") in _TREE_EDGES
                ),
                key=_sort_key,
            )
            seen.update(kids)
            tree[node] = kids
            nxt.extend(kids)
        frontier = nxt
    # Anything not reachable (should not happen) hangs under the machine.
    stray = sorted((n for n in g.nodes if n not in seen), key=_sort_key)
    tree.setdefault(_ROOT, []).extend(stray)
    for n in stray:
        tree.setdefault(n, [])
    return tree


def hierarchy_layout(g: nx.Graph) -> dict[Hashable, tuple[float, float]]:
    """Positions ``{node: (x, y)}``: y = -depth, leaves left to right one unit apart (PCI
    leaves, whose labels are long, take :data:`_PCI_WIDTH` units), parents centred."""
    tree = _children(g)
    pos: dict[Hashable, tuple[float, float]] = {}
    next_leaf = 0.0
    # Iterative post-order walk: deep trees must not hit the recursion limit.
    stack: list[tuple[Hashable, int, bool]] = [(_ROOT, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        kids = tree.get(node, [])
        if not kids:
            span = _PCI_WIDTH if g.nodes[node].get("kind") == "pci" else 1.0
            pos[node] = (next_leaf + (span - 1.0) / 2.0, -float(depth))
            next_leaf += span
        elif done:
            xs = [pos[k][0] for k in kids]
            pos[node] = ((min(xs) + max(xs)) / 2.0, -float(depth))
        else:
            stack.append((node, depth, True))
            stack.extend((k, depth + 1, False) for k in reversed(kids))
    return pos


def _label(attrs: Mapping[str, Any], crowded: bool) -> str:
    label = str(attrs.get("label", ""))
    if attrs.get("kind") == "cpu":
        return label.removeprefix("CPU ")
    if not crowded and attrs.get("cpus"):
        label += f"\n{attrs['cpus']}"
    if attrs.get("gpu"):
        label += "\nGPU"
    return label


def render_png(topo: Topology, path: Path | str, *, dpi: int = 100) -> Path:
    """Draw *topo* into the PNG file *path* and return the path."""
    g = topo.graph()
    pos = hierarchy_layout(g)
    leaves = 1 + max(x for x, _ in pos.values())  # leaves sit one unit apart from x = 0
    width = min(max(6.0, 0.4 * leaves), 120.0)
    depth = 1 - min(y for _, y in pos.values())
    # A bare Figure renders with Agg and touches no pyplot/global backend state.
    fig = Figure(figsize=(width, max(3.0, 1.3 * depth)), layout="tight")
    ax = fig.subplots()
    _draw(ax, g, pos, crowded=len(pos) > _CROWDED)
    ax.set_title(
        f"{topo.num_cpus} CPUs · {topo.num_cores} cores · {topo.num_sockets} packages · "
        f"{topo.num_numa_nodes} NUMA nodes"
    )
    ax.axis("off")
    out = Path(path)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def _draw(ax: Any, g: nx.Graph, pos: Mapping[Hashable, tuple[float, float]], *, crowded: bool) -> None:
    _draw_edges(ax, g, pos)
    fontsize = 5 if crowded else 7
    if crowded:
        cpus = [pos[n] for n, kind in g.nodes(data="kind") if kind == "cpu"]
        ax.scatter([x for x, _ in cpus], [y for _, y in cpus], s=6, c="#333333", zorder=2)
    for node, attrs in g.nodes(data=True):
        if crowded and attrs.get("kind") == "cpu":
            continue
        x, y = pos[node]
        colour = _COLOURS.get(str(attrs.get("kind")), "#ffffff")
        ax.text(
            x,
            y,
            _label(attrs, crowded),
            ha="center",
            va="center",
            fontsize=fontsize,
            zorder=2,
            bbox={
                "boxstyle": "round,pad=0.25",
                "facecolor": colour,
                "edgecolor": "#555555",
                "linewidth": 0.5,
            },
        )
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)


def _draw_edges(ax: Any, g: nx.Graph, pos: Mapping[Hashable, tuple[float, float]]) -> None:
    """Tree edges as two line collections; NUMA distance arcs only while they stay readable."""
    segments: dict[str, list[list[tuple[float, float]]]] = {"solid": [], "dashed": []}
    distances = []
    for a, b, kind in g.edges(data="kind"):
        if kind == "distance":
            distances.append((pos[a], pos[b]))
        else:
            segments["dashed" if kind == "attached" else "solid"].append([pos[a], pos[b]])
    for style, segs in segments.items():
        ax.add_collection(LineCollection(segs, colors="#888888", linewidths=0.6, linestyles=style, zorder=1))
    if len(distances) > _MAX_DISTANCE_ARCS:
        return
    for (x1, y1), (x2, y2) in distances:
        ax.annotate(
            "",
            xy=(x2, y2),
            xytext=(x1, y1),
            arrowprops={
                "arrowstyle": "-",
                "color": "#cc8888",
                "alpha": 0.4,
                "connectionstyle": "arc3,rad=0.3",
                "linestyle": "dotted",
            },
        )
