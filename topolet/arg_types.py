"""argparse value types shared by the subcommands: each names the accepted form when it
refuses a value (argparse turns that into a usage error, exit code 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

__all__ = ["fraction", "positive_float", "positive_int"]

N = TypeVar("N", int, float)


def _checked(convert: Callable[[str], N], ok: Callable[[N], bool], form: str) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}")
        return value

    return parse


#: An integer >= 1.
positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
#: A number > 0.
positive_float = _checked(float, lambda v: v > 0, "a positive number")
#: A number in (0, 1].
fraction = _checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
