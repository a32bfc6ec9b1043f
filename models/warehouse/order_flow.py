"""Orders on the floor: what fills the request slots, when orders arrive and fail.

Without an ``[warehouse.orders]`` section the request queue behaves as rware's
(a delivered request is replaced at once by a random shelf, each replacement
an order). With one, orders arrive as a Poisson stream with peaks, wait for a
free request slot, and fail when older than ``max_age``.
"""
from __future__ import annotations

import json
import math

import numpy as np

from desim.models.warehouse.orders import OrderBook, Peak, arrivals


class OrderFlow:
    """Connects the :class:`OrderBook` to the floor's request slots.

    Starts its processes (arrivals, expiry) on construction when the scenario
    has orders; the floor calls :meth:`on_delivery` when a requested shelf
    reaches a goal.
    """

    def __init__(self, sim, floor, orders_cfg, slots: int, views, events: list) -> None:
        self.sim, self.floor, self.cfg, self.views, self.events = sim, floor, orders_cfg, views, events
        self.book = OrderBook(floor.n_shelves, slots, orders_cfg.max_age if orders_cfg else None)
        if orders_cfg is None:  # rware's queue: its initial requests are the first orders
            for s in floor.requests.tolist():
                self.book.create(0.0, s)
                self.book.next_for_slot(0.0)
        else:  # production: the floor starts with no requests; orders fill the slots
            for slot in range(slots):
                floor.set_request(slot, -1)
        floor.request_source = self.on_delivery
        self.pipeline = None  # the order pipeline (pipeline.Services), when the scenario has one

    def start(self) -> None:
        """Start the arrival and expiry processes (with an orders section)."""
        if self.cfg is not None:
            env = self.sim.env
            env.process(self._arrivals())
            if self.cfg.max_age is not None:
                env.process(self._expiry())

    def on_delivery(self, shelf: int, robot: int) -> int:
        """Called by the floor when ``shelf`` reaches a goal: the shelf for the freed slot."""
        now = self.sim.now
        self.book.delivered(now, shelf, robot)
        if self.cfg is None:  # rware: a random shelf not already requested
            f = self.floor
            cand = np.flatnonzero(~f.requested)
            cand = cand[cand != shelf]
            self.book.create(now, int(f.rng.choice(cand)))
        return self.book.next_for_slot(now)

    def fill_slots(self) -> None:
        """Put waiting orders into the floor's free request slots."""
        now = self.sim.now
        for slot in self.floor.free_slots().tolist():
            s = self.book.next_for_slot(now)
            if s < 0:
                break
            self.floor.set_request(slot, s)
            self.views.touch()

    def _arrivals(self):
        env = self.sim.env
        oc = self.cfg
        rng = self.sim.rng.stream("orders")
        peaks = [Peak(p.at, p.duration, p.factor) for p in oc.peaks]
        for gap, accept in arrivals(rng, oc.rate_per_hour / 3600.0, peaks, math.inf):
            yield env.timeout(gap)
            if accept:
                shelf = int(rng.integers(self.floor.n_shelves))
                if self.pipeline is not None:  # the pipeline checks it first, then admit() or fail()
                    self.pipeline.submit(self.book.create(env.now, shelf, queue=False))
                    continue
                self.book.create(env.now, shelf)
                self.fill_slots()

    def admit(self, order) -> None:
        """The order pipeline passed ``order``: it waits for a request slot."""
        self.book.admit(order)
        self.fill_slots()

    def fail(self, order, reason: str) -> None:
        """The order pipeline gave up on ``order``."""
        self.book.fail(order, self.sim.now, reason)
        self.events.append((self.sim.now, "order_failed", "", json.dumps({"shelf": order.shelf, "reason": reason})))

    def _expiry(self):
        env = self.sim.env
        while True:
            yield env.timeout(1.0)
            freed = self.book.expire(env.now)
            for shelf in freed:
                slot = int(np.flatnonzero(self.floor.requests == shelf)[0])
                self.floor.set_request(slot, -1)
                self.views.touch()
                self.events.append((env.now, "order_failed", "", json.dumps({"shelf": shelf, "reason": "timeout"})))
            if freed:
                self.fill_slots()
