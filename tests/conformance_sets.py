"""Where the conformance sets live, and their cases merged from every place that holds them.

The sets (``hwloc``, ``kubelet``, ``gpualloc``, ``nrt``) are vendored under
``tests/conformance_data/<set>/`` (see ``tests/conformance_data/PROVENANCE``), so the tests run
from a clone alone. When a directory ``conformance/<set>/`` exists next to the repository
(``<repo>/../shared/conformance/<set>/``), its cases are added too, so cases added there run
with no code change.

Merging is a union, deterministic and order-preserving: the vendored cases come first, then
every case of the outer set whose key is new. A case's key is its ``id``, else its ``name``,
else its whole canonical JSON text. Non-list values (``meta``, ``numa_info``) come from the
vendored copy.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["OUTER_DIR", "VENDORED_DIR", "case_key", "load_cases", "merge_cases", "set_dirs"]

_REPO = Path(__file__).resolve().parents[1]
#: The conformance data kept in the repository.
VENDORED_DIR = _REPO / "tests" / "conformance_data"
#: The optional outer conformance directory beside the repository.
OUTER_DIR = _REPO.parent / "shared" / "conformance"


def set_dirs(name: str) -> list[Path]:
    """The directories holding set *name*: the vendored one, then the outer one if present."""
    dirs = [VENDORED_DIR / name]
    outer = OUTER_DIR / name
    if outer.is_dir() and outer.resolve() != dirs[0].resolve():
        dirs.append(outer)
    return dirs


def case_key(case: Any) -> str:
    """The identity of one case: ``id:…``, ``name:…`` or its canonical JSON text."""
    if isinstance(case, dict):
        if "id" in case:
            return f"id:{case['id']}"
        if "name" in case:
            return f"name:{case['name']}"
    return "json:" + json.dumps(case, sort_keys=True, separators=(",", ":"))


def merge_cases(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The union of several ``cases.json`` documents (first document first, by :func:`case_key`)."""
    merged: dict[str, Any] = {}
    for doc in documents:
        for key, value in doc.items():
            if key not in merged:
                merged[key] = list(value) if isinstance(value, list) else value
            elif isinstance(value, list) and isinstance(merged[key], list):
                seen = {case_key(c) for c in merged[key]}
                for c in value:
                    k = case_key(c)
                    if k not in seen:
                        seen.add(k)
                        merged[key].append(c)
    return merged


@cache
def load_cases(name: str) -> dict[str, Any]:
    """``cases.json`` of set *name*, merged over :func:`set_dirs` (read once; treat as read-only)."""
    docs = []
    for d in set_dirs(name):
        path = d / "cases.json"
        if path.is_file():
            docs.append(json.loads(path.read_text(encoding="utf-8")))
    if not docs:
        raise FileNotFoundError(2, f"no {name} conformance cases", str(VENDORED_DIR / name / "cases.json"))
    return merge_cases(docs)
