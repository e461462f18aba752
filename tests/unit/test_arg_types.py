"""The shared argparse value types: what they accept and how they refuse."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from topolet.arg_types import fraction, positive_float, positive_int


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (positive_int, "1", 1),
        (positive_int, "5000", 5000),
        (positive_float, "0.05", 0.05),
        (positive_float, "2", 2.0),
        (fraction, "1", 1.0),
        (fraction, "0.4", 0.4),
    ],
    ids=["int-1", "int-5000", "float-small", "float-int-text", "fraction-1", "fraction-0.4"],
)
def test_accepted(parse: Callable[[str], float], text: str, value: float) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "form"),
    [
        (positive_int, "0", "a positive integer"),
        (positive_int, "-3", "a positive integer"),
        (positive_int, "1.5", "a positive integer"),
        (positive_int, "x", "a positive integer"),
        (positive_float, "0", "a positive number"),
        (positive_float, "nan", "a positive number"),
        (fraction, "0", "a number in (0, 1]"),
        (fraction, "1.01", "a number in (0, 1]"),
    ],
    ids=[
        "int-0",
        "int-negative",
        "int-decimal",
        "int-word",
        "float-0",
        "float-nan",
        "fraction-0",
        "fraction-over-1",
    ],
)
def test_refused_with_the_accepted_form(parse: Callable[[str], float], text: str, form: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(text)
    assert str(refused.value) == f"expected {form}, got {text!r}"
