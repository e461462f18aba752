"""Kubernetes quantity parsing: exact values, strict syntax, canonical amounts."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology.quantity import QuantityError, format_amount, milli_value, parse_amount, parse_quantity, value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("4", Fraction(4), id="plain-integer"),
        pytest.param("0", Fraction(0), id="zero"),
        pytest.param("500m", Fraction(1, 2), id="milli"),
        pytest.param("250u", Fraction(1, 4000), id="micro"),
        pytest.param("1Ki", Fraction(1024), id="kibi"),
        pytest.param("1Gi", Fraction(2**30), id="gibi"),
        pytest.param("2048Mi", Fraction(2**31), id="mebi-equals-2Gi"),
        pytest.param("1.5Gi", Fraction(3 * 2**29), id="fractional-binary"),
        pytest.param("4G", Fraction(4 * 10**9), id="giga-is-decimal"),
        pytest.param("1k", Fraction(1000), id="kilo-lowercase"),
        pytest.param("1e3", Fraction(1000), id="exponent"),
        pytest.param("1E3", Fraction(1000), id="exponent-uppercase"),
        pytest.param("5e-1", Fraction(1, 2), id="negative-exponent"),
        pytest.param("1E", Fraction(10**18), id="exa-not-exponent"),
        pytest.param(".5", Fraction(1, 2), id="leading-dot"),
        pytest.param("+2", Fraction(2), id="explicit-plus"),
        pytest.param("-2", Fraction(-2), id="negative"),
        pytest.param("0.1", Fraction(1, 10), id="exact-decimal-no-float-error"),
        pytest.param(4, Fraction(4), id="yaml-int"),
    ],
)
def test_parses_quantities_exactly(text: str | int, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(" 4", id="leading-space"),
        pytest.param("4 ", id="trailing-space"),
        pytest.param("1.5.2", id="two-dots"),
        pytest.param("2KB", id="unknown-suffix"),
        pytest.param("1ki", id="wrong-case-binary"),
        pytest.param("Mi", id="suffix-without-number"),
        pytest.param("1e", id="exponent-without-digits"),
        pytest.param("--1", id="double-sign"),
        pytest.param("abc", id="letters"),
        pytest.param("1e999", id="huge-exponent"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param(2.5, id="float"),
    ],
)
def test_rejects_malformed_quantities_naming_the_field(text: object) -> None:
    with pytest.raises(QuantityError) as err:
        parse_quantity(text, field="spec.cpu")  # type: ignore[arg-type]
    assert "spec.cpu" in str(err.value)
    assert err.value.field == "spec.cpu"


@pytest.mark.parametrize(
    ("text", "expected_value", "expected_milli"),
    [
        pytest.param("500m", 1, 500, id="half-rounds-up-to-1"),
        pytest.param("2", 2, 2000, id="whole"),
        pytest.param("1.0001", 2, 1001, id="value-and-milli-round-up"),
        pytest.param("1Ki", 1024, 1024000, id="binary"),
    ],
)
def test_value_rounds_up_like_kubernetes(text: str, expected_value: int, expected_milli: int) -> None:
    assert value(text) == expected_value
    assert milli_value(text) == expected_milli


@pytest.mark.parametrize(
    ("resource", "text", "expected"),
    [
        pytest.param("cpu", "500m", 500, id="cpu-in-millicores"),
        pytest.param("cpu", "2", 2000, id="cpu-whole"),
        pytest.param("memory", "2Gi", 2 * 2**30, id="memory-bytes"),
        pytest.param("memory", "1.5", 2, id="memory-fraction-rounds-up"),
        pytest.param("vendor/gpu", "3", 3, id="device-count"),
    ],
)
def test_parse_amount_uses_canonical_units(resource: str, text: str, expected: int) -> None:
    assert parse_amount(resource, text, field="f") == expected


def test_parse_amount_rejects_negative_amounts() -> None:
    with pytest.raises(QuantityError, match=r"zones\[0\]\.available.*non-negative"):
        parse_amount("cpu", "-1", field="zones[0].available")


@pytest.mark.parametrize(
    ("resource", "amount", "expected"),
    [
        pytest.param("cpu", 500, "500m", id="cpu-milli"),
        pytest.param("cpu", 4000, "4", id="cpu-whole"),
        pytest.param("memory", 1024, "1024", id="bytes"),
    ],
)
def test_format_amount(resource: str, amount: int, expected: str) -> None:
    assert format_amount(resource, amount) == expected


@given(st.sampled_from(["cpu", "memory", "hugepages-2Mi", "vendor/nic"]), st.integers(0, 2**62))
def test_format_then_parse_round_trips(resource: str, amount: int) -> None:
    assert parse_amount(resource, format_amount(resource, amount), field="f") == amount


def test_parse_amount_remembers_parsed_strings_within_a_bound() -> None:
    """Repeated strings are served from a bounded table: the same values as a fresh
    parse, errors still name the field every time, and hostile variety never grows it
    past its bound."""
    import math

    from topology import quantity

    for text in ("4", "500m", "8Gi", "1.5", "2e3"):
        first = quantity.parse_amount("cpu", text, field="a")
        assert (
            quantity.parse_amount("cpu", text, field="b") == first == math.ceil(parse_quantity(text) * 1000)
        )
        memory = quantity.parse_amount("memory", text, field="c")
        assert memory == quantity.to_value(parse_quantity(text))
    for _ in range(2):
        with pytest.raises(quantity.QuantityError, match=r"^spec\.x: '-1'"):
            quantity.parse_amount("cpu", "-1", field="spec.x")
    for n in range(3 * quantity._AMOUNTS_MAX):
        quantity.parse_amount("memory", f"{n}Ki", field="m")
    assert len(quantity._AMOUNTS) <= quantity._AMOUNTS_MAX
    assert quantity.parse_amount("memory", "7Ki", field="m") == 7 * 1024
