"""CPUSet: an immutable set of CPU ids in Linux cpu-list form.

The value type every package of topolet speaks in. It is backed by an int bitmask
(bit N set = CPU N present), so set algebra on 1024 CPUs is a handful of machine
words. Parsing is stricter than the kernel's: every malformed token is an error
that quotes the input and the token, never a silent skip.

Every id is bounded: a CPU id at or above :func:`cpu_id_limit` (8192, the largest
``NR_CPUS`` a Linux kernel can be built with, unless the composition root raises it
from the machine's ``kernel_max``) is refused before any memory is spent on it, so a
hostile ``"0-4294967295"`` costs a few microseconds, not gigabytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from topology.errors import TopologyError

__all__ = ["DEFAULT_CPU_ID_LIMIT", "CPUSet", "CPUSetParseError", "cpu_id_limit", "raise_cpu_id_limit"]

_MASK_WORD = re.compile(r"[0-9a-fA-F]{1,8}")
_MASK_WORDS = re.compile(r"[0-9a-fA-F]{1,8}(?:,[0-9a-fA-F]{1,8})*")

#: CPU ids are below this unless the machine says more (``CONFIG_NR_CPUS`` tops out at 8192).
DEFAULT_CPU_ID_LIMIT = 8192
#: No kernel_max, however large, lifts the limit above this (2**20 ids = 128 KiB of bits).
_HARD_CPU_ID_LIMIT = 1 << 20
_limit = DEFAULT_CPU_ID_LIMIT
#: How much of a refused input an error quotes.
_QUOTE_CHARS = 60


def cpu_id_limit() -> int:
    """Every CPU id must be below this number."""
    return _limit


def raise_cpu_id_limit(ids: int) -> None:
    """Allow CPU ids below *ids* (a machine whose ``kernel_max`` is above 8191). The limit
    only ever grows, and never past 2**20."""
    global _limit
    _limit = max(_limit, min(int(ids), _HARD_CPU_ID_LIMIT))


def _clip(text: str) -> str:
    """*text* quoted, cut to a readable length (an error line must stay one short line)."""
    if len(text) <= _QUOTE_CHARS:
        return repr(text)
    return f"{text[:_QUOTE_CHARS]!r}... ({len(text)} characters)"


def _too_big(cpu: int) -> str:
    return f"CPU id {cpu}, above the largest this kernel supports ({_limit - 1})"


_LIST_FORM = "comma-separated CPU ids or ranges such as '0-3,8,10-11'"
_MASK_FORM = "comma-separated 32-bit hex words such as 'ff,00000000'"


class CPUSetParseError(TopologyError, ValueError):
    """A cpu-list or cpu mask string is malformed, or names a CPU id above the limit."""

    def __init__(self, text: str, token: str, why: str, *, mask: bool = False) -> None:
        self.text = text
        self.token = token
        kind, form = ("cpu mask", _MASK_FORM) if mask else ("cpu list", _LIST_FORM)
        super().__init__(f"invalid {kind} {_clip(text)}: token {_clip(token)} {why} (expected {form})")


def _parse_id(text: str, token: str, part: str) -> int:
    if not part.isdigit() or not part.isascii():
        raise CPUSetParseError(text, token, "is not a non-negative integer or range")
    digits = part.lstrip("0") or "0"
    if len(digits) > len(str(_limit)) or int(digits) >= _limit:
        raise CPUSetParseError(
            text, token, f"names a CPU id above {_limit - 1}, the largest this kernel supports"
        )
    return int(digits)


def _check_id(cpu: int) -> None:
    if cpu >= _limit:
        raise ValueError(f"refusing {_too_big(cpu)}")


class CPUSet:
    """An immutable, ordered set of CPU ids.

    >>> s = CPUSet.parse("0-3,8")
    >>> str(s | CPUSet.of(9))
    '0-3,8-9'
    >>> len(s), list(s)[:2]
    (5, [0, 1])
    """

    __slots__ = ("_bits",)

    _bits: int

    def __init__(self, cpus: Iterable[int] = ()) -> None:
        bits = 0
        for cpu in cpus:
            if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
                raise ValueError(f"CPU ids must be non-negative integers, got {cpu!r}")
            _check_id(cpu)
            bits |= 1 << cpu
        object.__setattr__(self, "_bits", bits)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CPUSet is immutable")

    # construction ---------------------------------------------------------
    @classmethod
    def from_bits(cls, bits: int) -> CPUSet:
        """The set whose bit N is set in *bits*."""
        if bits < 0:
            raise ValueError("a CPU bitmask cannot be negative")
        if bits.bit_length() > _limit:
            raise ValueError(f"refusing {_too_big(bits.bit_length() - 1)}")
        s = cls.__new__(cls)
        object.__setattr__(s, "_bits", bits)
        return s

    @classmethod
    def of(cls, *cpus: int) -> CPUSet:
        return cls(cpus)

    @classmethod
    def range(cls, first: int, last: int) -> CPUSet:
        """CPUs first..last inclusive."""
        if first < 0 or last < first:
            raise ValueError(f"invalid CPU range {first}-{last}")
        _check_id(last)
        return cls.from_bits(((1 << (last - first + 1)) - 1) << first)

    @classmethod
    def parse(cls, text: str) -> CPUSet:
        """Parse Linux cpu-list format (``"0-3,8,10-11"``; ``""`` is empty).

        Surrounding whitespace (a trailing newline from sysfs) is ignored. A list longer
        than eight characters per allowed CPU id, or naming an id at or above
        :func:`cpu_id_limit`, is refused.
        """
        body = text.strip()
        if not body:
            return _EMPTY
        if len(body) > 8 * _limit:
            raise CPUSetParseError(
                text, body[:_QUOTE_CHARS], f"starts a list longer than {8 * _limit} characters"
            )
        bits = 0
        for token in body.split(","):
            token_s = token.strip()
            if not token_s:
                raise CPUSetParseError(text, token, "is empty")
            first_s, dash, last_s = token_s.partition("-")
            first = _parse_id(text, token_s, first_s)
            if dash:
                last = _parse_id(text, token_s, last_s)
                if last < first:
                    raise CPUSetParseError(text, token_s, "is a descending range")
                bits |= ((1 << (last - first + 1)) - 1) << first
            else:
                bits |= 1 << first
        return cls.from_bits(bits)

    @classmethod
    def parse_mask(cls, text: str) -> CPUSet:
        """Parse a kernel hex cpumask: comma-separated 32-bit words, most significant first
        (``"00000000,0000ff00"``). NUL bytes and whitespace around it are ignored. A mask
        with a bit set at or above :func:`cpu_id_limit` is refused."""
        body = text.replace("\x00", "").strip()
        if not body:
            raise CPUSetParseError(text, body, "is empty", mask=True)
        if len(body) > 9 * (_limit // 32 + 1) + 2:
            raise CPUSetParseError(
                text,
                body[:_QUOTE_CHARS],
                f"starts a mask wider than {_limit} CPUs (the kernel's limit)",
                mask=True,
            )
        words = [w.strip() for w in body.split(",")]
        if words[0][:2] in ("0x", "0X"):
            words[0] = words[0][2:]
        if not _MASK_WORDS.fullmatch(",".join(words)):
            bad = next((w for w in words if not _MASK_WORD.fullmatch(w)), body)
            raise CPUSetParseError(text, bad, "is not a hex word of at most 8 digits", mask=True)
        bits = int("".join(w.zfill(8) for w in words), 16)
        if bits.bit_length() > _limit:
            raise CPUSetParseError(
                text, words[0], f"sets the bit of {_too_big(bits.bit_length() - 1)}", mask=True
            )
        return cls.from_bits(bits)

    # set algebra ----------------------------------------------------------
    def union(self, *others: CPUSet) -> CPUSet:
        bits = self._bits
        for o in others:
            bits |= o._bits
        return CPUSet.from_bits(bits)

    def intersection(self, *others: CPUSet) -> CPUSet:
        bits = self._bits
        for o in others:
            bits &= o._bits
        return CPUSet.from_bits(bits)

    def difference(self, *others: CPUSet) -> CPUSet:
        bits = self._bits
        for o in others:
            bits &= ~o._bits
        return CPUSet.from_bits(bits)

    def symmetric_difference(self, other: CPUSet) -> CPUSet:
        return CPUSet.from_bits(self._bits ^ other._bits)

    def is_subset_of(self, other: CPUSet) -> bool:
        return self._bits & ~other._bits == 0

    def is_superset_of(self, other: CPUSet) -> bool:
        return other._bits & ~self._bits == 0

    def isdisjoint(self, other: CPUSet) -> bool:
        return self._bits & other._bits == 0

    __or__ = union
    __and__ = intersection
    __sub__ = difference
    __xor__ = symmetric_difference
    __le__ = is_subset_of
    __ge__ = is_superset_of

    def __lt__(self, other: CPUSet) -> bool:
        return self._bits != other._bits and self.is_subset_of(other)

    def __gt__(self, other: CPUSet) -> bool:
        return self._bits != other._bits and self.is_superset_of(other)

    # container protocol ---------------------------------------------------
    def __len__(self) -> int:
        return self._bits.bit_count()

    def __bool__(self) -> bool:
        return self._bits != 0

    def __contains__(self, cpu: object) -> bool:
        return isinstance(cpu, int) and cpu >= 0 and (self._bits >> cpu) & 1 == 1

    def __iter__(self) -> Iterator[int]:
        bits = self._bits
        while bits:
            low = bits & -bits
            yield low.bit_length() - 1
            bits ^= low

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CPUSet) and other._bits == self._bits

    def __hash__(self) -> int:
        return hash(("CPUSet", self._bits))

    def __repr__(self) -> str:
        return f"CPUSet({str(self)!r})"

    def __str__(self) -> str:
        parts: list[str] = []
        bits = self._bits
        base = 0
        while bits:
            skip = (bits & -bits).bit_length() - 1
            bits >>= skip
            base += skip
            run = (~bits & (bits + 1)).bit_length() - 1  # length of the run of ones
            first, last = base, base + run - 1
            parts.append(str(first) if first == last else f"{first}-{last}")
            bits >>= run
            base += run
        return ",".join(parts)

    # helpers --------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self._bits

    def sorted(self) -> list[int]:
        return list(self)

    def first(self) -> int:
        """The lowest CPU id; raises ValueError on the empty set."""
        if not self._bits:
            raise ValueError("empty CPUSet has no first CPU")
        return (self._bits & -self._bits).bit_length() - 1

    def to_mask(self) -> str:
        """Kernel hex mask form (comma-separated 32-bit words)."""
        if not self._bits:
            return "0"
        words = []
        bits = self._bits
        while bits:
            words.append(f"{bits & 0xFFFFFFFF:08x}")
            bits >>= 32
        return ",".join(reversed(words))


_EMPTY = CPUSet.from_bits(0)
