"""Errors of the scheduler package: one hierarchy for this boundary.

The HTTP extender maps :class:`PodSpecError` to a 400 reply and :class:`ConfigError`
to a refusal to start; neither inherits from any HTTP or Kubernetes client type, so
the pure core stays free of them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "PodSpecError", "SchedulerError"]


class SchedulerError(Exception):
    """Base class of scheduler errors."""


class PodSpecError(SchedulerError, ValueError):
    """A pod object is malformed. ``field`` is the JSON path, ``expected`` the accepted form."""

    def __init__(self, field: str, expected: str, given: object = None) -> None:
        self.field = field
        self.expected = expected
        got = "" if given is None else f", got {given!r}"
        super().__init__(f"pod {field}: expected {expected}{got}")


class ConfigError(SchedulerError, ValueError):
    """Scheduler configuration is invalid (an unknown strategy name, a bad weight)."""
