"""Kubernetes resource quantities: a strict parser and the integer forms topolet uses.

A quantity is ``<sign?><number><suffix>``: binary suffixes ``Ki Mi Gi Ti Pi Ei``
(powers of 1024), decimal suffixes ``n u m k M G T P E`` (powers of 1000) or an
exponent ``e<int>``/``E<int>``. Parsing is exact (a :class:`~fractions.Fraction`),
so ``"0.1"`` never turns into ``0.1000000001``, and strict: whitespace, empty
strings, ``"1.5.2"``, ``"2KB"`` or ``"Mi"`` are errors naming the field. It is bounded:
at most 40 digits, an exponent within ±64, no ``Infinity``/``NaN`` and no ``1_000``
(the forms Python's own number parsers would let through), so no input costs more than
a few microseconds.

Amounts inside topolet are plain ints in one *canonical unit* per resource:
millicores for ``cpu`` (so ``"500m"`` and ``"2"`` are both exact) and the base unit
for everything else (bytes for memory and hugepages, a count for devices), where a
fraction rounds up as Kubernetes' ``Quantity.Value()`` does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from topology.errors import TopologyError

__all__ = [
    "CPU",
    "QuantityError",
    "format_amount",
    "milli_value",
    "parse_amount",
    "parse_quantity",
    "to_value",
    "value",
]

#: The one resource whose canonical unit is the milli-unit (millicores).
CPU = "cpu"

_BINARY: dict[str, int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_DECIMAL: dict[str, Fraction] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_FORM = "a Kubernetes quantity such as '4', '500m', '1.5Gi', '2048Mi', '4G' or '1e3'"
_RE = re.compile(
    r"(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)"
)
#: Exponents beyond this are refused rather than building enormous integers.
_MAX_EXP = 64
#: Digits of the number part (Kubernetes itself keeps at most 18 significant digits).
_MAX_DIGITS = 40
#: Longest text looked at: sign, digits, point, and an exponent or suffix.
_MAX_LEN = _MAX_DIGITS + 8
_QUOTE_CHARS = 60


def _shown(given: object) -> str:
    text = repr(given)
    return text if len(text) <= _QUOTE_CHARS else f"{text[:_QUOTE_CHARS]}... ({len(text)} characters)"


class QuantityError(TopologyError, ValueError):
    """A quantity is malformed or out of range; names the field and the accepted form."""

    def __init__(self, field: str, given: object, expected: str = _FORM) -> None:
        self.field = field
        self.given = given
        super().__init__(f"{field}: {_shown(given)} is not {expected}")


def parse_quantity(text: str | int, *, field: str = "quantity") -> Fraction:
    """Parse a quantity exactly. ints (as YAML gives ``cpu: 4``) are accepted as-is."""
    if isinstance(text, bool):
        raise QuantityError(field, text)
    if isinstance(text, int):
        if abs(text) >= 10**_MAX_DIGITS:
            raise QuantityError(field, text, f"{_FORM} (at most {_MAX_DIGITS} digits)")
        return Fraction(text)
    if not isinstance(text, str):
        raise QuantityError(field, text)
    if len(text) > _MAX_LEN:
        raise QuantityError(field, text, f"{_FORM} (at most {_MAX_DIGITS} digits)")
    m = _RE.fullmatch(text)
    if m is None:
        raise QuantityError(field, text)
    if len(m["num"]) - ("." in m["num"]) > _MAX_DIGITS:
        raise QuantityError(field, text, f"{_FORM} (at most {_MAX_DIGITS} digits)")
    number = Fraction(m["num"])
    if m["exp"] is not None:
        exp = int(m["exp"][1:])
        if abs(exp) > _MAX_EXP:
            raise QuantityError(field, text, f"a quantity with an exponent within ±{_MAX_EXP}")
        number *= Fraction(10) ** exp
    else:
        suffix = m["suffix"] or ""
        number *= _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    return -number if m["sign"] == "-" else number


def to_value(q: Fraction) -> int:
    """The integer value, rounding fractions up (Kubernetes ``Quantity.Value()``)."""
    return math.ceil(q)


def value(text: str | int, *, field: str = "quantity") -> int:
    """Parse and round up to an integer (``"1.5"`` → 2, ``"2Gi"`` → 2147483648)."""
    return to_value(parse_quantity(text, field=field))


def milli_value(text: str | int, *, field: str = "quantity") -> int:
    """Parse into thousandths, rounding up (``"500m"`` → 500, ``"2"`` → 2000)."""
    return math.ceil(parse_quantity(text, field=field) * 1000)


#: (resource, quantity string) -> canonical amount, for strings parsed before: pod specs
#: and NRT objects repeat a few quantities ("4", "8Gi") millions of times. Bounded: it is
#: emptied when full, so hostile input costs a refill, never memory.
_AMOUNTS: dict[tuple[str, str], int] = {}
_AMOUNTS_MAX = 4096


def parse_amount(resource: str, text: str | int, *, field: str) -> int:
    """A non-negative amount of *resource* in its canonical unit (millicores for cpu)."""
    key = (resource, text) if type(text) is str else None
    if key is not None:
        hit = _AMOUNTS.get(key)
        if hit is not None:
            return hit
    q = parse_quantity(text, field=field)
    if q < 0:
        raise QuantityError(field, text, "a non-negative quantity")
    amount = math.ceil(q * 1000) if resource == CPU else to_value(q)
    if key is not None:
        if len(_AMOUNTS) >= _AMOUNTS_MAX:
            _AMOUNTS.clear()
        _AMOUNTS[key] = amount
    return amount


def format_amount(resource: str, amount: int) -> str:
    """The wire form of a canonical amount: ``"4"``/``"500m"`` for cpu, digits otherwise."""
    if resource == CPU and amount % 1000:
        return f"{amount}m"
    if resource == CPU:
        return str(amount // 1000)
    return str(amount)
