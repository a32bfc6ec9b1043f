"""desim.analysis: intervals that cover at their measured rate, paired (CRN) differences, the knee
and blow-up finders on curves with known answers, and per-point summaries. Fixed seeds: these never flake."""
import ast
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from desim import Agent, Simulation
from desim.analysis import CI, blowup, knee, mean_ci, paired_diff_ci, summarise
from desim.network import LinkSpec, Network
from desim.network import topology as T

ROOT = Path(__file__).resolve().parent.parent


def test_analysis_is_pure():
    # a pure statistics module: numpy/scipy only, nothing of desim (the kernel contract in
    # pyproject.toml lists its modules explicitly, so this test is what keeps it that way)
    tree = ast.parse((ROOT / "desim" / "analysis.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m.split(".")[0] for m in mods if m} <= {"__future__", "math", "collections", "dataclasses", "typing",
                                                    "numpy", "scipy"}, mods


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_is_the_student_t_interval():
    x = [3.1, 2.7, 4.0, 3.3, 2.9, 3.8]
    ci = mean_ci(x, level=0.9)
    low, high = stats.t.interval(0.9, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (ci.low, ci.high) == pytest.approx((low, high))
    assert ci.mean == pytest.approx(np.mean(x)) and ci.n == 6
    assert ci.half_width == pytest.approx((high - low) / 2)
    assert mean_ci(x, 0.99).half_width > mean_ci(x).half_width > ci.half_width


def test_mean_ci_drops_missing_values_and_never_crashes():
    assert mean_ci([1.0, None, 3.0, float("nan")]) == mean_ci([1.0, 3.0])
    one = mean_ci([5.0])
    assert one == CI(5.0, -math.inf, math.inf, 1, math.inf)
    none = mean_ci([None, float("nan")])
    assert none.n == 0 and math.isnan(none.mean) and none.half_width == math.inf
    assert mean_ci([]).n == 0
    same = mean_ci([2.0, 2.0, 2.0])
    assert (same.low, same.mean, same.high, same.half_width) == (2.0, 2.0, 2.0, 0.0)
    blown = mean_ci([1.0, math.inf, 2.0])  # an infinity is an observation: kept, interval unbounded
    assert blown.n == 3 and blown.mean == math.inf and blown.half_width == math.inf
    assert mean_ci(np.array([1, 2, 3])).mean == 2.0  # arrays and ints
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], level=1.0)


def _coverage(samples: np.ndarray, true_mean: float) -> float:
    cis = [mean_ci(row) for row in samples]
    return float(np.mean([c.low <= true_mean <= c.high for c in cis]))


def test_t_interval_coverage_synthetic():
    rng = np.random.default_rng(2024)
    # normal data: the t-interval is exact, so 2000 intervals of n=5 cover 95% +- 0.5% (one sd);
    # measured 0.9515 with this seed. A z-interval (1.96 instead of t_4 = 2.78) covers ~0.88.
    normal = _coverage(rng.normal(3.0, 2.0, (2000, 5)), 3.0)
    assert 0.935 <= normal <= 0.965, normal
    # exponential data, n=5: the sample mean is skewed and its sd correlated with it, so the 95%
    # t-interval undercovers: 0.882 measured over 200 000 intervals (0.879-0.895 over four other
    # seeds of 2000; 0.884 with this one), not 0.95 (nor the 0.90 one might hope for). The band is
    # that rate +- ~4 sd (0.0072) of a 2000-interval estimate. A z-interval would cover ~0.81 and
    # fail; an interval too wide by sqrt(n) would cover ~1.0 and fail.
    expo = _coverage(rng.exponential(1.0, (2000, 5)), 1.0)
    assert 0.855 <= expo <= 0.91, expo


# An M/M/1 link (as tests/test_network_stats.py::test_single_link_is_an_mm1_queue builds it):
# Poisson arrivals at LAM, exponential sizes on a 100 Mbit/s link: mean service 1 ms, MU = 1000/s;
# the steady-state mean sojourn time is 1 / (MU - LAM).
MEAN_SIZE, BANDWIDTH = 12_500, 1e8
MU, LAM = BANDWIDTH / (8 * MEAN_SIZE), 500.0
HORIZON, WARM_UP = 2.0, 0.05  # seconds: ~975 messages per replication are measured


