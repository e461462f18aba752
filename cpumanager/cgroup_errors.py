"""Errors of the cgroup enforcement adapter (part of the cpumanager error hierarchy)."""

from __future__ import annotations

from pathlib import Path

from cpumanager.errors import CPUManagerError

__all__ = ["CgroupError", "InvalidIdentifierError"]


class InvalidIdentifierError(CPUManagerError, ValueError):
    """An id that would reach a filesystem path is malformed (or escapes its root)."""

    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"invalid {field} {value!r}: expected {accepted}")


class CgroupError(CPUManagerError):
    """A cgroup file could not be written."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(f"{path}: {detail}")
