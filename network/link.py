"""A link: delay, loss, duplication, corruption and bandwidth with a FIFO queue."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from desim.network.distributions import DelayDist, DelaySampler
from desim.network.loss import LossModel, LossProcess


@dataclass(frozen=True)
class LinkSpec:
    """What a link does to a message. ``bandwidth`` in bits/s (0: unlimited);
    ``queue_limit`` in messages waiting to be sent (0: unbounded)."""

    delay: DelayDist = field(default_factory=DelayDist)
    loss: LossModel = field(default_factory=LossModel)
    bandwidth: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    queue_limit: int = 0

    def __post_init__(self):
        if self.bandwidth < 0:
            raise ValueError("bandwidth must be >= 0")
        for name in ("duplicate", "corrupt"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1] (got {v})")
        if self.queue_limit < 0:
            raise ValueError("queue_limit must be >= 0")

    def expected_latency(self, size: int = 0) -> float:
        ser = size * 8 / self.bandwidth if self.bandwidth else 0.0
        return self.delay.expected + ser


class Link:
    """Runtime state of one directed link ``u -> v``.

    The FIFO transmit queue is kept analytically: a message starts serialising
    when the previous one has left (``busy_until``), so waiting plus
    serialisation is one timeout, exactly as an M/M/1 server would give.
    """

    __slots__ = ("u", "v", "spec", "sampler", "loss", "busy_until", "extra_delay", "delay_scale",
                 "bw_scale", "_u", "rng", "_departures", "sent", "delays")

    def __init__(self, u: str, v: str, spec: LinkSpec, rng: np.random.Generator, record_delays: bool = False):
        self.u, self.v, self.spec, self.rng = u, v, spec, rng
        self.sampler = DelaySampler(spec.delay, rng)
        self.loss = LossProcess(spec.loss, rng)
        self.busy_until = 0.0
        self.extra_delay = 0.0  # added by latency-spike faults
        self.delay_scale = 1.0
        self.bw_scale = 1.0  # < 1 while a slow-link fault is active
        self._u: list[float] = []
        self._departures: deque[float] = deque()
        self.sent = 0
        self.delays: list[float] | None = [] if record_delays else None

    def _uniform(self) -> float:
        if not self._u:
            self._u = self.rng.random(1024).tolist()
        return self._u.pop()

    def transmit(self, now: float, size: int) -> float | None:
        """Time from ``now`` until a message of ``size`` bytes arrives at ``v``
        (queueing + serialisation + propagation), or None if the queue is full."""
        spec = self.spec
        if spec.bandwidth:
            start = self.busy_until if self.busy_until > now else now
            if spec.queue_limit:
                q = self._departures
                while q and q[0] <= now:
                    q.popleft()
                if len(q) >= spec.queue_limit:
                    return None
            done = start + size * 8.0 / (spec.bandwidth * self.bw_scale)
            self.busy_until = done
            if spec.queue_limit:
                self._departures.append(done)
            wait = done - now
        else:
            wait = 0.0
        prop = self.sampler.next() * self.delay_scale + self.extra_delay
        self.sent += 1
        if self.delays is not None:
            self.delays.append(wait + prop)
        return wait + prop

    def duplicated(self) -> bool:
        return self.spec.duplicate > 0 and self._uniform() < self.spec.duplicate

    def corrupted(self) -> bool:
        return self.spec.corrupt > 0 and self._uniform() < self.spec.corrupt

    @property
    def expected_latency(self) -> float:
        return self.spec.delay.expected * self.delay_scale + self.extra_delay
