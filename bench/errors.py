"""Errors of the benchmark suite: one base for this package.

::

    BenchError
    ├── AggressorError          (aggressor) the aggressor workload cannot run
    ├── CertError               (kube_certs) test certificates cannot be made
    ├── ControlPlaneError       (controlplane) the loopback control plane cannot start
    ├── IsolationError          (isolation) the isolation benchmark cannot run
    ├── KernelCheckError        (kernels) a benchmark kernel gave a wrong answer
    ├── PlacementError          (placement) CPUs cannot be pinned for a run
    ├── SnapshotsNotFoundError  (discover) no sysfs snapshots to time discovery on
    ├── StackError              (kube_stack) the Kubernetes stack cannot start
    ├── MixError                (simulate.nodes) a node mix is malformed
    └── TraceError              (simulate.trace) a pod trace is malformed

Each keeps its older built-in base too (``RuntimeError``, ``ValueError``,
``FileNotFoundError``), so existing ``except`` clauses still catch it.
"""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """Base class of the benchmark suite's errors."""
