"""Deadlocks and stuck robots: who waits for whom, and who has not progressed."""
from __future__ import annotations

import json

import numpy as np

from desim.models.warehouse.floor import Action

FORWARD = int(Action.FORWARD)  # a plain int: an array == IntEnum comparison is slow


class Watcher:
    """Counts deadlocks (``deadlocks``: ``wait_for_cycle`` and ``stuck``) and logs them in ``events``.

    - wait-for cycles: a robot whose ``FORWARD`` was blocked by another robot
      waits for it; a new cycle in that graph is one deadlock (counted once
      while it lasts).
    - stuck robots: a busy robot (a task or a load) that has not moved, turned
      or toggled for ``stuck_after`` seconds since it last did or since it was
      given its work, counted once until it progresses or its work ends.

    Both clocks (no progress, standing in one cell) run only while a robot has
    work: the time an idle robot sat parked before a task is not a deadlock.
    """

    def __init__(self, sim, floor, robots, events: list, stuck_after: float, dispatcher) -> None:
        n = floor.n_agents
        self.sim, self.floor, self.robots, self.events = sim, floor, robots, events
        self.n = n
        self.stuck_after = stuck_after
        self.deadlocks = {"wait_for_cycle": 0, "stuck": 0}
        self.last_progress = np.zeros(n)  # time each robot last changed cell, heading or load, or was given work
        self._stuck = np.zeros(n, dtype=bool)
        self._longest = 0.0  # the longest a robot counted as stuck went without progress (s), once it moved
        self._waits = np.full(n, -1, dtype=np.int64)  # robot each robot waits for, -1: none
        self._cycles: set[frozenset] = set()
        # standing still: a robot that turns in place progresses, but goes nowhere. The dispatcher
        # tells who has work; a stand counts from the later of the robot's last move and the
        # moment it was given its task
        self.dispatcher = dispatcher
        self.last_moved = np.zeros(n)
        self._longest_still = 0.0

    # -- progress (called by the resolution) --------------------------------
    def progressed(self, changed: np.ndarray, now: float) -> None:
        """Robots in mask ``changed`` changed cell, heading or load at ``now``."""
        ended = changed & self._stuck
        if ended.any():
            self._longest = max(self._longest, float(now - self.last_progress[ended].min()))
        self.last_progress[changed] = now
        self._stuck[changed] = False

    def progressed_one(self, i: int, now: float) -> None:
        """:meth:`progressed` for robot ``i`` alone: it waits for nobody any more."""
        if self._stuck[i]:
            self._longest = max(self._longest, float(now - self.last_progress[i]))
        self.last_progress[i] = now
        self._stuck[i] = False
        self._waits[i] = -1
        if self._cycles:
            self._cycles = {cyc for cyc in self._cycles if i not in cyc}

    def wait_for(self, actions: np.ndarray, cell0: np.ndarray, dir0: np.ndarray, changed: np.ndarray) -> None:
        """Track who waits for whom after a resolution; a new cycle in that graph is a deadlock.

        ``cell0``/``dir0``: cells and headings before it, ``changed``: who progressed."""
        f = self.floor
        n = self.n
        self._waits[changed] = -1
        tgt = f.neighbours[cell0, dir0]
        blocked = (actions == FORWARD) & ~changed & (tgt != cell0)
        if not blocked.any():
            return
        occ = f.occupancy[tgt[blocked]]
        idx = np.flatnonzero(blocked)
        self._waits[idx] = np.where(occ < n, occ, -1)
        cycles = set()
        waits = self._waits
        for start in idx.tolist():
            seen = [start]
            j = int(waits[start])
            while j >= 0 and j not in seen and len(seen) <= n:
                seen.append(j)
                j = int(waits[j])
            if j == start:
                cycles.add(frozenset(seen))
        for cyc in cycles - self._cycles:
            self.deadlocks["wait_for_cycle"] += 1
            self.events.append((self.sim.now, "deadlock", self.robots[min(cyc)].name,
                                json.dumps({"type": "wait_for_cycle", "robots": sorted(self.robots[r].name for r in cyc)})))
        self._cycles = {c for c in self._cycles | cycles if all(waits[r] >= 0 for r in c)}

    # -- standing in one cell -------------------------------------------------
    def task_given(self, i: int) -> None:
        """Robot ``i``, idle, was given a task now: its stand and its time without progress count
        from here, not from when it last moved."""
        now = self.sim.now
        self._end_stuck(i, now)  # (a spell whose work ended unnoticed)
        self.last_moved[i] = now
        self.last_progress[i] = now

    def work_ended(self, i: int) -> None:
        """Robot ``i``'s work ended where it stands (its task was dropped): a stuck spell or a
        stand it was in ends now, and is counted."""
        now = self.sim.now
        self._end_stuck(i, now)
        self._longest_still = max(self._longest_still, float(now - self.last_moved[i]))
        self.last_moved[i] = now

    def _end_stuck(self, i: int, now: float) -> None:
        if self._stuck[i]:
            self._longest = max(self._longest, float(now - self.last_progress[i]))
            self._stuck[i] = False

    def moved(self, i: int, now: float) -> None:
        """Robot ``i`` changed cell at ``now``."""
        if self.dispatcher.has_work(i):
            self._longest_still = max(self._longest_still, float(now - self.last_moved[i]))
        self.last_moved[i] = now

    def longest_still(self, now: float) -> float:
        """The longest a robot with work stood in one cell, in seconds, turning or not (the
        stands still going at ``now`` included): stricter than :meth:`longest_stuck`, which a
        robot turning in place resets."""
        busy = self.dispatcher.busy()
        still = float((now - self.last_moved[busy]).max()) if busy.any() else 0.0
        return max(self._longest_still, still)

    # -- stuck robots (called on every sample) -------------------------------
    def check_stuck(self, busy: np.ndarray, now: float) -> None:
        """Count busy robots that have made no progress for ``stuck_after`` seconds."""
        stuck = busy & ~self._stuck & (now - self.last_progress > self.stuck_after)
        for i in np.flatnonzero(stuck).tolist():
            self.deadlocks["stuck"] += 1
            self.events.append((now, "deadlock", self.robots[i].name,
                                json.dumps({"type": "stuck", "since": float(self.last_progress[i])})))
        self._stuck |= stuck

    def longest_stuck(self, now: float) -> float:
        """The longest a robot counted as stuck went without progress, in seconds (0 if none was),
        the robots still stuck at ``now`` included: how long the worst deadlock held."""
        still = float((now - self.last_progress[self._stuck]).max()) if self._stuck.any() else 0.0
        return max(self._longest, still)
