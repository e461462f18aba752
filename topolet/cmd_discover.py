"""``topolet discover``: this machine's topology (or a snapshot's) as a tree, JSON, dot or PNG.

The topology is read by ``topology.sysfs.discover`` from ``<root>/sys`` and
``<root>/proc``; ``--root`` points it at a captured tree such as an hwloc snapshot. A
root without ``sys/`` whose only folder has one (a snapshot extracted into a folder of its
own name, ``NAME/NAME/sys``) is an error that names the root to use instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from topolet.cli import CommandError, common_options
from topology.export import topology_to_dict, topology_to_dot
from topology.model import Topology
from topology.sysfs import discover

__all__ = ["FORMATS", "register", "run"]

log = logging.getLogger(__name__)

FORMATS = ("tree", "json", "dot", "png", "nrt", "resourceslice")
#: Where ``--format png`` writes when no ``--output`` is given.
DEFAULT_PNG = Path("topology.png")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

_HELP = "show the CPU/NUMA/cache/PCI topology of this machine or of a sysfs snapshot"
_DESCRIPTION = """\
Read the topology from <root>/sys and <root>/proc and print it.

formats:
  tree  packages, NUMA nodes (memory, hugepages), L3 groups, cores and threads,
        GPUs/NICs/NVMe under their NUMA node, then the NUMA distance matrix
        (default; plain text without wrapping when not printed to a terminal)
  json  the stable topolet.topology/v1 document (docs/topology-json.md)
  dot   Graphviz dot text of the topology graph
  png   nested boxes as lstopo draws them: package, NUMA node, L3, core, PU
        numbers, GPUs/NICs at their NUMA node, a legend (written to --output,
        default topology.png)
  nrt   the NodeResourceTopology (v1alpha2) object this node would publish, as YAML:
        one zone node-<N> per NUMA node with cpu, memory, hugepages-* and GPUs
  resourceslice  the resource.k8s.io/v1 ResourceSlice(s) of DRA driver gpu.topolet.io
        this node would publish (docs/dra.md), as YAML"""


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
    nrt = p.add_argument_group("nrt and resourceslice formats")
    nrt.add_argument(
        "--node-name",
        default=None,
        type=_node_name,
        help="node (object/pool) name (default: this host's name)",
    )
    nrt.add_argument(
        "--topology-manager-policy",
        default="none",
        help="kubelet's topology manager policy to advertise (default none, as kubelet)",
    )
    nrt.add_argument(
        "--topology-manager-scope",
        default="container",
        help="kubelet's topology manager scope to advertise (default container, as kubelet)",
    )
    p.set_defaults(func=run)


def _node_name(text: str) -> str:
    """A Kubernetes node name: a DNS subdomain (argparse type)."""
    if not _DNS_SUBDOMAIN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text[:80]!r} is not a node name: expected a DNS subdomain (a-z, 0-9, '-', '.'; at most 253)"
        )
    return text


def gpu_resources(topo: Topology) -> dict[int, dict[str, int]]:
    """GPUs per NUMA node as extended resources (``nvidia.com/gpu``, ``amd.com/gpu``, ...)."""
    names = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "intel": "gpu.intel.com/i915"}
    out: dict[int, dict[str, int]] = {}
    for gpu in topo.gpus():
        node = gpu.kernel_numa_node if gpu.kernel_numa_node is not None else gpu.numa_node
        name = names.get(gpu.vendor_name or "")
        if node is None or name is None or node not in topo.numa_nodes:
            continue
        out.setdefault(node, {}).setdefault(name, 0)
        out[node][name] += 1
    return out


def render_nrt(topo: Topology, args: argparse.Namespace) -> str:
    import socket

    import yaml

    from topology.nrt import build_nrt

    obj = build_nrt(
        topo,
        node_name=args.node_name or socket.gethostname(),
        policy=args.topology_manager_policy,
        scope=args.topology_manager_scope,
        extra_resources=gpu_resources(topo),
    )
    return str(yaml.safe_dump(obj.to_dict(), sort_keys=False))


def render_resourceslices(topo: Topology, node_name: str | None) -> str:
    """The ResourceSlices of this node's pool, as YAML documents."""
    import socket

    import yaml

    from topology.resourceslice import build_resource_slices

    return str(
        yaml.safe_dump_all(
            build_resource_slices(topo, node_name=node_name or socket.gethostname()), sort_keys=False
        )
    )


def render(topo: Topology, fmt: str) -> str:
    """The text of *topo* in format *fmt* (``tree``, ``json`` or ``dot``)."""
    if fmt == "json":
        return json.dumps(topology_to_dict(topo), indent=2) + "\n"
    if fmt == "dot":
        return topology_to_dot(topo)
    from topolet.render_tree import tree_text

    return tree_text(topo)


_MAX_SUBDIRS = 64


def check_root(root: Path) -> None:
    """Raise :class:`CommandError` naming the fix when *root* has no ``sys/`` but a folder
    inside it does (an extracted snapshot's own top folder)."""
    if (root / "sys").is_dir() or not root.is_dir():
        return
    inner = []
    for i, child in enumerate(root.iterdir()):
        if i >= _MAX_SUBDIRS:
            break
        if child.is_dir() and (child / "sys").is_dir():
            inner.append(child)
    if len(inner) == 1:
        raise CommandError(
            f"--root {root}: no sys/ there, but {inner[0]}/sys exists; "
            f"use --root {inner[0]} (the snapshot's own top folder)"
        )


def run(args: argparse.Namespace) -> int:
    """Discover, render, write. Returns the exit code."""
    log.info("reading the topology under %s", args.root)
    check_root(args.root)
    topo = discover(args.root)
    log.info("found %d CPUs in %d NUMA nodes", topo.num_cpus, topo.num_numa_nodes)
    if args.root == Path("/"):  # NVML speaks for this machine only, never for a snapshot
        from deviceplugin.nvml_info import with_live_nvml

        topo = with_live_nvml(topo)
    output: Path | None = args.output
    if args.format == "png":
        from topolet.render_png import render_png

        path = render_png(topo, output or DEFAULT_PNG)
        print(f"wrote {path}")
        return 0
    if output is None and args.format == "tree":
        from topolet.render_tree import print_tree

        print_tree(topo)
        return 0
    if args.format == "resourceslice":
        text = render_resourceslices(topo, args.node_name)
    else:
        text = render_nrt(topo, args) if args.format == "nrt" else render(topo, args.format)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        log.info("wrote %s", output)
    return 0
