"""Statistics for sweeps with replications: confidence intervals, paired (CRN)
differences, the saturation point of a curve, and per-point summaries.

Pure functions on plain numbers (numpy and scipy only): nothing here imports the
simulator, the network, the models, the policies, the wiring layer or the
dashboards, so a report, a dashboard page or a notebook can use it on rows read
back from the store.

Missing values: ``None`` and NaN are "no observation" and are dropped (a
replication that produced no orders has no latency). Infinities are kept: they
are observations (a blow-up), and they make an interval unbounded.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

__all__ = ["CI", "Diff", "Knee", "blowup", "knee", "mean_ci", "mean_ci_nonneg", "paired_diff_ci", "rise_from_zero",
           "summarise"]


@dataclass(frozen=True)
class CI:
    """A mean with a two-sided confidence interval ``[low, high]`` = ``mean -/+ half_width``
    over ``n`` observations."""

    mean: float
    low: float
    high: float
    n: int
    half_width: float


@dataclass(frozen=True)
class Diff:
    """The paired difference ``b - a`` of two arms.

    ``mean``, ``low``, ``high``, ``half_width``: the difference and its paired
    Student-t interval over ``n`` pairs. ``mean_a``, ``mean_b``: each arm's mean
    over the same pairs. ``relative``: ``mean / mean_a`` (None when ``mean_a`` is
    0 or not finite). ``significant``: the interval excludes 0 (False when
    ``n < 2``). ``unpaired_half_width``: the Welch interval's half width for the
    same values treated as independent samples, what the interval would have
    been without common random numbers.
    """

    mean: float
    low: float
    high: float
    n: int
    half_width: float
    mean_a: float
    mean_b: float
    relative: float | None
    significant: bool
    unpaired_half_width: float

    @property
    def tightening(self) -> float:
        """How many times narrower the paired interval is than the unpaired one
        (``unpaired_half_width / half_width``; inf when the paired one is 0 wide,
        nan when neither interval is finite)."""
        if self.half_width == 0:
            return math.inf if self.unpaired_half_width > 0 else math.nan
        if math.isinf(self.half_width):
            return math.nan
        return self.unpaired_half_width / self.half_width


@dataclass(frozen=True)
class Knee:
    """The saturation point of an output-vs-load curve.

    ``x``, ``y``: the knee and the (mean) output measured there. ``method``:
    ``"marginal-gain"`` (the gain per unit x fell below the fraction of the
    initial gain) or ``"peak"`` (no such flattening before the output peaked and
    then fell; the knee is the peak). ``peak_x``, ``peak_y``: the first x at
    which the measured output is highest, and that output.
    """

    x: float
    y: float
    method: str
    peak_x: float
    peak_y: float


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")


def _clean(values: Iterable[Any]) -> np.ndarray:
    """The values as floats, None and NaN dropped."""
    out = [float(v) for v in values if v is not None]
    arr = np.asarray(out, dtype=float)
    return arr[~np.isnan(arr)]


def _t_ci(x: np.ndarray, level: float) -> CI:
    n = int(x.size)
    if n == 0:
        return CI(math.nan, -math.inf, math.inf, 0, math.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(np.mean(x))
    if n == 1 or not np.all(np.isfinite(x)):
        return CI(mean, -math.inf, math.inf, n, math.inf)
    sd = float(np.std(x, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)) if sd > 0 else 0.0
    return CI(mean, mean - half, mean + half, n, half)


def mean_ci(values: Iterable[Any], level: float = 0.95) -> CI:
    """The mean of ``values`` (one per replication) with its Student-t interval.

    Returns ``CI(mean, low, high, n, half_width)`` with ``half_width =
    t_{(1+level)/2, n-1} * s / sqrt(n)`` (``s``: the sample standard deviation)
    and ``n`` the number of values kept. None and NaN values are dropped first.
    Never raises on the data:

    - ``n == 0``: mean nan, ``half_width`` inf, ``low`` -inf, ``high`` inf;
    - ``n == 1``: the value as mean, ``half_width`` inf, ``low`` -inf, ``high``
      inf (one replication says nothing about the spread);
    - an infinite value: the mean is that infinity (nan for both signs), the
      interval is unbounded as for ``n == 1``;
    - identical values: ``half_width`` 0 and ``low == high == mean``.

    The interval assumes the replication values are independent and roughly
    normal; with few, skewed values (exponential-like) it covers a little less
    than ``level`` (see tests/test_analysis.py for the measured rates).
    Raises ValueError when ``level`` is not in (0, 1).
    """
    _check_level(level)
    return _t_ci(_clean(values), level)


def mean_ci_nonneg(values: Iterable[Any], level: float = 0.95, method: str = "t", *, resamples: int = 2000,
                   seed: int = 0) -> CI:
    """The mean of nonnegative ``values`` (counts, rates, latencies: one per replication) with an
    interval that never goes below 0.

    ``method="t"`` (the default): the Student-t interval of :func:`mean_ci` with its low end clipped
    at 0, ``low = max(0, mean - half_width)``; ``half_width`` is the t half width, so the interval
    is ``[low, mean + half_width]``. The true mean of nonnegative values is >= 0, so clipping drops
    only impossible values and never lowers the interval's coverage.

    ``method="bootstrap"``: the percentile bootstrap of the mean (``resamples`` resamples drawn
    with ``numpy.random.default_rng(seed)``: the same values give the same interval);
    ``half_width`` is ``(high - low) / 2``. It cannot leave ``[min(values), max(values)]``, so with
    the few replications a sweep has it is too narrow: for normal, exponential and Poisson(5)
    values, at 2, 3 and 5 replications it covered the mean 45-65%, 69-85% and 78-85% of the time
    where the (clipped) t interval covered 88-95% (1,500 trials each;
    ``tests/test_capacity_report.py`` checks the exponential case at 3). Use it for 20 or more
    replications. Neither is good for a count that is mostly 0 at 2-3 replications (all zeros give
    ``[0, 0]``).

    Both: None and NaN are dropped; fewer than 2 values, or an infinite one, give
    ``[0, inf]`` (mean nan for no values); identical values give ``low == high == mean``.
    ``low <= mean <= high`` and ``low >= 0`` always hold when there is a value.
    Raises ValueError when a value is negative, ``level`` is not in (0, 1), ``method`` is
    neither, or ``resamples < 100``.
    """
    _check_level(level)
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap' (got {method!r})")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100 (got {resamples})")
    x = _clean(values)
    if np.any(x < 0):
        raise ValueError(f"values must be >= 0 (got {float(np.min(x)):g})")
    n = int(x.size)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(np.mean(x)) if n else math.nan
    if n < 2 or not math.isfinite(mean):
        return CI(mean, 0.0, math.inf, n, math.inf)
    if method == "t":
        with np.errstate(over="ignore", invalid="ignore"):
            c = _t_ci(x, level)
        if not math.isfinite(c.half_width):  # an overflowing spread: nothing is known above the mean
            return CI(mean, 0.0, math.inf, n, math.inf)
        return CI(mean, max(0.0, min(mean, mean - c.half_width)), max(mean, mean + c.half_width), n, c.half_width)
    if float(np.ptp(x)) == 0:
        return CI(mean, mean, mean, n, 0.0)
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore", invalid="ignore"):
        means = (x / n)[rng.integers(0, n, size=(resamples, n))].sum(axis=1)  # x / n first: no overflow
    if not np.all(np.isfinite(means)):
        return CI(mean, 0.0, math.inf, n, math.inf)
    low, high = (float(v) for v in np.quantile(means, [0.5 - level / 2, 0.5 + level / 2]))
    low, high = max(0.0, min(low, mean)), max(high, mean)
    return CI(mean, low, high, n, (high - low) / 2)


def _welch_half_width(a: np.ndarray, b: np.ndarray, level: float) -> float:
    na, nb = a.size, b.size
    if na < 2 or nb < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    va, vb = float(np.var(a, ddof=1)) / na, float(np.var(b, ddof=1)) / nb
    se2 = va + vb
    if se2 == 0:
        return 0.0
    df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return float(stats.t.ppf(0.5 + level / 2, df) * math.sqrt(se2))


def paired_diff_ci(a: Sequence[Any], b: Sequence[Any], level: float = 0.95) -> Diff:
    """The difference ``b - a`` between two arms whose replications are paired by
    index (common random numbers: replication i of both arms ran with the same
    seed), with its paired Student-t interval.

    Returns a :class:`Diff`. A pair where either value is None or NaN is dropped
    (from both arms, so the arm means and the unpaired interval use the same
    replications). Raises ValueError when ``a`` and ``b`` differ in length or
    ``level`` is not in (0, 1). The paired interval is the t-interval of the
    per-pair differences (as :func:`mean_ci`, with its ``n < 2`` behaviour);
    ``unpaired_half_width`` is Welch's interval on the two arms as independent
    samples. Positive correlation between the arms (what common random numbers
    buy) makes the paired interval the narrower one.
    """
    _check_level(level)
    a_list, b_list = list(a), list(b)
    if len(a_list) != len(b_list):
        raise ValueError(f"paired arms need the same number of replications (got {len(a_list)} and {len(b_list)})")

    def num(v: Any) -> float:
        return math.nan if v is None else float(v)

    av = np.array([num(v) for v in a_list], dtype=float)
    bv = np.array([num(v) for v in b_list], dtype=float)
    keep = ~(np.isnan(av) | np.isnan(bv))
    av, bv = av[keep], bv[keep]
    with np.errstate(invalid="ignore"):
        d = bv - av
    ci = _t_ci(d, level)
    with np.errstate(invalid="ignore", over="ignore"):
        mean_a = float(np.mean(av)) if av.size else math.nan
        mean_b = float(np.mean(bv)) if bv.size else math.nan
    relative = ci.mean / mean_a if (math.isfinite(mean_a) and mean_a != 0 and not math.isnan(ci.mean)) else None
    significant = ci.n >= 2 and math.isfinite(ci.half_width) and (ci.low > 0 or ci.high < 0)
    return Diff(ci.mean, ci.low, ci.high, ci.n, ci.half_width, mean_a, mean_b, relative, bool(significant),
                _welch_half_width(av, bv, level))


def _curve(xs: Iterable[Any], ys: Iterable[Any], finite_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x, the ys of equal xs averaged; rows with a None/NaN x dropped,
    and rows with a non-finite y dropped when ``finite_only``."""
    xl, yl = list(xs), list(ys)
    if len(xl) != len(yl):
        raise ValueError(f"xs and ys differ in length ({len(xl)} and {len(yl)})")
    x = np.array([math.nan if v is None else float(v) for v in xl], dtype=float)
    y = np.array([math.nan if v is None else float(v) for v in yl], dtype=float)
    keep = np.isfinite(x) & (np.isfinite(y) if finite_only else True)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return x, y
    ux, inv = np.unique(x, return_inverse=True)
    with np.errstate(invalid="ignore", over="ignore"):
        uy = np.array([np.mean(y[inv == i]) for i in range(ux.size)])
    return ux, uy


