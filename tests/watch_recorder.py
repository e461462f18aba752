"""A :class:`kube.watch.ListWatch` handler that records every event as (type, name)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from kube.watch import WatchEvent

__all__ = ["Recorder"]


class Recorder:
    """The handler: every event as (type, object name)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, event: WatchEvent) -> None:
        with self._lock:
            self.events.append((event.type, event.object["metadata"]["name"]))

    def seen(self, *expected: tuple[str, str]) -> Callable[[], bool]:
        return lambda: all(e in self.events for e in expected)
