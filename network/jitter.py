"""Adaptive jitter buffer, one per receiving stream (src -> dst).

Transit time n = arrival - sent_at feeds two exponentially weighted estimators
(RFC 3550 / Ramjee et al. "algorithm 1"): the mean d̂ and the mean deviation
v̂. A message is played out at sent_at + d̂ + 4·v̂ (never before it arrived),
in sequence order; a message that arrives after a later one was released is
late and dropped. The buffer trades added delay for order.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import simpy


class JitterBuffer:
    def __init__(self, env: simpy.Environment, release: Callable, drop: Callable,
                 alpha: float = 15 / 16, k: float = 4.0, history: int = 1024):
        self.env = env
        self._release_cb, self._drop_cb = release, drop
        self.alpha, self.k = alpha, k
        self.d_hat: float | None = None
        self.v_hat = 0.0
        self.last_released = -1
        self.buffer: dict[int, tuple] = {}
        self._recent: deque[int] = deque(maxlen=history)
        self._recent_set: set[int] = set()
        self.released = 0
        self.late = 0
        self.duplicates = 0
        self.added_delay = 0.0  # total seconds held, over released messages

    @property
    def playout_delay(self) -> float:
        return (self.d_hat or 0.0) + self.k * self.v_hat

    def arrive(self, msg, token) -> None:
        now = self.env.now
        n = now - msg.sent_at
        if self.d_hat is None:
            self.d_hat = n
        else:
            a = self.alpha
            self.d_hat = a * self.d_hat + (1 - a) * n
            self.v_hat = a * self.v_hat + (1 - a) * abs(self.d_hat - n)
        seq = msg.seq
        if seq in self.buffer or seq in self._recent_set:
            self.duplicates += 1
            self._drop_cb(msg, token, "duplicate")
            return
        if seq <= self.last_released:
            self.late += 1
            self._drop_cb(msg, token, "late")
            return
        self.buffer[seq] = (msg, token, now)
        wait = msg.sent_at + self.playout_delay - now
        if wait <= 0:
            self._release_upto(seq)
        else:
            self.env.timeout(wait).callbacks.append(lambda _ev, s=seq: self._release_upto(s))

    def _release_upto(self, seq: int) -> None:
        if seq <= self.last_released:
            return
        now = self.env.now
        for s in sorted(q for q in self.buffer if q <= seq):
            msg, token, arrived = self.buffer.pop(s)
            self.released += 1
            self.added_delay += now - arrived
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(s)
            self._recent_set.add(s)
            self._release_cb(msg, token)
        self.last_released = seq

    def stats(self) -> dict:
        return {"released": self.released, "late": self.late, "duplicates": self.duplicates,
                "held": len(self.buffer), "mean_added_delay": self.added_delay / self.released if self.released else 0.0,
                "playout_delay": self.playout_delay}
