"""Several health sources as one: the GPU plugin listens to udev and to NVML at once.

:class:`MergedHealth` is a :class:`~deviceplugin.resources.HealthSource` whose events are
those of its sources, in arrival order (one forwarding thread per source into one
coalescing :class:`~deviceplugin.resources.HealthQueue`). Starting or stopping it starts
or stops every source.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from deviceplugin.resources import HealthEvent, HealthQueue, HealthSource

__all__ = ["MergedHealth"]


class MergedHealth:
    """The union of *sources* (see the module docstring)."""

    def __init__(self, sources: Sequence[HealthSource], *, poll_s: float = 0.2, maxsize: int = 1024) -> None:
        self.sources = tuple(sources)
        self.queue = HealthQueue(maxsize)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._stop.clear()
            for source in self.sources:
                source.start()
                thread = threading.Thread(
                    target=self._forward, args=(source,), daemon=True, name=f"health-{type(source).__name__}"
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        self._stop.set()
        for source in self.sources:
            source.stop()
        for thread in threads:
            thread.join(timeout=self.poll_s + 1)

    def get(self, timeout: float) -> HealthEvent | None:
        return self.queue.get(timeout)

    def _forward(self, source: HealthSource) -> None:
        while not self._stop.is_set():
            event = source.get(self.poll_s)
            if event is not None:
                self.queue.put(event)
