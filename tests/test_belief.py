"""Belief states (desim/belief.py): uncertainty grows with staleness, a fresh read shrinks it, a stale
read that arrives late never overwrites a newer one, and belief off is the last raw read."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from desim.belief import BeliefCfg, PositionBelief, ScalarBelief
from desim.scenario import ScenarioError, parse


def test_uncertainty_grows_with_staleness():
    b = ScalarBelief(q=0.5, r=1.0, initial_std=10.0)
    b.update(20.0, t_read=1.0)
    stds = [b.estimate(now).std for now in (1.0, 2.0, 5.0, 30.0)]
    assert all(a < c for a, c in zip(stds, stds[1:]))
    e = b.estimate(5.0)
    assert e.std == pytest.approx(math.sqrt(b.var + 0.5 * 4.0)) and e.age == 4.0


def test_a_fresh_read_shrinks_the_uncertainty_and_moves_the_mean_towards_it():
    b = ScalarBelief(q=0.5, r=1.0, initial_std=10.0)
    b.update(20.0, t_read=0.0)
    before = b.estimate(10.0)
    b.update(14.0, t_read=10.0)
    after = b.estimate(10.0)
    assert after.std < before.std and after.std < 1.0  # never worse than one read's noise
    m1, p1 = 20 * 100 / 101, 100 / 101  # after the first read: k = 100 / (100 + 1)
    p = p1 + 0.5 * 10  # predicted to the second read's time
    assert 14.0 <= after.mean < 20.0 and after.mean == pytest.approx(m1 + p / (p + 1) * (14 - m1))
    assert after.std == pytest.approx(math.sqrt(p * 1 / (p + 1)))


def test_an_out_of_order_stale_read_does_not_overwrite_a_newer_one():
    b = ScalarBelief(q=0.5, r=0.01, initial_std=10.0)
    assert b.update(5.0, t_read=10.0)
    newest = b.estimate(12.0)
    assert not b.update(50.0, t_read=4.0)  # reflects an older time: arrived late
    assert not b.update(50.0, t_read=10.0)  # the same time again: a duplicate
    assert b.estimate(12.0) == newest and b.ignored == 2


def test_belief_off_is_the_last_raw_read_received():
    b = ScalarBelief(q=0.5, r=1.0, initial_std=10.0, enabled=False)
    b.update(5.0, t_read=10.0)
    b.update(50.0, t_read=4.0)  # stale, but the naive agent takes it
    e = b.estimate(100.0)
    assert e.mean == 50.0 and e.std == 0.0 and e.reads == 2


def test_known_own_changes_shift_the_mean_only():
    b = ScalarBelief(q=0.5, r=1.0, initial_std=10.0)
    b.update(20.0, t_read=0.0)
    std = b.estimate(1.0).std
    b.shift(-3)
    assert b.estimate(1.0).mean == pytest.approx(b.mean) and b.estimate(1.0).std == std


def test_a_non_finite_read_is_ignored():
    b = ScalarBelief(q=0.5, r=1.0, initial_std=10.0)
    assert not b.update(float("nan"), t_read=1.0) and not b.update(1.0, t_read=float("inf"))
    assert b.reads == 0 and b.estimate(2.0).mean == 0.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), lag=st.floats(0.5, 20))
def test_the_filter_beats_the_last_raw_read_when_reads_arrive_stale_and_reordered(seed, lag):
    """A random walk read through a replica with random lag, arriving out of order: the filtered
    estimate's error is no worse on average than the naive agent's (which takes whatever came last)."""
    rng = np.random.default_rng(seed)
    q, r = 1.0, 4.0
    times = np.arange(0, 200.0, 1.0)
    truth = np.cumsum(rng.normal(0, math.sqrt(q), times.size)) + 100
    reads = truth + rng.normal(0, math.sqrt(r), times.size)
    arrive = times + rng.exponential(lag, times.size)
    order = np.argsort(arrive)
    on, off = ScalarBelief(q, r, 10.0, prior=100.0), ScalarBelief(q, r, 10.0, prior=100.0, enabled=False)
    err_on = err_off = 0.0
    for i in order:
        on.update(reads[i], times[i]), off.update(reads[i], times[i])
        k = min(int(arrive[i]), times.size - 1)
        err_on += (on.estimate(arrive[i]).mean - truth[k]) ** 2
        err_off += (off.estimate(arrive[i]).mean - truth[k]) ** 2
    assert err_on < err_off


def test_position_is_filtered_per_axis():
    p = PositionBelief(q=0.5, r=0.05, initial_std=10.0)
    p.update((3.0, 4.0), t_read=1.0)
    ex, ey = p.estimate(1.0)
    assert ex.mean == pytest.approx(3.0, abs=0.01) and ey.mean == pytest.approx(4.0, abs=0.01)
    assert p.estimate(9.0)[0].std > ex.std
    assert not p.update((30.0, 40.0), t_read=0.5)  # older than what it holds
    assert p.mean() == pytest.approx((ex.mean, ey.mean))
    off = PositionBelief(0.5, 0.05, 10.0, enabled=False)
    off.update((3.0, 4.0), 5.0), off.update((1.0, 1.0), 2.0)
    assert off.mean() == (1.0, 1.0)


def test_the_belief_section():
    sc = parse('name = "x"\n[belief]\nenabled = false\n[belief.inventory]\nq = 2.0\n')
    assert sc.belief.enabled is False and sc.belief.inventory.q == 2.0
    assert parse('name = "x"\n').belief == BeliefCfg()
    b = sc.belief.inventory_belief(now=0.0, prior=7.0)
    b.update(3.0, 1.0), b.update(9.0, 0.5)
    assert b.estimate(2.0).mean == 9.0  # off: the last raw read
    with pytest.raises(ScenarioError, match=r"^s.toml: belief.inventory.r: "):
        parse('name = "x"\n[belief.inventory]\nr = 0.0\n', file="s.toml")
