"""What a robot's brain sees: a snapshot of the floor and the robot's task.

A :class:`FloorView` is an immutable copy of the floor's dynamic state at time
``t``; in the event tempo a zone controller takes one and sends it to a robot,
so by the time the brain reads it it may be stale. All robots observed at one
instant share one view (one copy, not one per robot).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desim.models.warehouse.floor import TURN


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
        return cls(floor.width, floor.height, floor.highway.copy(), floor.goal_cells.copy(),
                   floor.shelf_homes.copy(), floor.neighbours.copy(), TURN)

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
        return cls(t, static, floor.cells.copy(), floor.headings.copy(), floor.cargo.copy(), floor.shelf_cells.copy(),
                   floor.requests.copy(), floor.occupancy.copy())

    @property
    def n_robots(self) -> int:
        return self.cell.size


@dataclass(frozen=True, slots=True)
class RobotObs:
    """One robot's observation: which robot, the (possibly stale) view, its task shelf (-1: none)."""

    agent: int
    view: FloorView
    task: int = -1


class Views:
    """The floor's current :class:`FloorView`, rebuilt only after the floor changed.

    Whoever changes the floor calls :meth:`touch`; :meth:`view` then takes one
    new snapshot, which every observation until the next change shares.
    """

    def __init__(self, floor, sim) -> None:
        self.floor, self.sim = floor, sim
        self.static = FloorStatic.of(floor)
        self.version = 0  # bumped on every change of the floor
        self._view: FloorView | None = None
        self._view_version = -1

    def touch(self) -> None:
        self.version += 1

    def view(self) -> FloorView:
        if self._view_version != self.version:
            self._view = FloorView.of(self.floor, self.sim.now, self.static)
            self._view_version = self.version
        return self._view