def _concave_increasing_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares nondecreasing concave piecewise-linear fit with knots at
    ``x``; returns its slope on each segment ``[x[i], x[i+1]]`` (nonincreasing, >= 0).

    The fit is ``c + sum_k d_k * min(x - x0, x_{k+1} - x0)`` with ``d_k >= 0``:
    every nondecreasing concave function on the knots is such a sum, and the
    slope on segment j is ``sum_{k >= j} d_k``.
    """
    x0 = x[0]
    hinge = np.minimum(x[:, None], x[None, 1:]) - x0  # (n, n-1)
    scale = max(float(np.ptp(y)), 1e-300)
    a = np.hstack([np.ones((x.size, 1)), hinge])
    lower = np.r_[-np.inf, np.zeros(x.size - 1)]
    res = optimize.lsq_linear(a, (y - y[0]) / scale, bounds=(lower, np.full(x.size, np.inf)), method="bvls")
    d = res.x[1:] * scale
    return np.cumsum(d[::-1])[::-1]


def _noise_scale(x: np.ndarray, y: np.ndarray) -> float:
    """A robust estimate of the noise's standard deviation in ``y``: the median
    absolute deviation of each inner point from the chord through its neighbours,
    scaled so that it estimates sigma for independent normal noise. Kinks and
    gentle curvature touch few chords, so they barely move the median; 0 for a
    noise-free piecewise-linear curve."""
    if x.size < 3:
        return 0.0
    w = (x[1:-1] - x[:-2]) / (x[2:] - x[:-2])
    resid = y[1:-1] - ((1 - w) * y[:-2] + w * y[2:])
    # var(resid) = sigma^2 * (1 + w^2 + (1 - w)^2) for independent noise of variance sigma^2
    return float(np.median(np.abs(resid) / np.sqrt(1 + w**2 + (1 - w) ** 2)) / stats.norm.ppf(0.75))


def knee(xs: Iterable[Any], ys: Iterable[Any], frac: float = 0.2) -> Knee | None:
    """The saturation point of an output-vs-load curve (throughput against robots,
    say): the last x before adding load stops adding much output.

    Method (``"marginal-gain"``): fit the least-squares nondecreasing concave
    piecewise-linear curve to the points up to the last one with the highest
    output, and return the left end of the first segment whose gain per unit x
    (fitted slope) is below ``frac`` times the gain of the first segment. The
    shape-constrained fit makes the gains nonincreasing, so one noisy point cannot
    trigger the rule early and "first" is unambiguous.

    Why this and not Kneedle: Kneedle normalises x to the sweep's range, so
    extending a sweep to larger x moves its knee; this rule depends only on the
    curve near and before the knee. For ``y = min(x, K)`` on a grid containing K
    the knee is K exactly. For ``y = A*(1 - exp(-x/tau))`` sampled from ``x0``
    (fine grid) it is about ``x0 + tau*ln(1/frac)`` (``x0 + 1.61*tau`` at
    ``frac = 0.2``) on the grid, wherever the sweep ends.

    A curve that rises and then falls (gridlock): ``peak_x``/``peak_y`` give the
    first x with the highest output; if the output flattened before the peak the
    knee is where it did, otherwise (it rose steadily, then fell) the knee is the
    peak itself, with method ``"peak"``.

    Points with equal x are averaged; points with a None or non-finite x or y
    are dropped. Returns None when there is no knee: fewer than 3 distinct
    points, an output that never rises above its value at the smallest x
    (saturated before the sweep's range), or a curve that keeps rising to the
    end of the range without flattening (a straight line, say).
    Raises ValueError when ``frac`` is not in (0, 1).
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1) (got {frac})")
    x, y = _curve(xs, ys, finite_only=True)
    if x.size < 3:
        return None
    top = float(np.max(y))
    first_top = int(np.argmax(y))
    peak_x, peak_y = float(x[first_top]), top
    if first_top == 0 and np.all(y[1:] < top):
        return None  # never rises above the first point
    # the points up to the last one within noise of the top: a noisy plateau stays in
    # (its highest point is an accident), a fall of more than the noise stays out
    end = int(np.flatnonzero(y >= top - 3 * _noise_scale(x, y))[-1])
    rising_x, rising_y = x[: end + 1], y[: end + 1]
    if rising_x.size >= 3:
        slopes = _concave_increasing_fit(rising_x, rising_y)
        if slopes[0] > 0:
            below = np.flatnonzero(slopes < frac * slopes[0])
            if below.size:
                i = int(below[0])
                return Knee(float(rising_x[i]), float(rising_y[i]), "marginal-gain", peak_x, peak_y)
    if end < x.size - 1:  # the output falls after its peak
        return Knee(peak_x, peak_y, "peak", peak_x, peak_y)
    return None


