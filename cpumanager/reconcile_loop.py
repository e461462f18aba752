"""The periodic safety reconcile: every period, bring the CPU manager in line with what runs.

Pod sources admit and release containers as events arrive; this loop catches what events
missed. Each tick asks every source for its running containers and calls
:meth:`CPUManager.reconcile`, which admits containers it does not know, re-pins cgroups
whose cpuset drifted and releases the state of containers that are gone (kubelet's
``reconcileState`` with ``removeStaleState``, default period 10 s). An error in one tick is
logged and counted; the loop goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from cpumanager.manager import ContainerInfo, CPUManager
from cpumanager.owners import POD

__all__ = ["DEFAULT_PERIOD_S", "PodSource", "ReconcileLoop"]

log = logging.getLogger(__name__)

#: kubelet's ``cpuManagerReconcilePeriod`` default.
DEFAULT_PERIOD_S = 10.0


class PodSource(Protocol):
    """Anything that can list the containers running now. A source may say which owner
    kinds it is the source of (``owner_kinds``; default ``{"pod"}``): only owners of those
    kinds are released when they are not listed."""

    def running(self) -> list[ContainerInfo]: ...


def owner_kinds(source: object) -> frozenset[str]:
    return frozenset(getattr(source, "owner_kinds", frozenset({POD})))


class ReconcileLoop:
    """A daemon thread calling :meth:`tick` every *period_s* seconds.

    >>> loop = ReconcileLoop(manager, [source], period_s=10.0)   # doctest: +SKIP
    >>> loop.start(); ...; loop.stop()                           # doctest: +SKIP
    """

    def __init__(
        self, manager: CPUManager, sources: Sequence[PodSource], period_s: float = DEFAULT_PERIOD_S
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s: expected a positive number of seconds, got {period_s!r}")
        self.manager = manager
        self.sources = list(sources)
        self.period_s = period_s
        self.ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ReconcileLoop:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cpumanager-reconcile", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop and join (within *timeout_s*; a tick in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.tick()

    def tick(self) -> dict[str, int] | None:
        """One reconcile pass over every source. Returns the manager's counts, or None
        when the pass failed (logged and counted)."""
        self.ticks += 1
        try:
            # Listed inside the transaction: a run that ends (and releases) between the
            # listing and the reconcile would otherwise be admitted again from a stale list.
            with self.manager.transaction():
                active: list[ContainerInfo] = []
                kinds: set[str] = set()
                for source in self.sources:
                    active.extend(source.running())
                    kinds |= owner_kinds(source)
                counts = self.manager.reconcile(active, kinds=kinds)
        except Exception:
            log.exception("reconcile pass failed; retrying in %.1fs", self.period_s)
            self.manager.metrics.reconcile_runs.inc()
            self.manager.metrics.reconcile_errors.inc()
            return None
        self.manager.metrics.record_reconcile(counts)
        repaired = {k: v for k, v in counts.items() if v}
        if repaired:
            log.info("reconcile repaired %s", ", ".join(f"{k}={v}" for k, v in repaired.items()))
        return counts
