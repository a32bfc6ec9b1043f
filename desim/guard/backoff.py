"""Backoff between retries: the formulas of the AWS Architecture Blog's "Exponential Backoff And Jitter".

With ``attempt`` the retry's index (0 for the first retry), ``base`` and ``cap``
in seconds and ``u`` a uniform draw in [0, 1):

- ``none`` (plain exponential): ``min(cap, base * 2**attempt)``
- ``full``: ``u * min(cap, base * 2**attempt)``
- ``equal``: ``t/2 + u * t/2`` with ``t = min(cap, base * 2**attempt)``
- ``decorrelated``: ``min(cap, base + u * (3 * prev - base))`` (the blog's
  ``min(cap, random_between(base, sleep * 3))``), ``prev`` the previous delay,
  ``base`` before the first retry.

Every delay lies in ``[0, cap]``: jitter spreads retries of many clients apart
(no synchronized storm after a shared failure), the cap keeps one client from
sleeping for ever. Pure functions, so the tests check them against the formula.
"""
from __future__ import annotations

import numpy as np

KINDS = ("none", "full", "equal", "decorrelated")
_MAX_EXP = 1023  # 2.0**1024 overflows a float; the cap is reached long before


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The exponential envelope ``min(cap, base * 2**attempt)``."""
    return min(cap, base * 2.0 ** min(max(int(attempt), 0), _MAX_EXP))


def delay(kind: str, attempt: int, base: float, cap: float, prev: float, u: float) -> float:
    """The delay before retry ``attempt`` (see the module's formulas); ``u`` in [0, 1)."""
    if kind == "none":
        return ceiling(attempt, base, cap)
    if kind == "full":
        return u * ceiling(attempt, base, cap)
    if kind == "equal":
        t = ceiling(attempt, base, cap)
        return t / 2 + u * t / 2
    if kind == "decorrelated":
        return min(cap, base + u * (3.0 * max(prev, base) - base))
    raise ValueError(f"unknown backoff jitter {kind!r} (expected one of {', '.join(KINDS)})")


class Backoff:
    """The delays of one call's retries, drawn from ``rng`` (the calling agent's own stream)."""

    def __init__(self, kind: str, base: float, cap: float, rng: np.random.Generator):
        if kind not in KINDS:
            raise ValueError(f"unknown backoff jitter {kind!r} (expected one of {', '.join(KINDS)})")
        self.kind, self.base, self.cap, self.rng = kind, float(base), float(cap), rng
        self.prev = float(base)

    def next(self, attempt: int) -> float:
        u = float(self.rng.random()) if self.kind != "none" else 0.0
        d = delay(self.kind, attempt, self.base, self.cap, self.prev, u)
        self.prev = d
        return d
