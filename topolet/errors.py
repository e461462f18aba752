"""Errors of the composition root (``topolet/``): one base for this package.

::

    TopoletError
    ├── CommandError      a subcommand cannot do what was asked (topolet.cli)
    ├── AgentError        the node agent cannot start (topolet.node_agent)
    └── NodeConfigError   a node configuration key is bad (topolet.node_config)

Errors of the layers below keep their own bases (``TopologyError``, ``CPUManagerError``,
``DevicePluginError``, ``SchedulerError``); ``topolet.cli.main`` prints every one of
them as one line and exits 1.
"""

from __future__ import annotations

__all__ = ["TopoletError"]


class TopoletError(Exception):
    """Base class of the errors raised by the ``topolet`` command and node agent."""
