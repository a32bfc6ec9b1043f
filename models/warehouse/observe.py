"""What a robot's brain sees: a snapshot of the floor and the robot's task.

A :class:`FloorView` is an immutable copy of the floor's dynamic state at time
``t``; in the event tempo a zone controller takes one and sends it to a robot,
so by the time the brain reads it it may be stale. All robots observed at one
instant share one view (one copy, not one per robot).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class FloorStatic:
    """The parts of a floor that never change: geometry, goals, shelf homes."""

    width: int
    height: int
    highway: np.ndarray  # (cells,) bool
    goal_cells: np.ndarray  # (goals,) flat cells
    shelf_home: np.ndarray  # (shelves,) flat cells
    nbr: np.ndarray  # (cells, 4) the cell ahead in each direction (itself at a wall)
    turn: np.ndarray  # (5, 4) action x direction -> new direction

    @classmethod
    def of(cls, floor) -> "FloorStatic":
        from desim.models.warehouse.floor import _TURN

        return cls(floor.width, floor.height, floor._highway.copy(), floor._goal_cells.copy(),
                   floor._shelf_home.copy(), floor._nbr.copy(), _TURN)

    @property
    def n_cells(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True, eq=False)
class FloorView:
    t: float
    static: FloorStatic
    cell: np.ndarray  # (robots,) flat cell of each robot
    dir: np.ndarray  # (robots,)
    carry: np.ndarray  # (robots,) shelf id or -1
    shelf_cell: np.ndarray  # (shelves,)
    queue: np.ndarray  # requested shelf ids (-1: empty slot)
    agent_grid: np.ndarray  # (cells,) robot index, or n_robots where empty

    @classmethod
    def of(cls, floor, t: float, static: FloorStatic) -> "FloorView":
        return cls(t, static, floor._cell.copy(), floor._dir.copy(), floor._carry.copy(), floor._shelf_cell.copy(),
                   floor._queue.copy(), floor._agent_grid.copy())

    @property
    def n_robots(self) -> int:
        return self.cell.size


@dataclass(frozen=True, slots=True)
class RobotObs:
    """One robot's observation: which robot, the (possibly stale) view, its task shelf (-1: none)."""

    agent: int
    view: FloorView
    task: int = -1
