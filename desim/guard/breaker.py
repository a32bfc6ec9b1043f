"""A circuit breaker per tool: closed, open, half-open.

- **closed**: calls pass; ``threshold`` consecutive failures open it (a success resets the count);
- **open**: calls are refused at once (the caller gets its safe default) for ``cooldown`` seconds,
  so a tool that is down is not hammered and callers do not wait on it;
- **half-open**: after the cool-down, up to ``probes`` calls pass as probes; a probe's success
  closes the breaker, its failure re-opens it for another cool-down.

The open -> half-open step is taken lazily, when the state is next asked for, and dated at the
moment the cool-down ended (``opened_at + cooldown``), so the recorded timeline is exact without a
timer event in the simulation. Every transition is reported through ``on_transition(t, old, new, why)``.
"""
from __future__ import annotations

from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    def __init__(self, threshold: int, cooldown: float, probes: int = 1,
                 on_transition: Callable[[float, str, str, str], None] | None = None):
        if threshold < 1 or probes < 1 or not cooldown > 0:
            raise ValueError("a breaker needs threshold >= 1, probes >= 1 and cooldown > 0")
        self.threshold, self.cooldown, self.probes = int(threshold), float(cooldown), int(probes)
        self.on_transition = on_transition
        self._state = CLOSED
        self.failures = 0  # consecutive failures while closed
        self.opened_at = 0.0
        self.in_flight = 0  # probes admitted in half-open and not yet reported
        self.opens = 0  # how many times it opened

    def _move(self, t: float, new: str, why: str) -> None:
        old, self._state = self._state, new
        if self.on_transition is not None:
            self.on_transition(t, old, new, why)

    def state(self, now: float) -> str:
        if self._state == OPEN and now >= self.opened_at + self.cooldown:
            self.in_flight = 0
            self._move(self.opened_at + self.cooldown, HALF_OPEN, f"cool-down of {self.cooldown:g} s over")
        return self._state

    def allow(self, now: float) -> bool:
        """May a call go to the tool now? In half-open, admitting a call takes one probe slot."""
        s = self.state(now)
        if s == CLOSED:
            return True
        if s == HALF_OPEN and self.in_flight < self.probes:
            self.in_flight += 1
            return True
        return False

    def success(self, now: float) -> None:
        if self._state == HALF_OPEN:
            self.in_flight = max(0, self.in_flight - 1)
            self.failures = 0
            self._move(now, CLOSED, "probe succeeded")
        elif self._state == CLOSED:
            self.failures = 0

    def failure(self, now: float, why: str = "") -> None:
        if self._state == HALF_OPEN:
            self.in_flight = max(0, self.in_flight - 1)
            self._open(now, f"probe failed: {why}" if why else "probe failed")
        elif self._state == CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open(now, f"{self.failures} consecutive failures" + (f", last: {why}" if why else ""))
        # a late answer while open (a call admitted before it opened) changes nothing

    def _open(self, now: float, why: str) -> None:
        self.opened_at, self.failures = now, 0
        self.opens += 1
        self._move(now, OPEN, why)