def _mm1_mean_sojourn(seed: int) -> float:
    """One replication: the mean sojourn of the messages sent in [WARM_UP, HORIZON)."""
    sim = Simulation(seed)
    Network(sim, T.line(2), LinkSpec(bandwidth=BANDWIDTH))
    total = [0.0, 0]

    class Source(Agent):
        def behaviour(self):
            rng = self.sim.rng.stream("mm1")
            while True:
                yield self.sim.env.timeout(rng.exponential(1 / LAM))
                if self.sim.now >= HORIZON:
                    return
                self.send("n1", "job", size=max(1, round(rng.exponential(MEAN_SIZE))))

    class Sink(Agent):
        def deliver(self, msg):
            if msg.sent_at >= WARM_UP:
                total[0] += self.sim.now - msg.sent_at
                total[1] += 1

    Source(sim, "n0"), Sink(sim, "n1")
    # run past the horizon so every message sent before it is delivered (a sojourn over 0.2 s
    # has probability exp(-(MU - LAM) * 0.2) = e^-100): no censoring of the slow ones
    sim.run(HORIZON + 0.2)
    return total[0] / total[1]


def test_t_interval_coverage_on_an_mm1_link():
    """300 batches of 5 independent replications (seeds 10000..11499): the 95% t-interval of each
    batch covers the analytic mean sojourn 1/(MU - LAM) = 2 ms at about its nominal rate.

    Choices (rho = 0.5 keeps it short: ~20 s on two cores). The queue starts empty, so a
    replication's mean is biased low; the relaxation time is ~1/(MU (1 - sqrt(rho))^2) = 12 ms, and
    the 50 ms warm-up plus a 2 s horizon leave a bias too small to measure here (the grand mean is
    +0.07% off, within its own sd of 0.25%), under 1/100 of a batch's half width (median 11% of
    the mean): negligible against the interval. A replication's mean is mildly right-skewed
    (skewness ~0.7), so with n=5 the t-interval may cover a little under 95%: 0.963 here (300
    batches), 0.938 over 400 batches of seeds 1000..2999, 0.949 pooled. The band [0.90, 0.98] is
    ~3 binomial sd (0.0125) each side of 0.95 for 300 batches; a z-interval (1.96 instead of
    t_4 = 2.78) covers 0.88 on these same batches and fails it.
    """
    true = 1 / (MU - LAM)
    means = np.array([_mm1_mean_sojourn(10_000 + i) for i in range(1500)])
    assert abs(means.mean() - true) / true < 0.01  # the start-up bias is small (sd of this: 0.25%)
    cis = [mean_ci(batch) for batch in means.reshape(-1, 5)]
    assert all(c.n == 5 and math.isfinite(c.half_width) for c in cis)
    assert np.median([c.half_width for c in cis]) / true < 0.2  # the intervals are informative
    coverage = np.mean([c.low <= true <= c.high for c in cis])
    assert 0.90 <= coverage <= 0.98, coverage


# ---------------------------------------------------------------- paired differences


def test_paired_difference_with_common_random_numbers_is_tight_and_significant():
    rng = np.random.default_rng(5)
    a = 100 + rng.normal(0, 5, 10)  # replication-to-replication spread: sd 5
    b = a + 0.5 + rng.normal(0, 0.2, 10)  # the same seeds: the arms move together; effect 0.5
    d = paired_diff_ci(a, b)
    ref = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high))
    welch = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert d.unpaired_half_width == pytest.approx((welch.high - welch.low) / 2)
    assert d.n == 10 and d.mean == pytest.approx(np.mean(b - a))
    assert d.mean_a == pytest.approx(np.mean(a)) and d.mean_b == pytest.approx(np.mean(b))
    assert d.relative == pytest.approx(d.mean / np.mean(a))
    assert d.significant and 0 < d.low < 0.5 < d.high
    assert d.unpaired_half_width > 10 * d.half_width and d.tightening > 10
    assert d.unpaired_half_width > abs(d.mean)  # without CRN the same effect is lost in the noise


