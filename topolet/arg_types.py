"""argparse value types shared by the subcommands: each names the accepted form when it
refuses a value (argparse turns that into a usage error, exit code 2).

Numbers are read strictly and bounded: plain decimal digits only (no ``1_000``, no
``Infinity`` or ``NaN``, no ``1e999``), at most 18 digits, so no flag value can make a
command spin or allocate.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["fraction", "non_negative_int", "positive_float", "positive_int"]

N = TypeVar("N", int, float)

_INT = re.compile(r"\+?[0-9]{1,18}")
_FLOAT = re.compile(r"\+?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})(?:[eE][+-]?[0-9]{1,3})?")
_QUOTE_CHARS = 60


def _strict_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _strict_float(text: str) -> float:
    if not _FLOAT.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _QUOTE_CHARS else f"{text[:_QUOTE_CHARS]!r}... ({len(text)} characters)"


def _checked(convert: Callable[[str], N], ok: Callable[[N], bool], form: str) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {form}, got {_shown(text)}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {form}, got {_shown(text)}")
        return value

    return parse


#: An integer >= 1.
positive_int = _checked(_strict_int, lambda v: v >= 1, "a positive integer")
#: An integer >= 0.
non_negative_int = _checked(_strict_int, lambda v: v >= 0, "a non-negative integer")
#: A finite number > 0.
positive_float = _checked(_strict_float, lambda v: v > 0, "a positive number")
#: A number in (0, 1].
fraction = _checked(_strict_float, lambda v: 0 < v <= 1, "a number in (0, 1]")
