"""``topolet node``: the node agent (run it as a DaemonSet, or on a machine with ``podSource: standalone``).

It discovers the topology, restores the CPU manager's checkpoint, pins containers (pod
watch or ``topolet run`` records, plus a periodic reconcile), serves the GPU and
exclusive-CPU device plugins to kubelet, publishes the NodeResourceTopology object and
serves /metrics, /healthz and /readyz. Configuration: one YAML file (``--config``; keys
and defaults in docs/node-config.md, all of them printed by ``--print-config``); every
key also has a flag, which overrides the file. SIGTERM or SIGINT: stop accepting, finish
in-flight allocations, checkpoint, remove our sockets, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from cpumanager.errors import CPUManagerError
from deviceplugin.errors import DevicePluginError
from topolet.cli import CommandError, common_options
from topolet.help_text import plain
from topolet.logs import setup_logging
from topolet.node_agent import AgentError, NodeAgent
from topolet.node_config import NodeConfig, NodeConfigError, add_config_flags, flag_overrides
from topology.sysfs import discover

log = logging.getLogger("topolet.node")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "node",
        parents=[common_options()],
        help="run the node agent (CPU pinning, device plugins, NRT publisher, metrics)",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration file (default: none)")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the configuration (defaults, then --config, then flags) as YAML and exit",
    )
    add_config_flags(p)
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace) -> NodeConfig:
    """Defaults, then the ``--config`` file, then the flags."""
    try:
        base = NodeConfig.load(args.config) if args.config is not None else NodeConfig()
        return NodeConfig.from_mapping(flag_overrides(args), base, flags=True)
    except NodeConfigError as e:
        raise CommandError(str(e)) from e


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    setup_logging(config.log_format, getattr(args, "verbose", 0))
    try:  # settings that only the machine can judge, before anything is created
        config.check(discover(config.sysfs_root), source=str(args.config or ""), flags=flag_overrides(args))
    except NodeConfigError as e:
        raise CommandError(str(e)) from e
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda _n, _f: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    agent = NodeAgent(config)
    try:
        try:
            agent.start()
        except (AgentError, CPUManagerError, DevicePluginError, ValueError) as e:
            agent.stop()
            raise CommandError(str(e)) from e
        while not stop.wait(0.5):
            pass
        log.info("signal received; shutting down")
        agent.stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