def test_paired_difference_null_case_and_edges():
    rng = np.random.default_rng(6)
    a = 100 + rng.normal(0, 5, 10)
    b = a + rng.normal(0, 0.2, 10)  # no effect
    d = paired_diff_ci(a, b)
    assert not d.significant and d.low < 0 < d.high
    # a pair with a missing value is dropped from both arms
    d2 = paired_diff_ci([1.0, 2.0, None, 4.0], [1.5, 2.5, 9.0, float("nan")])
    assert d2.n == 2 and d2.mean == pytest.approx(0.5) and d2.mean_a == pytest.approx(1.5)
    assert d2.half_width == 0 and d2.significant  # identical differences: exactly 0.5
    one = paired_diff_ci([1.0], [2.0])
    assert one.n == 1 and not one.significant and one.half_width == math.inf
    assert paired_diff_ci([0.0, 0.0, 0.0], [1.0, 1.2, 0.9]).relative is None
    with pytest.raises(ValueError):
        paired_diff_ci([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- knee and blow-up

X = np.arange(1, 31)


def test_knee_of_a_piecewise_linear_curve():
    k = knee(X, np.minimum(X, 10))
    assert k is not None and abs(k.x - 10) <= 1 and k.method == "marginal-gain"
    assert k.y == 10 and k.peak_x == 10 and k.peak_y == 10
    # unsorted, on a geometric grid (robots 2..64): the first grid point at or past the kink
    robots = np.array([64, 2, 16, 4, 32, 8])
    assert knee(robots, np.minimum(20 * robots, 300)).x == 16


def test_knee_of_a_saturating_curve_is_in_the_documented_band_wherever_the_sweep_ends():
    # y = A (1 - exp(-x/tau)) from x0: the knee is at about x0 + tau ln(1/frac) (the docstring):
    # 1 + 8 ln 5 = 13.9 at frac 0.2, 1 + 8 ln 2 = 6.5 at frac 0.5
    def curve(x):
        return 100 * (1 - np.exp(-x / 8))

    k = knee(X, curve(X))
    assert 13 <= k.x <= 15 and k.method == "marginal-gain" and k.peak_x == 30
    assert knee(np.arange(1, 61), curve(np.arange(1, 61))).x == k.x  # extending the sweep moves nothing
    fine = np.linspace(1, 30, 291)
    assert knee(fine, curve(fine)).x == pytest.approx(1 + 8 * np.log(5), abs=0.15)
    assert 6 <= knee(X, curve(X), frac=0.5).x <= 7


def test_knee_of_a_curve_that_falls_after_its_peak_reports_the_peak():
    tent = np.where(X <= 12, 3.0 * X, 36 - 4.0 * (X - 12))  # rises steadily, then gridlocks
    k = knee(X, tent)
    assert (k.x, k.method, k.peak_x, k.peak_y) == (12, "peak", 12, 36)
    crash = np.where(X <= 12, 3.0 * X, 5.0) + np.random.default_rng(3).normal(0, 1, X.size)
    k = knee(X, crash)
    assert k.peak_x == 12 and k.x == 12
    # flattens at 10, holds, then falls: the knee is where it flattened, the peak is reported too
    plateau_fall = np.where(X <= 15, np.minimum(X, 10), 10 - (X - 15.0))
    k = knee(X, plateau_fall)
    assert (k.x, k.method, k.peak_x, k.peak_y) == (10, "marginal-gain", 10, 10)


def test_no_knee():
    assert knee(X, 2 * X + 1) is None  # a straight line
    assert knee([1, 2], [1, 5]) is None  # fewer than 3 points
    assert knee([1, 2, 2, 2], [1, 2, 2.5, 3]) is None  # 2 distinct xs
    assert knee(X, 40 - X) is None  # never rises: saturated before the range
    assert knee(X, np.full(X.size, 3.0)) is None
    with pytest.raises(ValueError):
        knee(X, X, frac=0)


def test_knee_under_noise():
    rng = np.random.default_rng(11)
    k = knee(X, np.minimum(X, 10) + rng.normal(0, 0.3, X.size))
    assert k is not None and abs(k.x - 10) <= 2, k
    # and for each of 200 noise draws (all within 10 +- 2, 98% within +- 1, measured over 500):
    # a noisy plateau's highest point is an accident, not a peak followed by a fall (without the
    # noise allowance ~3% of draws end the search there and miss), and one low point is not a knee
    found = [knee(X, np.minimum(X, 10) + np.random.default_rng(seed).normal(0, 0.3, X.size)) for seed in range(200)]
    assert all(k is not None and abs(k.x - 10) <= 2 for k in found), [k.x for k in found if abs(k.x - 10) > 2]
    # replications at each x are averaged; missing and non-finite points dropped
    xs = np.repeat(X, 3)
    ys = np.minimum(xs, 10) + rng.normal(0, 0.3, xs.size)
    ys[[5, 40]] = np.nan
    k = knee(list(xs) + [31], list(ys) + [None])
    assert k is not None and abs(k.x - 10) <= 2, k


def test_blowup():
    xs = [2, 4, 8, 16, 32, 64]
    p99 = [1.0, 1.1, 1.3, 2.0, 3.5, 10.0]
    assert blowup(xs, p99) == 32
    assert blowup(xs, p99, factor=1.5) == 16
    assert blowup(xs, p99, factor=20) is None
    assert blowup(xs[::-1], p99[::-1]) == 32  # sorted by x first
    assert blowup([1, 2, 3, 4], [1.0, 1.2, math.inf, 1.0]) == 3  # non-finite is a blow-up
    assert blowup([1, 2, 3], [1.0, 1.2, float("nan")]) == 3
    assert blowup([1, 2, 3], [0, 0, 1]) == 3  # deadlocks: none at the baseline, then some
    assert blowup([1, 2, 3], [math.inf, 1, 1]) == 1
    assert blowup([1, 1, 2, 2], [1.0, 1.0, 2.0, 5.0]) == 2  # the mean of a point's replications
    assert blowup([], []) is None


# ---------------------------------------------------------------- summarise


def test_summarise_groups_by_the_parameters():
    rows = []
    for robots in (8, 2, 4):
        for zone in ("A", "B"):
            for seed in range(4):
                rows.append({"robots": robots, "zone": zone, "seed": seed,
                             "throughput": 10 * robots + seed + (zone == "B"),
                             "order_latency.p99": None if seed == 3 else robots / 2 + seed,
                             "deadlocks": {"count": seed % 2}})
    out = summarise(rows, by=["robots", "zone"], metrics=["throughput", "order_latency.p99", "deadlocks.count"])
    assert [(r["robots"], r["zone"]) for r in out] == [(2, "A"), (2, "B"), (4, "A"), (4, "B"), (8, "A"), (8, "B")]
    for r in out:
        mine = [row for row in rows if (row["robots"], row["zone"]) == (r["robots"], r["zone"])]
        assert r["n_rows"] == 4
        ci = mean_ci([row["throughput"] for row in mine])
        assert (r["throughput.mean"], r["throughput.low"], r["throughput.high"], r["throughput.n"]) == \
            (ci.mean, ci.low, ci.high, 4)
        assert r["throughput.mean"] == 10 * r["robots"] + 1.5 + (r["zone"] == "B")
        assert r["order_latency.p99.n"] == 3  # the None is not counted
        assert r["order_latency.p99.mean"] == pytest.approx(r["robots"] / 2 + 1)
        assert r["deadlocks.count.mean"] == 0.5  # a nested dict, reached by its dotted path
    by_robots = summarise(rows, by=["robots"], metrics=["throughput"])
    assert [(r["robots"], r["n_rows"], r["throughput.n"]) for r in by_robots] == [(2, 8, 8), (4, 8, 8), (8, 8, 8)]
    assert summarise([], by=["robots"], metrics=["throughput"]) == []
    mixed = summarise([{"p": None, "m": 1}, {"p": 2, "m": 3}], by=["p"], metrics=["m"])
    assert [r["p"] for r in mixed] == [None, 2]  # unsortable: first-seen order
    with pytest.raises(ValueError, match="robots"):
        summarise([{"throughput": 1}], by=["robots"], metrics=["throughput"])