def blowup(xs: Iterable[Any], ys: Iterable[Any], factor: float = 3.0) -> float | None:
    """The first x at which a cost metric (p99 latency, deadlocks, ...) blows up:
    exceeds ``factor`` times its value at the smallest x, or is not finite
    (inf or NaN: a run with no answer is counted as blown up).

    Points are sorted by x; equal xs are averaged (so one non-finite replication
    makes the point non-finite). Meant for nonnegative costs: with a baseline of
    0 any positive value is a blow-up here, which is no "factor"; a summary should
    state such a rise as one from 0 (:func:`rise_from_zero`). Returns the smallest x itself when the
    baseline is not finite, and None when nothing blows up (or there are no
    points). Raises ValueError when ``factor`` is not > 0.
    """
    if not factor > 0:
        raise ValueError(f"factor must be > 0 (got {factor})")
    x, y = _curve(xs, ys, finite_only=False)
    if x.size == 0:
        return None
    base = y[0]
    if not math.isfinite(base):
        return float(x[0])
    for xi, yi in zip(x[1:], y[1:]):
        if not math.isfinite(yi) or yi > factor * base:
            return float(xi)
    return None


def rise_from_zero(xs: Iterable[Any], ys: Iterable[Any]) -> tuple[float, float] | None:
    """Where a cost metric that is 0 at the smallest x first becomes positive: ``(x, y)``, the
    first such x and the (mean) value there ("deadlocks rise from 0 to 0.2 per run at 24 robots").

    Points are sorted by x and equal xs averaged, as in :func:`blowup`; points with a None or
    NaN y are dropped. Returns None when there are no points, the value at the smallest x is not
    0, or it never rises above 0.
    """
    x, y = _curve(xs, ys, finite_only=False)
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    if x.size == 0 or y[0] != 0:
        return None
    up = np.flatnonzero(y > 0)
    return (float(x[up[0]]), float(y[up[0]])) if up.size else None


