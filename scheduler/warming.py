"""Idle-time filling of the extender's per-shape result tables.

The first requests of a new pod shape fill its tables only for the rows they name (plus
:data:`~scheduler.decide.EXTRA_REFRESH` others), so for a while later requests naming
other nodes still meet hundreds of stale rows and pay for them (about 5 ms at 5,000
nodes). kube-scheduler leaves the extender idle between its calls (its own filter and
score run in between), so :class:`IdleWarmer` spends that time: a thread that, once no
request has been in flight for *idle_s*, calls :meth:`ExtenderCore.warm
<scheduler.service.ExtenderCore.warm>` one small step at a time until nothing is left. A
request arriving during a step waits for that step at most (``WARM_ROWS`` rows, about
0.5 ms here): the thread sleeps between steps, which hands the interpreter lock to it.

>>> warmer = IdleWarmer(core.warm, core.warming_pending)  # doctest: +SKIP
>>> warmer.start(); warmer.begin(); ...; warmer.end()     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["IDLE_S", "IdleWarmer"]

log = logging.getLogger(__name__)

#: No request for this long counts as idle.
IDLE_S = 0.001


class IdleWarmer:
    """Calls *step* (one bounded step; returns whether work is left) while the server is
    idle; *pending* says cheaply whether there is work at all."""

    def __init__(
        self, step: Callable[[], bool], pending: Callable[[], bool], *, idle_s: float = IDLE_S
    ) -> None:
        self._step = step
        self._pending = pending
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Steps run so far (for tests and metrics).
        self.steps = 0

    def begin(self) -> None:
        """A request started."""
        with self._lock:
            self._in_flight += 1

    def end(self) -> None:
        """A request finished (wakes the thread when there is work to do)."""
        with self._lock:
            self._in_flight -= 1
            self._last = time.monotonic()
        if self._pending():
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="extender-warming", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _quiet_for(self) -> float:
        """Seconds since the last request ended (0 while one is in flight)."""
        with self._lock:
            return 0.0 if self._in_flight else time.monotonic() - self._last

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            more = self._pending()
            while more and not self._stop.is_set():
                quiet = self._quiet_for()
                if quiet < self._idle_s:
                    time.sleep(self._idle_s - quiet)
                    continue
                try:
                    more = self._step()
                except Exception:  # a failed step must not end the thread; the request path recomputes
                    log.exception("idle-time table filling failed; requests fill the tables instead")
                    more = False
                self.steps += 1
                # Give the interpreter lock away between steps: a request that arrived
                # during the step is waiting for it (else it waits a whole switch interval).
                time.sleep(self._idle_s)
