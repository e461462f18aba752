"""Bounded readers of API-object fields (pure): a name, a list, an object.

Each reader checks one field of a JSON object as the API server sends it and raises the
caller's error, built by a :data:`Fail` factory from the field's path, the accepted form
and the value shown (its ``repr``, cut to 80 characters), so a pod's fields fail as a
pod error and a ResourceClaim's as a claim error, with the same wording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MAX_NAME", "Fail", "bounded_list", "bounded_map", "bounded_name"]

#: The longest name read (a DNS subdomain, the longest Kubernetes object name).
MAX_NAME = 253
_SHOWN = 80

#: ``fail(field, expected, shown)`` → the caller's error for one malformed field.
Fail = Callable[[str, str, str], Exception]


def _shown(given: object) -> str:
    shown = repr(given)
    return shown if len(shown) <= _SHOWN else shown[: _SHOWN - 3] + "..."


def bounded_name(value: object, where: str, fail: Fail, *, optional: bool = False) -> str:
    """*value* when it is a string of 1-:data:`MAX_NAME` characters ("" for a missing
    optional one)."""
    if value is None and optional:
        return ""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise fail(where, f"a name of 1-{MAX_NAME} characters", _shown(value))
    return value


def bounded_list(value: object, where: str, limit: int, fail: Fail) -> list[Any]:
    """*value* when it is a list of at most *limit* entries ([] when missing)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(where, "a list", _shown(value))
    if len(value) > limit:
        raise fail(where, f"at most {limit} entries", _shown(f"{len(value)} entries"))
    return value


def bounded_map(value: object, where: str, fail: Fail) -> Mapping[str, Any]:
    """*value* when it is an object ({} when missing)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(where, "an object", _shown(value))
    return value
