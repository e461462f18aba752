"""Exponential backoff with jitter, for retrying the API server.

Delay *n* (from 0) is ``min(initial_s * factor**n, max_s)`` scaled by a random factor in
``[1 - jitter, 1]``: it doubles (by default) up to the cap and never exceeds it, and many
clients that failed together do not retry together. :meth:`Backoff.reset` after a success.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """``next()`` → seconds to wait before the next try; ``reset()`` after a success."""

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"backoff: expected 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        if factor < 1 or not 0 <= jitter < 1:
            raise ValueError(f"backoff: expected factor >= 1 and 0 <= jitter < 1, got {factor} and {jitter}")
        self.initial_s, self.max_s, self.factor, self.jitter = initial_s, max_s, factor, jitter
        self._rng = rng or random.Random()
        self._base = initial_s

    def next(self) -> float:
        """The next delay (and advance)."""
        base = self._base
        self._base = min(base * self.factor, self.max_s)
        return base * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._base = self.initial_s
