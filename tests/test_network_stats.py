"""The network's random parts match their theory (fixed seeds: these never flake)."""
import numpy as np
import pytest
from scipy import stats

from desim import Agent, Simulation
from desim.network import DelayDist, LinkSpec, LossModel, Network
from desim.network import topology as T
from desim.network.distributions import DelaySampler
from desim.network.loss import LossProcess

DISTS = [
    DelayDist("uniform", 0.05, 0.02),
    DelayDist("normal", 0.01, 0.008),  # heavily truncated at 0
    DelayDist("lognormal", 0.03, 0.02),
    DelayDist("pareto", 0.02, alpha=2.5),
]


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.dist)
def test_sampled_delays_match_distribution_ks(dist):
    s = DelaySampler(dist, np.random.default_rng(1234))
    x = np.array([s.next() for _ in range(20_000)])
    assert stats.kstest(x, dist.frozen().cdf).pvalue > 0.01
    assert x.min() >= 0


def test_ks_detects_a_wrong_distribution():
    # the test above can fail: a lognormal is not a uniform with the same mean
    s = DelaySampler(DelayDist("lognormal", 0.05, 0.02), np.random.default_rng(1))
    x = np.array([s.next() for _ in range(20_000)])
    assert stats.kstest(x, DelayDist("uniform", 0.05, 0.02).frozen().cdf).pvalue < 1e-6


@pytest.mark.parametrize("dist", [DelayDist("normal", 0.05, 0.01, correlation=0.8), DelayDist("pareto", 0.05, alpha=3, correlation=0.5)],
                         ids=lambda d: d.dist)
def test_correlated_delays_keep_marginal_and_are_correlated(dist):
    s = DelaySampler(dist, np.random.default_rng(7))
    x = np.array([s.next() for _ in range(60_000)])
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert lag1 > 0.3 * dist.correlation
    thinned = x[::40]  # rho**40 is negligible: nearly independent draws of the marginal
    assert stats.kstest(thinned, dist.frozen().cdf).pvalue > 0.01
    uncorrelated = DelaySampler(DelayDist(dist.dist, dist.mean, dist.jitter, alpha=dist.alpha), np.random.default_rng(7))
    y = np.array([uncorrelated.next() for _ in range(60_000)])
    assert abs(np.corrcoef(y[:-1], y[1:])[0, 1]) < 0.02


def test_end_to_end_one_hop_delay_matches_link_distribution():
    dist = DelayDist("lognormal", 0.02, 0.01)
    sim = Simulation(5)
    Network(sim, T.line(2), LinkSpec(delay=dist))
    seen = []

    class Tx(Agent):
        def behaviour(self):
            for _ in range(5000):
                yield self.sim.env.timeout(0.001)
                self.send("n1", "m")

    class Rx(Agent):
        def deliver(self, msg):
            seen.append(self.sim.now - msg.sent_at)

    Tx(sim, "n0"), Rx(sim, "n1")
    sim.run(60)
    assert len(seen) == 5000
    assert stats.kstest(seen, dist.frozen().cdf).pvalue > 0.01


def _runs(lost: np.ndarray) -> np.ndarray:
    """Lengths of consecutive-loss runs."""
    padded = np.concatenate(([0], lost.astype(int), [0]))
    d = np.diff(padded)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def test_bernoulli_loss_rate_and_bursts():
    m = LossModel("bernoulli", p=0.1)
    proc = LossProcess(m, np.random.default_rng(3))
    lost = np.array([proc.lost() for _ in range(200_000)])
    n = lost.size
    assert abs(lost.mean() - 0.1) < 3 * np.sqrt(0.1 * 0.9 / n)
    assert abs(_runs(lost).mean() - 1 / (1 - 0.1)) < 0.02  # geometric bursts


def test_gilbert_elliott_loss_rate_and_mean_burst_length():
    m = LossModel("gilbert_elliott", p=0.05, r=0.25)
    proc = LossProcess(m, np.random.default_rng(4))
    lost = np.array([proc.lost() for _ in range(300_000)])
    assert m.rate == pytest.approx(0.05 / 0.30)
    assert lost.mean() == pytest.approx(m.rate, rel=0.03)
    assert _runs(lost).mean() == pytest.approx(1 / m.r, rel=0.03)  # bursts of 4, not Bernoulli's 1.2


def test_gilbert_elliott_partial_loss_rate():
    m = LossModel("gilbert_elliott", p=0.02, r=0.1, loss_good=0.01, loss_bad=0.5)
    proc = LossProcess(m, np.random.default_rng(5))
    lost = np.array([proc.lost() for _ in range(300_000)])
    assert lost.mean() == pytest.approx((0.1 * 0.01 + 0.02 * 0.5) / 0.12, rel=0.05)


def test_single_link_is_an_mm1_queue():
    """Poisson arrivals, exponential sizes, one FIFO link: mean sojourn 1/(mu - lambda)."""
    mean_size, bandwidth = 12_500, 1e8  # bytes, bits/s: mean service 1 ms, mu = 1000/s
    mu, lam = bandwidth / (8 * mean_size), 700.0
    sim = Simulation(21)
    Network(sim, T.line(2), LinkSpec(bandwidth=bandwidth))
    sojourn = []

    class Source(Agent):
        def behaviour(self):
            rng = self.sim.rng.stream("mm1")
            while True:
                yield self.sim.env.timeout(rng.exponential(1 / lam))
                self.send("n1", "job", size=max(1, round(rng.exponential(mean_size))))

    class Sink(Agent):
        def deliver(self, msg):
            sojourn.append(self.sim.now - msg.sent_at)

    Source(sim, "n0"), Sink(sim, "n1")
    sim.run(400)
    assert len(sojourn) > 250_000
    assert np.mean(sojourn[5000:]) == pytest.approx(1 / (mu - lam), rel=0.04)


def _jitter_run(buffer: bool):
    sim = Simulation(8)
    net = Network(sim, T.line(2), LinkSpec(delay=DelayDist("normal", 0.05, 0.02)), jitter_buffer=buffer)
    got = []

    class Tx(Agent):
        def behaviour(self):
            for _ in range(4000):
                yield self.sim.env.timeout(0.01)
                self.send("n1", "frame")

    class Rx(Agent):
        def deliver(self, msg):
            got.append((msg.seq, self.sim.now - msg.sent_at))

    Tx(sim, "n0"), Rx(sim, "n1")
    sim.run(100)
    return net, got


def test_jitter_buffer_removes_reordering_at_a_measured_cost():
    raw_net, raw = _jitter_run(False)
    jb_net, buffered = _jitter_run(True)
    raw_seq = np.array([s for s, _ in raw])
    assert np.mean(np.diff(raw_seq) < 0) > 0.1  # the link reorders heavily
    seq = np.array([s for s, _ in buffered])
    assert np.all(np.diff(seq) > 0)  # released strictly in order
    st = jb_net.jitter_stats()
    assert st["released"] == len(buffered)
    assert st["late"] == jb_net.conservation()["dropped"].get("late", 0)
    assert st["released"] + st["late"] + jb_net.in_flight == 4000
    assert st["late"] / 4000 < 0.05  # d + 4v covers nearly all of the spread
    added = np.mean([d for _, d in buffered]) - np.mean([d for _, d in raw])
    assert added == pytest.approx(st["mean_added_delay"], rel=0.1)
    assert 0.01 < added < 0.1  # the cost: tens of ms for a 20 ms-jitter link
