"""The ``png`` format of ``topolet discover``: the machine drawn as ``lstopo`` draws it.

Nested boxes: package ⊃ NUMA node ⊃ L3 ⊃ core ⊃ PU (each PU box shows its CPU number),
with GPUs, NICs, NVMe drives and accelerators as boxes inside the NUMA node (or package)
they are attached to, and a legend. The nesting is the tree of ``topolet discover``
(:func:`topolet.render_tree.object_tree`), so machines that do not nest cleanly (NUMA
nodes inside packages or the other way round, no L3) are drawn as they are.

Layout: every box lays its children out left to right and wraps them into rows, aiming
at a box about twice as wide as high; the machine wraps its packages into rows no wider
than a screen. One layout unit is one pixel at the default 100 dpi. A bare matplotlib
``Figure`` renders with Agg: no display, no pyplot state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from topolet.render_tree import TreeObject, notable_devices, object_tree
from topology.model import Topology

__all__ = ["Box", "box_layout", "render_png"]

_PAD, _HEADER, _GAP = 4.0, 13.0, 4.0
_PU_W, _PU_H = 24.0, 14.0
_DEV_W, _DEV_H = 120.0, 24.0
#: The machine's rows of packages are at most this wide (pixels at 100 dpi): a screen.
_SCREEN = 1800.0
_MACHINE, _PACKAGE, _NUMA, _L3, _CORE, _DEVICE = range(6)
_STYLE: Mapping[int, tuple[str, str]] = {
    _MACHINE: ("#f4f4f4", "Machine"),
    _PACKAGE: ("#dfe8f5", "Package"),
    _NUMA: ("#d8f0d0", "NUMA node"),
    _L3: ("#fbf3c8", "L3 cache"),
    _CORE: ("#cfcfcf", "Core"),
    _DEVICE: ("#e8d6f0", "GPU / NIC / NVMe"),
}
_PU_COLOUR, _ISOLATED_COLOUR = "#ffffff", "#f4c2c2"
_GIB = 1024**3


@dataclass(eq=False)
class Box:
    """A placed box: position of its top-left corner (y grows downwards), size, what it is."""

    rank: int
    label: str
    w: float
    h: float
    x: float = 0.0
    y: float = 0.0
    children: list[Box] = field(default_factory=list)
    pus: list[int] = field(default_factory=list)
    """CPU numbers drawn as PU boxes (cores and loose CPUs)."""


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return ""
    return f"{nbytes / _GIB:.0f} GiB" if nbytes >= _GIB else f"{nbytes / 1024**2:.0f} MiB"


def _label(topo: Topology, obj: TreeObject) -> str:
    ident = obj.key[1]
    if obj.rank == _PACKAGE:
        return f"Package {ident}"
    if obj.rank == _NUMA:
        mem = _size(topo.numa_nodes[ident].memory_bytes)
        return f"NUMA {ident}" + (f" ({mem})" if mem else "")
    if obj.rank == _L3:
        g = topo.l3_groups[ident]
        return f"L{g.level}" + (
            f" ({_size(g.size_bytes)})" if g.size_bytes and g.size_bytes >= 1024**2 else ""
        )
    if obj.rank == _CORE:
        return f"Core {ident}" if ident in topo.cores and obj.cpus == topo.cores[ident].cpus else "CPU"
    if obj.rank == _DEVICE:
        kind, dev = notable_devices(topo)[ident]
        return f"{kind} {dev.address}"
    return "Machine"


def _flow(children: list[Box], max_w: float) -> tuple[float, float]:
    """Place *children* in rows no wider than *max_w* (inside the padding); returns the
    content width and height."""
    x = y = row_h = width = 0.0
    for c in children:
        if x > 0 and x + c.w > max_w:
            y += row_h + _GAP
            x = row_h = 0.0
        c.x, c.y = x, y
        x += c.w + _GAP
        row_h = max(row_h, c.h)
        width = max(width, x - _GAP)
    return width, y + row_h


def _absolute(box: Box) -> None:
    """Turn the children's positions, relative to their parent's content area, absolute."""
    for c in box.children:
        c.x += box.x + _PAD
        c.y += box.y + _HEADER + _PAD
        _absolute(c)


def _build(topo: Topology, obj: TreeObject) -> Box:
    label = _label(topo, obj)
    if obj.rank == _DEVICE:
        return Box(_DEVICE, label, _DEV_W, _DEV_H)
    if obj.rank == _CORE:
        pus = list(obj.cpus)
        return Box(
            _CORE, label, max(60.0, len(pus) * (_PU_W + 2) + 2 * _PAD), _HEADER + _PU_H + 2 * _PAD, pus=pus
        )
    box = Box(obj.rank, label, 0.0, 0.0, children=[_build(topo, c) for c in obj.children])
    if obj.rank == _MACHINE:
        max_w = _SCREEN
    else:
        area = sum(c.w * c.h for c in box.children)
        widest = max((c.w for c in box.children), default=0.0)
        max_w = max(widest, math.sqrt(2.0 * area) * 1.1)
    content_w, content_h = _flow(box.children, max_w)
    box.w = max(content_w + 2 * _PAD, 7.0 * len(label) + 2 * _PAD)
    box.h = content_h + _HEADER + 2 * _PAD
    return box


def box_layout(topo: Topology) -> Box:
    """The machine box with every object placed inside its parent (absolute positions)."""
    machine = _build(topo, object_tree(topo))
    machine.label = (
        f"Machine · {_plural(topo.num_cpus, 'CPU')}, {_plural(topo.num_cores, 'core')}, "
        f"{_plural(topo.num_sockets, 'package')}, {_plural(topo.num_numa_nodes, 'NUMA node')}"
    )
    machine.w = max(machine.w, 7.0 * len(machine.label) + 2 * _PAD)
    _absolute(machine)
    return machine


def _draw(ax: Any, box: Box, isolated: set[int]) -> None:
    colour = _STYLE[box.rank][0]
    ax.add_patch(
        Rectangle((box.x, box.y), box.w, box.h, facecolor=colour, edgecolor="#555555", linewidth=0.6)
    )
    ax.text(box.x + _PAD, box.y + 2, box.label, fontsize=7, va="top", ha="left", clip_on=True)
    for i, cpu in enumerate(box.pus):
        x = box.x + _PAD + i * (_PU_W + 2)
        y = box.y + _HEADER + _PAD
        face = _ISOLATED_COLOUR if cpu in isolated else _PU_COLOUR
        ax.add_patch(Rectangle((x, y), _PU_W, _PU_H, facecolor=face, edgecolor="#333333", linewidth=0.5))
        ax.text(x + _PU_W / 2, y + _PU_H / 2, str(cpu), fontsize=6, ha="center", va="center")
    for c in box.children:
        _draw(ax, c, isolated)


def render_png(topo: Topology, path: Path | str, *, dpi: int = 100) -> Path:
    """Draw *topo* into the PNG file *path* and return the path."""
    machine = box_layout(topo)
    per_row = max(1, int((machine.w + 2 * _PAD) // 150))
    legend_h = 20.0 + 16.0 * math.ceil(9 / per_row)
    width, height = machine.w + 2 * _PAD, machine.h + legend_h + 2 * _PAD
    fig = Figure(figsize=(width / 100.0, height / 100.0))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-_PAD, machine.w + _PAD)
    ax.set_ylim(machine.h + legend_h + _PAD, -_PAD)
    ax.axis("off")
    _draw(ax, machine, set(topo.isolated_cpus))
    handles = [Patch(facecolor=c, edgecolor="#555555", label=name) for c, name in _STYLE.values()]
    handles.append(Patch(facecolor=_PU_COLOUR, edgecolor="#333333", label="PU (CPU number)"))
    if topo.isolated_cpus:
        handles.append(Patch(facecolor=_ISOLATED_COLOUR, edgecolor="#333333", label="isolated PU"))
    fig.legend(
        handles=handles, loc="lower center", ncol=min(per_row, len(handles)), fontsize=7, frameon=False
    )
    out = Path(path)
    fig.savefig(out, dpi=dpi, format="png")
    return out
