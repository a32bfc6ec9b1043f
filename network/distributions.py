"""Propagation-delay distributions, netem style.

Every distribution is parameterised by its mean (``mean``) and spread
(``jitter``) so links are easy to compare; ``correlation`` makes successive
draws correlated (as netem's ``delay 100ms 10ms 25%``) through a Gaussian
copula, which keeps each draw's marginal distribution exact.

Draws are made in blocks from the link's own generator: one numpy call per
block keeps per-message cost low.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DISTRIBUTIONS = ("constant", "uniform", "normal", "lognormal", "pareto")
LOGNORMAL_MAX_RATIO = 1000.0  # jitter / mean of a lognormal (the scenario's [links] tables say the same)


@dataclass(frozen=True)
class DelayDist:
    """A delay distribution in seconds.

    - constant: always ``mean``
    - uniform: U(mean - jitter, mean + jitter)
    - normal: N(mean, jitter) truncated at 0 (negative draws are redrawn)
    - lognormal: mean ``mean``, standard deviation ``jitter``
    - pareto: Pareto (type I) with shape ``alpha`` > 1 and mean ``mean``
    """

    dist: str = "constant"
    mean: float = 0.0
    jitter: float = 0.0
    correlation: float = 0.0
    alpha: float = 3.0

    def __post_init__(self):
        if self.dist not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {self.dist!r} (expected one of {', '.join(DISTRIBUTIONS)})")
        if self.mean < 0 or self.jitter < 0:
            raise ValueError("mean and jitter must be >= 0")
        if not 0 <= self.correlation < 1:
            raise ValueError("correlation must be in [0, 1)")
        if self.dist == "uniform" and self.jitter > self.mean:
            raise ValueError("uniform jitter must not exceed the mean (delays would go negative)")
        if self.dist == "lognormal" and self.mean == 0:
            raise ValueError("lognormal needs mean > 0")
        if self.dist == "lognormal" and self.jitter > LOGNORMAL_MAX_RATIO * self.mean:
            # beyond this the law's median underflows and its tail overflows: no finite sample to draw
            raise ValueError(f"lognormal jitter may be at most {LOGNORMAL_MAX_RATIO:g} times its mean")
        if self.dist == "pareto" and self.alpha <= 1:
            raise ValueError("pareto needs alpha > 1 (finite mean)")

    @property
    def degenerate(self) -> bool:
        """One value only: a constant, no jitter, a pareto of mean 0, or a jitter so small against the mean
        that the law's spread is zero in floating point (a lognormal's ``log1p((j/d)^2)`` underflows below
        j/d ~ 1e-154; ``d + j == d``): every draw is ``mean``, and nothing is left to correlate."""
        d, j = self.mean, self.jitter
        if self.dist == "pareto":
            return d == 0
        if self.dist == "constant" or j == 0:
            return True
        if self.dist == "lognormal":
            return math.log1p((j / d) ** 2) == 0.0
        return d > 0 and d + j == d

    def frozen(self):
        """The equivalent ``scipy.stats`` frozen distribution (for tests and the copula)."""
        from scipy import stats  # lazy: scipy is slow to import and only needed here

        d, j = self.mean, self.jitter
        if self.degenerate:
            return stats.uniform(loc=d, scale=0.0)
        if self.dist == "uniform":
            return stats.uniform(loc=d - j, scale=2 * j)
        if self.dist == "normal":
            return stats.truncnorm(a=(0 - d) / j, b=np.inf, loc=d, scale=j)
        if self.dist == "lognormal":
            s2 = math.log1p((j / d) ** 2)
            return stats.lognorm(s=math.sqrt(s2), scale=math.exp(math.log(d) - s2 / 2))
        xm = self.mean * (self.alpha - 1) / self.alpha
        return stats.pareto(b=self.alpha, scale=xm)

    @property
    def expected(self) -> float:
        """The expected delay (what routing minimises): ``mean``, except a normal truncated at 0."""
        if self.dist == "normal" and self.jitter > 0:
            return float(self.frozen().mean())
        return self.mean

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent draws (no correlation)."""
        d, j = self.mean, self.jitter
        if self.degenerate:
            return np.full(n, d)
        if self.dist == "uniform":
            return rng.uniform(d - j, d + j, n)
        if self.dist == "normal":
            out = rng.normal(d, j, n)
            bad = out < 0
            while bad.any():  # truncation by rejection keeps the exact truncated law
                out[bad] = rng.normal(d, j, int(bad.sum()))
                bad = out < 0
            return out
        if self.dist == "lognormal":
            s2 = math.log1p((j / d) ** 2)
            return rng.lognormal(math.log(d) - s2 / 2, math.sqrt(s2), n)
        xm = d * (self.alpha - 1) / self.alpha
        return xm * (1.0 + rng.pareto(self.alpha, n))


class DelaySampler:
    """Hands out delays one at a time from pre-drawn blocks."""

    __slots__ = ("dist", "rng", "block", "_buf", "_z")

    def __init__(self, dist: DelayDist, rng: np.random.Generator, block: int = 1024):
        self.dist = dist
        self.rng = rng
        self.block = block
        self._buf: list[float] = []
        self._z = 0.0  # last latent normal, for correlated draws

    def _refill(self) -> None:
        dist, n = self.dist, self.block
        rho = dist.correlation
        if rho == 0 or dist.degenerate:  # one value: nothing to correlate
            draws = dist.sample(self.rng, n)
        else:
            from scipy.signal import lfilter
            from scipy.stats import norm

            # AR(1) latent process z_i = rho z_{i-1} + sqrt(1 - rho^2) eps_i: N(0, 1) marginals
            eps = self.rng.standard_normal(n)
            z, _ = lfilter([math.sqrt(1 - rho * rho)], [1.0, -rho], eps, zi=[rho * self._z])
            self._z = float(z[-1])
            draws = dist.frozen().ppf(norm.cdf(z))
        if not np.all((draws >= 0) & np.isfinite(draws)):  # a NaN delay would stall the clock: never schedule one
            raise ValueError(f"delay distribution {dist} produced a negative or non-finite delay")
        self._buf = draws[::-1].tolist()

    def next(self) -> float:
        buf = self._buf
        if not buf:
            self._refill()
            buf = self._buf
        return buf.pop()
