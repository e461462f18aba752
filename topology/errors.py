"""Errors raised by topology discovery. One hierarchy for this boundary."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DiscoveryError", "TopologyError"]


class TopologyError(Exception):
    """Base class of topology errors."""


class DiscoveryError(TopologyError):
    """A file of the sysfs/procfs tree is missing or malformed.

    ``path`` names the file, ``expected`` says what it should have held.
    """

    def __init__(self, path: Path | str, expected: str, detail: str | None = None) -> None:
        self.path = Path(path)
        self.expected = expected
        msg = f"{self.path}: expected {expected}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
