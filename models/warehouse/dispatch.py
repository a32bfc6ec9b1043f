"""Task assignment: which requested shelf each robot goes for."""
from __future__ import annotations

import numpy as np


class Dispatcher:
    """Keeps one task shelf per robot (``tasks``, -1: none) and hands out new ones.

    A robot keeps its task while it still matters (the shelf is still requested,
    or the robot carries it); a robot with no task and no load gets the nearest
    (Manhattan) requested shelf that no other robot is going for or carrying.
    """

    def __init__(self, floor, n: int) -> None:
        self.floor = floor
        self.tasks = np.full(n, -1, dtype=np.int64)
        self.on_task = None  # called with i when an idle robot is given a task (the watcher's clocks)
        self.on_idle = None  # called with i when a robot's task is dropped before it carries the shelf

    def dispatch(self, i: int) -> int:
        """Robot ``i``'s task shelf: kept while it matters, else the nearest free request."""
        f = self.floor
        tasks = self.tasks
        cargo = f.cargo
        task = int(tasks[i])
        if task >= 0 and not f.requested[task] and cargo[i] != task:
            task = -1  # delivered, returned, or its order failed
            if cargo[i] < 0 and self.on_idle is not None:
                self.on_idle(i)
        if task < 0 and cargo[i] < 0:
            queue = f.requests
            req = queue[queue >= 0]
            if req.size:
                busy = np.zeros(f.n_shelves, dtype=bool)
                busy[tasks[tasks >= 0]] = True
                busy[cargo[cargo >= 0]] = True
                free = req[~busy[req]]
                if free.size:
                    W = f.width
                    here = int(f.cells[i])
                    cells = f.shelf_cells[free]
                    dist = np.abs(cells % W - here % W) + np.abs(cells // W - here // W)
                    task = int(free[np.argmin(dist)])
        if task >= 0 and tasks[i] < 0 and cargo[i] < 0 and self.on_task is not None:
            self.on_task(i)
        tasks[i] = task
        return task

    def has_work(self, i: int) -> bool:
        """Whether robot ``i`` has something to do (:meth:`busy` for one robot)."""
        return bool(self.tasks[i] >= 0 or self.floor.cargo[i] >= 0)

    def busy(self) -> np.ndarray:
        """Mask of robots with something to do: a task, or a load."""
        return (self.tasks >= 0) | (self.floor.cargo >= 0)
