"""Belief states: what an agent believes a quantity is, from timestamped, possibly stale reads.

A replica's read of a stock level reflects the primary at some earlier time; a peer's position
arrives over a network that delays and reorders. An agent that acts on the last raw read acts on
stale data as if it were fresh, and a late packet can replace a newer value with an older one.
A belief instead keeps a filtered estimate, a mean and an uncertainty, and:

- grows the uncertainty with staleness: the quantity is modelled as a random walk, so its
  variance grows by ``q`` per second since the time the estimate reflects
  (``var(now) = P + q * (now - t)``);
- folds each read in with a 1-D Kalman update, weighting it against the estimate by their
  variances (a read's own noise is ``r``); a read carries the time it *reflects* (the replica's
  version time, the peer's send time), and the filter first predicts to that time;
- ignores a read that reflects a time no later than one it already has (an out-of-order or
  duplicate stale read never overwrites a newer one);
- knows the agent's own effects: :meth:`ScalarBelief.shift` moves the mean by a known change
  (an order took 3 units) without touching the uncertainty.

A position is two such filters, one per axis (:class:`PositionBelief`). With ``[belief] enabled =
false`` the estimate is the last raw read received, whatever its time, with zero uncertainty: the
naive agent, for comparison.

The scenario section ``[belief]`` (registered by :func:`register`, entry point ``belief``)::

    [belief]
    enabled = true
    [belief.inventory]        # units of stock
    q = 0.5                   # variance added per second of staleness (units^2/s)
    r = 1.0                   # variance of one read (units^2)
    initial_std = 100.0       # before the first read
    [belief.position]         # floor cells, per axis
    q = 0.5
    r = 0.05
    initial_std = 10.0

``peers = true`` (default false) makes the warehouse's robots act on these position beliefs of
their peers in the event tempo (``models/warehouse/peers.py``): a robot holds instead of driving
into a cell that a peer's believed position covers, ``|mean - cell| <= max(0.5, peer_k * std)``
on both axes, for at most ``peer_patience`` decisions in a row.

Use: ``b = sc.belief.inventory_belief(now)``; ``b.update(value, t_read, now)``;
``est = b.estimate(now)`` (``mean``, ``std``, ``age``, ``reads``); a plausibility band for the
guard: ``{"expected": est.mean, "tolerance": 3 * est.std + slack}``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from desim.registry import SectionSpec, sections
from desim.scenario import Section

MAX_VAR = 1e12


class FilterCfg(Section):
    q: float = Field(0.5, ge=0, le=MAX_VAR, description="variance added per second of staleness")
    r: float = Field(1.0, gt=0, le=MAX_VAR, description="variance of one read")
    initial_std: float = Field(100.0, gt=0, le=1e6, description="uncertainty before the first read")


class BeliefCfg(Section):
    enabled: bool = True
    peers: bool = Field(False, description="robots act on beliefs of their peers' positions (warehouse, event tempo): "
                                           "a robot holds rather than drive into a cell a peer may be in")
    peer_k: float = Field(2.0, ge=0, le=10, description="a peer's believed position covers a cell within max(0.5, "
                                                        "peer_k * std) on both axes")
    peer_patience: int = Field(4, ge=1, le=1000, description="the most decisions in a row a robot holds for its "
                                                             "peers; the next FORWARD goes through (no hold standoff)")
    inventory: FilterCfg = FilterCfg()
    position: FilterCfg = FilterCfg(q=0.5, r=0.05, initial_std=10.0)

    def inventory_belief(self, now: float = 0.0, prior: float = 0.0) -> "ScalarBelief":
        return ScalarBelief(self.inventory.q, self.inventory.r, self.inventory.initial_std, prior, now, self.enabled)

    def position_belief(self, now: float = 0.0, prior: tuple[float, float] = (0.0, 0.0)) -> "PositionBelief":
        p = self.position
        return PositionBelief(p.q, p.r, p.initial_std, prior, now, self.enabled)


def register() -> None:
    """Register ``[belief]`` (entry point ``belief``)."""
    sections.register("belief", SectionSpec(BeliefCfg, BeliefCfg(), owner="desim.belief",
                                            description="filtered estimates from stale reads (off: the last raw read)"))


@dataclass(frozen=True)
class Estimate:
    mean: float
    std: float  # 0 when belief is off (the naive agent is sure of its last read)
    age: float  # seconds since the time the newest read reflects (inf before any read)
    reads: int  # reads folded in (off: received)


class ScalarBelief:
    """A 1-D Kalman filter on a random walk, updated from timestamped reads (see the module)."""

    def __init__(self, q: float, r: float, initial_std: float, prior: float = 0.0, now: float = 0.0,
                 enabled: bool = True):
        if not (q >= 0 and r > 0 and initial_std > 0):
            raise ValueError("a belief needs q >= 0, r > 0 and initial_std > 0")
        self.q, self.r, self.enabled = float(q), float(r), enabled
        self.mean, self.var, self.t = float(prior), float(initial_std) ** 2, float(now)  # the estimate as of t
        self.read_t: float | None = None  # the time the newest folded-in read reflects
        self.reads = 0
        self.ignored = 0  # stale reads that came after a newer one

    def update(self, value: float, t_read: float, now: float | None = None) -> bool:
        """Fold in a read of ``value`` that reflects time ``t_read``; False if ignored as stale
        (belief on: it reflects a time no later than a read already held) or not finite."""
        value, t_read = float(value), float(t_read)
        if not (math.isfinite(value) and math.isfinite(t_read)):
            self.ignored += 1
            return False
        if not self.enabled:  # the naive agent: the last read received wins
            self.mean, self.var, self.t, self.read_t = value, 0.0, t_read, t_read
            self.reads += 1
            return True
        if self.read_t is not None and t_read <= self.read_t:
            self.ignored += 1
            return False
        p = self.var + self.q * max(0.0, t_read - self.t)  # predict to the read's time
        k = p / (p + self.r)
        self.mean += k * (value - self.mean)
        self.var = (1.0 - k) * p
        self.t = max(self.t, t_read)
        self.read_t = t_read
        self.reads += 1
        return True

    def shift(self, delta: float) -> None:
        """A known change the agent made itself (it took ``-delta`` units): the mean moves, the uncertainty stays."""
        self.mean += float(delta)

    def estimate(self, now: float) -> Estimate:
        age = math.inf if self.read_t is None else max(0.0, now - self.read_t)
        if not self.enabled:
            return Estimate(self.mean, 0.0, age, self.reads)
        var = self.var + self.q * max(0.0, now - self.t)
        return Estimate(self.mean, math.sqrt(var), age, self.reads)


class PositionBelief:
    """A peer's (x, y): one :class:`ScalarBelief` per axis, updated together."""

    def __init__(self, q: float, r: float, initial_std: float, prior: tuple[float, float] = (0.0, 0.0),
                 now: float = 0.0, enabled: bool = True):
        self.x = ScalarBelief(q, r, initial_std, prior[0], now, enabled)
        self.y = ScalarBelief(q, r, initial_std, prior[1], now, enabled)

    def update(self, xy: tuple[float, float], t_read: float, now: float | None = None) -> bool:
        x, y = float(xy[0]), float(xy[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            self.x.ignored += 1
            return False
        ok = self.x.update(x, t_read)
        if ok:
            self.y.update(y, t_read)
        return ok

    def estimate(self, now: float) -> tuple[Estimate, Estimate]:
        return self.x.estimate(now), self.y.estimate(now)

    def mean(self, now: float | None = None) -> tuple[float, float]:
        return self.x.mean, self.y.mean
