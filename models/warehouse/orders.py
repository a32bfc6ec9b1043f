"""Orders: a production order stream and each order's life.

An order asks for one shelf to be brought to a goal. Its life:
created -> assigned (it occupies a request slot on the floor) -> picked (a
robot lifted its shelf) -> delivered (the shelf reached a goal), or failed
with a reason (``timeout``: not delivered within ``max_age`` seconds).
Conservation: created == completed + failed + pending, always.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Order:
    oid: int
    shelf: int
    created: float
    assigned: float | None = None
    picked: float | None = None
    delivered: float | None = None
    failed: float | None = None
    reason: str | None = None
    robot: int | None = None

    @property
    def latency(self) -> float | None:
        return None if self.delivered is None else self.delivered - self.created


@dataclass(frozen=True)
class Peak:
    """Arrival rate multiplied by ``factor`` during [at, at + duration)."""

    at: float
    duration: float
    factor: float


@dataclass
class OrderBook:
    """All orders of a run, the pending queue and the floor's request slots."""

    n_shelves: int
    slots: int
    max_age: float | None = None
    orders: list[Order] = field(default_factory=list)
    waiting: deque = field(default_factory=deque)  # created, not yet in a slot
    by_shelf: dict[int, Order] = field(default_factory=dict)  # shelf -> order holding a slot
    failed: Counter = field(default_factory=Counter)
    completed: int = 0
    in_pipeline: dict[int, Order] = field(default_factory=dict)  # oid -> created, held by the order pipeline

    def create(self, t: float, shelf: int, queue: bool = True) -> Order:
        """A new order, waiting for a slot (``queue``) or held by the order pipeline until :meth:`admit`."""
        o = Order(len(self.orders), int(shelf), t)
        self.orders.append(o)
        if queue:
            self.waiting.append(o)
        else:
            self.in_pipeline[o.oid] = o
        return o

    def admit(self, o: Order) -> None:
        """The pipeline is done with ``o``: it waits for a request slot."""
        del self.in_pipeline[o.oid]
        self.waiting.append(o)

    def fail(self, o: Order, t: float, reason: str) -> None:
        """The pipeline gives up on ``o``."""
        del self.in_pipeline[o.oid]
        self._fail(o, t, reason)

    def next_for_slot(self, t: float) -> int:
        """Shelf of the oldest waiting order whose shelf is not already requested, or -1."""
        for _ in range(len(self.waiting)):
            o = self.waiting.popleft()
            if o.shelf in self.by_shelf:
                self.waiting.append(o)  # its shelf is busy with an earlier order: keep waiting
                continue
            o.assigned = t
            self.by_shelf[o.shelf] = o
            return o.shelf
        return -1

    def picked(self, t: float, shelf: int, robot: int) -> None:
        o = self.by_shelf.get(shelf)
        if o is not None and o.picked is None:
            o.picked, o.robot = t, robot

    def delivered(self, t: float, shelf: int, robot: int) -> Order | None:
        o = self.by_shelf.pop(shelf, None)
        if o is None:
            return None
        o.delivered = t
        if o.picked is None:
            o.picked = t
        o.robot = robot
        self.completed += 1
        return o

    def expire(self, t: float) -> list[int]:
        """Fail orders older than ``max_age``; returns shelves whose slots they freed."""
        if self.max_age is None:
            return []
        freed = []
        while self.waiting and t - self.waiting[0].created > self.max_age:
            self._fail(self.waiting.popleft(), t, "timeout")
        for oid, o in list(self.in_pipeline.items()):
            if t - o.created > self.max_age:
                del self.in_pipeline[oid]
                self._fail(o, t, "timeout")
        for shelf, o in list(self.by_shelf.items()):
            if t - o.created > self.max_age:
                del self.by_shelf[shelf]
                self._fail(o, t, "timeout")
                freed.append(shelf)
        return freed

    def _fail(self, o: Order, t: float, reason: str) -> None:
        o.failed, o.reason = t, reason
        self.failed[reason] += 1

    @property
    def pending(self) -> int:
        return len(self.waiting) + len(self.by_shelf) + len(self.in_pipeline)

    def counts(self) -> dict:
        return {"created": len(self.orders), "completed": self.completed, "failed": dict(self.failed), "pending": self.pending}

    def conserved(self) -> bool:
        return len(self.orders) == self.completed + sum(self.failed.values()) + self.pending

    def latencies(self) -> np.ndarray:
        return np.array([o.latency for o in self.orders if o.delivered is not None], dtype=float)

    def latency_percentiles(self) -> dict:
        lat = self.latencies()
        if lat.size == 0:
            return {"p50": None, "p95": None, "p99": None}
        p = np.percentile(lat, [50, 95, 99])
        return {"p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2])}


def arrivals(rng: np.random.Generator, rate: float, peaks: list[Peak], until: float):
    """Yields inter-arrival gaps of a Poisson process whose rate is ``rate``
    times the factor of any active peak (thinning, so the peaks are exact)."""
    top = rate * max([1.0] + [p.factor for p in peaks])
    t = 0.0
    while t < until:
        gap = rng.exponential(1.0 / top)
        t += gap
        factor = 1.0
        for p in peaks:
            if p.at <= t < p.at + p.duration:
                factor *= p.factor
        yield gap, rng.random() < rate * factor / top