_MISSING = object()


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, or the nested value at the dotted path ``key``; _MISSING when absent."""
    if key in row:
        return row[key]
    cur: Any = row
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def summarise(rows: Iterable[Mapping[str, Any]], by: Sequence[str], metrics: Sequence[str],
              level: float = 0.95) -> list[dict[str, Any]]:
    """Per parameter point, each metric's mean and confidence interval across
    replications.

    ``rows``: one mapping per replication, holding the parameter values under the
    ``by`` keys and the metric values under the ``metrics`` keys (flattened dotted
    keys such as ``"order_latency.p99"``, or the same path through nested dicts).
    Returns one dict per distinct combination of the ``by`` values: those values
    under their keys, ``"n_rows"`` (replications in the group), and for each
    metric ``m`` the keys ``"m.mean"``, ``"m.low"``, ``"m.high"``, ``"m.n"`` from
    :func:`mean_ci` (a missing, None or NaN metric value is not counted in
    ``m.n``). Groups are sorted by their ``by`` values (in first-seen order when
    those do not sort). Raises ValueError when a row lacks a ``by`` key or a
    ``by`` key is also a metric.
    """
    _check_level(level)
    by, metrics = list(by), list(metrics)
    if set(by) & set(metrics):
        raise ValueError(f"a key is both a parameter and a metric: {sorted(set(by) & set(metrics))}")
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for i, row in enumerate(rows):
        key = []
        for k in by:
            v = _lookup(row, k)
            if v is _MISSING:
                raise ValueError(f"row {i} has no parameter {k!r}")
            key.append(v)
        groups.setdefault(tuple(key), []).append(row)
    keys = list(groups)
    try:
        keys = sorted(keys)
    except TypeError:
        pass
    out = []
    for key in keys:
        members = groups[key]
        rec: dict[str, Any] = dict(zip(by, key))
        rec["n_rows"] = len(members)
        for m in metrics:
            vals = [v for v in (_lookup(r, m) for r in members) if v is not _MISSING]
            ci = mean_ci(vals, level)
            rec[f"{m}.mean"], rec[f"{m}.low"], rec[f"{m}.high"], rec[f"{m}.n"] = ci.mean, ci.low, ci.high, ci.n
        out.append(rec)
    return out
