"""Loss models: independent (Bernoulli) and bursty (Gilbert-Elliott)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LossModel:
    """Packet loss.

    - ``bernoulli``: each message is lost with probability ``p``.
    - ``gilbert_elliott``: a two-state Markov chain stepped once per message;
      Good -> Bad with probability ``p``, Bad -> Good with ``r``; a message is
      lost with ``loss_good`` in Good and ``loss_bad`` in Bad. Stationary loss
      rate: (r * loss_good + p * loss_bad) / (p + r); with loss_good = 0 and
      loss_bad = 1 the mean burst of consecutive losses is 1 / r.
    """

    model: str = "none"
    p: float = 0.0
    r: float = 1.0
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self):
        if self.model not in ("none", "bernoulli", "gilbert_elliott"):
            raise ValueError(f"unknown loss model {self.model!r} (expected none, bernoulli or gilbert_elliott)")
        for name in ("p", "r", "loss_good", "loss_bad"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1] (got {v})")
        if self.model == "gilbert_elliott" and self.p + self.r == 0:
            raise ValueError("gilbert_elliott needs p + r > 0")

    @property
    def rate(self) -> float:
        """Long-run fraction of messages lost."""
        if self.model == "bernoulli":
            return self.p
        if self.model == "gilbert_elliott":
            return (self.r * self.loss_good + self.p * self.loss_bad) / (self.p + self.r)
        return 0.0


class LossProcess:
    """Draws loss decisions for one directed link."""

    __slots__ = ("model", "rng", "bad", "_u")

    def __init__(self, model: LossModel, rng: np.random.Generator):
        self.model = model
        self.rng = rng
        self.bad = False
        self._u: list[float] = []

    def _uniform(self) -> float:
        if not self._u:
            self._u = self.rng.random(1024).tolist()
        return self._u.pop()

    def lost(self) -> bool:
        m = self.model
        if m.model == "bernoulli":
            return m.p > 0 and self._uniform() < m.p
        if m.model == "gilbert_elliott":
            u = self._uniform()
            self.bad = (u >= m.r) if self.bad else (u < m.p)
            return self._uniform() < (m.loss_bad if self.bad else m.loss_good)
        return False
