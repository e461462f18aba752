"""Log output of the node agent: human-readable lines, or one JSON object per line.

``text``: ``2026-01-02T03:04:05.678Z INFO cpumanager.manager: pinned pod ... to cpus 2-3``.
``json``: ``{"ts": ..., "level": ..., "logger": ..., "msg": ...}`` plus every structured
field passed as ``extra={"pod": ..., "container": ..., "cpus": ...}`` (:data:`FIELDS`), so a
collector can filter pin decisions by pod without parsing the message.

The CPU manager logs its pin decisions with positional arguments; :class:`PinFields`
lifts those arguments into the same fields (pod, container, cpus, mems, shared) for the
messages listed in :data:`PIN_MESSAGES`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

__all__ = ["FIELDS", "PIN_MESSAGES", "JSONFormatter", "PinFields", "TextFormatter", "setup_logging"]

#: Structured fields a record may carry (``extra=``); JSON output copies them as keys.
FIELDS = (
    "pod",
    "namespace",
    "container",
    "cpus",
    "mems",
    "shared",
    "to_pod",
    "to_container",
    "resource",
    "node",
)

#: CPU manager messages that change a pin, and the field each positional argument fills.
PIN_MESSAGES: dict[str, tuple[str, ...]] = {
    "pinned pod %s container %s to cpus %s mems %s": ("pod", "container", "cpus", "mems"),
    "exclusive cpus %s -> pod %s container %s (shared now %s)": ("cpus", "pod", "container", "shared"),
    "released cpus %s of pod %s container %s": ("cpus", "pod", "container"),
    "isolated cpus %s -> pod %s container %s": ("cpus", "pod", "container"),
    "exclusive cpus %s moved from pod %s container %s to pod %s container %s": (
        "cpus",
        "pod",
        "container",
        "to_pod",
        "to_container",
    ),
}


class PinFields(logging.Filter):
    """Copy the arguments of :data:`PIN_MESSAGES` records into structured fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        names = PIN_MESSAGES.get(str(record.msg))
        if names and isinstance(record.args, tuple) and len(record.args) == len(names):
            for name, value in zip(names, record.args, strict=True):
                if not hasattr(record, name):
                    setattr(record, name, "" if value is None else str(value))
        return True


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message>`` and ``key=value`` for structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        lifted = str(record.msg) in PIN_MESSAGES  # the message already says it
        extra = "" if lifted else " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if hasattr(record, k))
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if extra:
            line += f" [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in FIELDS:
            if hasattr(record, key):
                doc[key] = str(getattr(record, key))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(fmt: str, verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Send every log record at INFO (DEBUG with ``verbosity`` ≥ 2) to *stream* (stderr) in
    format *fmt* (``text`` or ``json``), replacing handlers set up earlier."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format: got {fmt!r}, expected text or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(PinFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
