"""``topolet simulate``: what topology-aware scheduling buys on a cluster, in memory.

An in-memory cluster of real machine topologies (:mod:`~bench.simulate.nodes`), each
with a kubelet model running the real static CPU manager and the shared topology-manager
merge under ``single-numa-node`` (:mod:`~bench.simulate.kubelet`), receives a pod trace
(:mod:`~bench.simulate.trace`). Two schedulers place it (:mod:`~bench.simulate.placement`):
topolet's extender core over live NodeResourceTopology data, and a topology-blind
kube-scheduler. The event loop (:mod:`~bench.simulate.engine`) counts admissions and
TopologyAffinityErrors; an LP relaxation (:mod:`~bench.simulate.lpbound`) bounds what any
scheduler could admit; :mod:`~bench.simulate.report` writes the table, JSON and plots.

>>> from bench.simulate import QUICK, run
>>> report = run(QUICK)                              # doctest: +SKIP
>>> report["schedulers"]["topolet"]["topology_affinity_errors"]   # doctest: +SKIP
0
"""

from bench.simulate.runner import QUICK, SimConfig, build_cluster, run

__all__ = ["QUICK", "SimConfig", "build_cluster", "run"]
