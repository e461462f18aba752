"""``topolet discover``: this machine's topology (or a snapshot's) as a tree, JSON, dot or PNG.

The topology is read by :func:`topology.sysfs.discover` from ``<root>/sys`` and
``<root>/proc``; ``--root`` points it at a captured tree such as an hwloc snapshot.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from topolet.cli import common_options
from topology.export import topology_to_dict, topology_to_dot
from topology.model import Topology
from topology.sysfs import discover

__all__ = ["FORMATS", "register", "run"]

log = logging.getLogger(__name__)

FORMATS = ("tree", "json", "dot", "png")
#: Where ``--format png`` writes when no ``--output`` is given.
DEFAULT_PNG = Path("topology.png")

_HELP = "show the CPU/NUMA/cache/PCI topology of this machine or of a sysfs snapshot"
_DESCRIPTION = """\
Read the topology from <root>/sys and <root>/proc and print it.

formats:
  tree  packages, NUMA nodes (memory, hugepages), L3 groups, cores and threads,
        GPUs/NICs/NVMe under their NUMA node (default)
  json  the stable topolet.topology/v1 document (docs/topology-json.md)
  dot   Graphviz dot text of the topology graph
  png   a drawing of the topology graph (written to --output, default topology.png)"""


def register(subparsers: Any) -> None:
    """Add the ``discover`` subcommand to *subparsers*."""
    p = subparsers.add_parser(
        "discover",
        parents=[common_options()],
        help=_HELP,
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="directory holding sys/ and proc/ (a captured snapshot); default: /",
    )
    p.add_argument("--format", choices=FORMATS, default="tree", help="output format (default: tree)")
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of standard output"
    )
    p.set_defaults(func=run)


def render(topo: Topology, fmt: str) -> str:
    """The text of *topo* in format *fmt* (``tree``, ``json`` or ``dot``)."""
    if fmt == "json":
        return json.dumps(topology_to_dict(topo), indent=2) + "\n"
    if fmt == "dot":
        return topology_to_dot(topo)
    from topolet.render_tree import tree_text

    return tree_text(topo)


def run(args: argparse.Namespace) -> int:
    """Discover, render, write. Returns the exit code."""
    log.info("reading the topology under %s", args.root)
    topo = discover(args.root)
    log.info("found %d CPUs in %d NUMA nodes", topo.num_cpus, topo.num_numa_nodes)
    output: Path | None = args.output
    if args.format == "png":
        from topolet.render_png import render_png

        path = render_png(topo, output or DEFAULT_PNG)
        print(f"wrote {path}")
        return 0
    if output is None and args.format == "tree":
        from rich.console import Console

        from topolet.render_tree import render_tree

        Console().print(render_tree(topo))
        return 0
    text = render(topo, args.format)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        log.info("wrote %s", output)
    return 0
