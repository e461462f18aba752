"""Errors of the scheduler package: one hierarchy for this boundary.

::

    SchedulerError
    ├── InputError             what the scheduler was given is malformed (HTTP 400)
    │   ├── WireError          an extender request body (scheduler.wire)
    │   └── PodSpecError       a pod object, wherever it came from
    ├── SchedulerConfigError   the scheduler's own configuration (refuses to start)
    ├── BindError              a bind the API server refused (scheduler.service)
    └── SourceError            an NRT / pod source that cannot be read (scheduler.sources)

The HTTP extender answers 400 for an :class:`InputError` only. Anything else raised
while answering a request (a ``ValueError``, ``KeyError`` ... from the core) is a bug of
the extender: it answers 500 and logs the traceback. None of these inherits from an
HTTP or Kubernetes client type, so the pure core stays free of them.
"""

from __future__ import annotations

__all__ = ["InputError", "PodSpecError", "SchedulerConfigError", "SchedulerError"]


class SchedulerError(Exception):
    """Base class of scheduler errors."""


class InputError(SchedulerError, ValueError):
    """Input the scheduler was handed (a request body, a pod object) is malformed; the
    message names the field and the accepted form. The extender answers it with 400."""


class PodSpecError(InputError):
    """A pod object is malformed. ``field`` is the JSON path, ``expected`` the accepted form."""

    def __init__(self, field: str, expected: str, given: object = None) -> None:
        self.field = field
        self.expected = expected
        got = "" if given is None else f", got {given!r}"
        super().__init__(f"pod {field}: expected {expected}{got}")


class SchedulerConfigError(SchedulerError, ValueError):
    """Scheduler configuration is invalid (an unknown strategy name, a bad weight)."""
