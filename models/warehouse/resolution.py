"""Resolution: the floor applies a set of actions, and everything that follows from it.

One resolution = one ``Floor.step`` (or ``step_one`` when a single robot acts)
plus its consequences: the trace record, rewards, picked orders, the Mesa grid
and the path log, progress and wait-for tracking, a new floor version.
"""
from __future__ import annotations

import zlib

import numpy as np

from desim.models.warehouse.floor import Action

PATH_ROBOTS = 8  # robots whose every position is recorded for the path plot
FORWARD = int(Action.FORWARD)  # a plain int: cheaper to compare than the enum member


class Resolver:
    """Applies actions to the floor and propagates what changed.

    ``rewards`` (per robot, accumulated) and ``paths`` (``(t, robot, x, y)`` of
    the first :data:`PATH_ROBOTS` robots) are its outputs; ``resolutions``
    counts floor steps.
    """

    def __init__(self, sim, floor, book, watcher, views, grid, robots, reward: str) -> None:
        self.sim, self.floor, self.book, self.watcher, self.views = sim, floor, book, watcher, views
        self.grid, self.robots = grid, robots
        self.global_reward = reward == "global"
        n = floor.n_agents
        self.n = n
        self.rewards = np.zeros(n)
        self.resolutions = 0
        pos = floor.positions
        self.paths: list[tuple[float, int, int, int]] = [(0.0, i, int(pos[i, 0]), int(pos[i, 1]))
                                                         for i in range(min(n, PATH_ROBOTS))]

    def _moved(self, i: int, c: int, now: float) -> None:
        self.watcher.moved(i, now)
        W = self.floor.width
        self.grid.move_agent(self.robots[i], (c % W, c // W))
        if i < PATH_ROBOTS:
            self.paths.append((now, i, c % W, c // W))

    def resolve(self, actions: np.ndarray) -> np.ndarray | None:
        """Every robot acts (``actions``: one :class:`Action` per robot): one synchronous floor step.

        Returns the mask of robots whose ``FORWARD`` left them in place (blocked), or None if none was."""
        f = self.floor
        now = self.sim.now
        cells, headings, cargo = f.cells, f.headings, f.cargo
        cell0, dir0, carry0 = cells.copy(), headings.copy(), cargo.copy()
        rewards, info = f.step(actions)
        self.sim.recorder.record(now, "floor", zlib.crc32(actions.tobytes()), zlib.crc32(cells.tobytes()), info["delivered"])
        self.rewards += rewards
        self.resolutions += 1
        self.views.touch()
        picked = np.flatnonzero((carry0 < 0) & (cargo >= 0))
        for i in picked.tolist():
            self.book.picked(now, int(cargo[i]), i)
        changed = (cells != cell0) | (headings != dir0) | (cargo != carry0)
        self.watcher.progressed(changed, now)
        moved = np.flatnonzero(cells != cell0)
        for i in moved.tolist():
            self._moved(i, int(cells[i]), now)
        self.watcher.wait_for(actions, cell0, dir0, changed)
        return f.refused if info["blocked"] else None

    def resolve_one(self, i: int, actions: np.ndarray) -> bool:
        """:meth:`resolve` when only robot ``i`` acts (the event tempo's usual case); True if its
        ``FORWARD`` left it in place (blocked)."""
        f = self.floor
        now = self.sim.now
        a = int(actions[i])
        cells, headings, cargo = f.cells, f.headings, f.cargo
        cell0, dir0, carry0 = int(cells[i]), int(headings[i]), int(cargo[i])
        rewards, info = f.step_one(i, a)
        self.sim.recorder.record(now, "floor", zlib.crc32(actions.tobytes()), zlib.crc32(cells.tobytes()), info["delivered"])
        if info["delivered"] or self.global_reward:
            self.rewards += rewards
        else:
            self.rewards[i] += rewards[i]
        self.resolutions += 1
        self.views.touch()
        c, carry = int(cells[i]), int(cargo[i])
        if carry0 < 0 and carry >= 0:
            self.book.picked(now, carry, i)
        if c != cell0 or int(headings[i]) != dir0 or carry != carry0:
            self.watcher.progressed_one(i, now)
            if c != cell0:
                self._moved(i, c, now)
            return False
        if a == FORWARD and int(f.neighbours[cell0, dir0]) != cell0:  # a blocked move: who is in the way?
            self.watcher.wait_for(actions, cells.copy(), headings.copy(), np.zeros(self.n, dtype=bool))
        return a == FORWARD
