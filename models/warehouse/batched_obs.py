"""Observations of a :class:`BatchedFloor`, batched on its device: ``(floors, robots, dim)`` float32.

- :class:`RwareObs`: rware 2.0.0's own observation vector, its flattened
  default with ``sensor_range`` 1 and ``msg_bits`` 0 (``_get_default_obs``
  with ``fast_obs``): the robot's x, y (cell units, not normalised), carrying,
  heading one-hot, on a highway; then for each cell of the 3x3 window (row by
  row, cells outside the floor empty): a robot there, its heading one-hot
  (``UP`` when there is no robot, as rware writes it), a shelf there, that
  shelf requested. 8 + 9 * 7 = 71 floats; checked equal to rware's output in
  ``tests/test_batched_obs.py``.
- :class:`FeatureObs`: the project's feature vector
  (:class:`~desim.models.warehouse.features.Encoder`, ``obs_dim(radius)``
  floats) with the planner's guidance, from distance maps precomputed once per
  layout for every target cell (loaded and unloaded) and for the goals. It
  keeps each robot's task shelf as the :class:`Dispatcher` does (kept while
  it matters, else the nearest free request); the dispatcher's choice is
  sequential over robots by definition (robot i skips what robots < i took),
  so that one part loops over the (few) robots, vectorised over floors.
  Checked equal to ``Encoder.encode`` over a Dispatcher in the same test file.
"""
from __future__ import annotations

import numpy as np
import torch

from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.features import N_SELF, obs_dim
from desim.models.warehouse.navigation import UNREACHABLE, Navigator
from desim.models.warehouse.observe import FloorStatic

__all__ = ["FeatureObs", "RwareObs", "RWARE_OBS_DIM"]

RWARE_OBS_DIM = 8 + 9 * 7


def _windows(H: int, W: int, r: int, outside: int) -> np.ndarray:
    """``(cells, (2r+1)^2)`` flat cells of each cell's window, row by row; ``outside`` off the floor."""
    ys, xs = np.divmod(np.arange(H * W), W)
    off = np.arange(-r, r + 1)
    wy = ys[:, None, None] + off[None, :, None]
    wx = xs[:, None, None] + off[None, None, :]
    inside = (wy >= 0) & (wy < H) & (wx >= 0) & (wx < W)
    return np.where(inside, wy * W + wx, outside).reshape(H * W, -1)


class RwareObs:
    """rware's flattened default observation (sensor range 1, no messages) of every robot of every floor."""

    dim = RWARE_OBS_DIM

    def __init__(self, floor: BatchedFloor) -> None:
        self.floor = f = floor
        dev = f.device
        C, W = f.n_cells, f.width
        # the grids' column C + 1 is never written: empty, as rware pads
        self.win = torch.as_tensor(_windows(f.height, W, 1, C + 1), device=dev)
        # the self block of every (cell, heading, carrying): x, y, carrying, heading one-hot, on a highway
        ys, xs = np.divmod(np.arange(C), W)
        hw = np.array(f.layout.highway).reshape(-1)
        selftab = np.zeros((C, 4, 2, 8), dtype=np.float32)
        selftab[..., 0] = xs[:, None, None]
        selftab[..., 1] = ys[:, None, None]
        selftab[..., 2] = np.arange(2)[None, None, :]
        for d in range(4):
            selftab[:, d, :, 3 + d] = 1.0
        selftab[..., 7] = hw[:, None, None]
        self.selftab = torch.as_tensor(selftab.reshape(C * 8, 8), device=dev)
        # one window cell from its code robot (0 none, 1 + heading) * 3 + shelf (0 none, 1 shelf, 2 requested)
        wintab = np.zeros((5, 3, 7), dtype=np.float32)
        wintab[0, :, 1] = 1.0  # no robot: heading UP, as rware writes it
        for d in range(4):
            wintab[1 + d, :, 0] = 1.0
            wintab[1 + d, :, 1 + d] = 1.0
        wintab[:, 1:, 5] = 1.0
        wintab[:, 2, 6] = 1.0
        self.wintab = torch.as_tensor(wintab.reshape(15, 7), device=dev)

    def __call__(self) -> torch.Tensor:
        f = self.floor
        E, n = f.n_floors, f.n_agents
        cell = f.cell
        me = self.selftab[cell * 8 + f.dir * 2 + (f.carry >= 0).long()]  # (E, n, 8)
        w = self.win[cell].reshape(E, n * 9)
        robot_code = torch.cat([f.dir + 1, f.dir.new_zeros(E, 1)], 1).gather(1, f.agent_grid.gather(1, w))
        shelf = f.shelf_grid.gather(1, w)
        req = torch.cat([f.in_queue.new_zeros(E, 1), f.in_queue], 1).gather(1, shelf)  # shelf id + 1 -> requested
        code = robot_code * 3 + (shelf > 0).long() + req.long()
        return torch.cat([me, self.wintab[code].view(E, n, 63)], 2)


class FeatureObs:
    """The project's feature vector (``features.Encoder``) of every robot of every floor.

    Call :meth:`reset_tasks` for floors that start a new episode (their
    robots' tasks are dropped, as a fresh Dispatcher's); each call of the
    object dispatches (in robot order) and encodes."""

    def __init__(self, floor: BatchedFloor, radius: int = 1) -> None:
        self.floor = f = floor
        self.radius = r = int(radius)
        self.dim = obs_dim(r)
        dev = f.device
        C, W, H = f.n_cells, f.width, f.height
        L = f.layout
        static = FloorStatic(W, H, np.array(L.highway).reshape(-1), np.array([y * W + x for x, y in L.goals]),
                             np.array([y * W + x for x, y in L.shelf_cells]), f.nbr.cpu().numpy().reshape(C, 4),
                             f.turn.cpu().numpy().reshape(5, 4))
        nav = Navigator(static, capacity=4 * C + 4)
        # maps[k] (cells*4 values, [cell * 4 + dir]): k < C unloaded to cell k, C <= k < 2C loaded to
        # cell k - C, 2C the nearest goal (loaded); UNREACHABLE where there is no way
        maps = [nav._compute(t, False) for t in range(C)] + [nav._compute(t, True) for t in range(C)]
        maps.append(np.minimum.reduce([nav._compute(int(g), True) for g in static.goal_cells]))
        self.maps = torch.as_tensor(np.stack(maps).reshape(-1), dtype=torch.long, device=dev)
        self.goal_map = 2 * C
        self.win = torch.as_tensor(_windows(H, W, r, C + 1), device=dev)
        self.eye = torch.eye(4, device=dev)
        ys, xs = np.divmod(np.arange(C), W)
        self.xy = torch.as_tensor(np.stack([xs / max(W - 1, 1), ys / max(H - 1, 1)], 1), dtype=torch.float32, device=dev)
        self.cx = torch.as_tensor(xs, device=dev)
        self.cy = torch.as_tensor(ys, device=dev)
        self.goal_layer = torch.zeros(C + 2, dtype=torch.float32, device=dev)
        self.goal_layer[torch.as_tensor(static.goal_cells, device=dev)] = 1.0
        self.tasks = torch.full((f.n_floors, f.n_agents), -1, dtype=torch.long, device=dev)

    def reset_tasks(self, mask: torch.Tensor | None = None) -> None:
        """Drop the tasks of every floor (``mask`` None) or of the masked floors (a fresh Dispatcher's)."""
        if mask is None:
            self.tasks.fill_(-1)
        else:
            self.tasks.masked_fill_(mask.to(self.floor.device)[:, None], -1)

    def distance(self, tasks: torch.Tensor) -> torch.Tensor:
        """``(E, N)`` planned actions from each robot's state to its target (0: at it, or no target),
        for ``tasks`` as they are (no dispatch): the shaping potential's ``d``."""
        f = self.floor
        m, _toggle, _loaded = self._plan(tasks)
        d = self.maps[m.clamp(min=0) * (f.n_cells * 4) + f.cell * 4 + f.dir]
        return torch.where(m >= 0, d, 0)

    def dispatch(self) -> torch.Tensor:
        """Every robot's task shelf, robot by robot as ``Dispatcher.dispatch(i)`` for i = 0, 1, ...

        Works on the request slots ``(E, Q)``, not on all shelves: a request is free when no robot
        goes for it or carries it."""
        f = self.floor
        tasks, carry, queue = self.tasks, f.carry, f.queue
        qcell = f.shelf_cell.gather(1, queue)  # (E, Q) cell of each requested shelf
        qx, qy = self.cx[qcell], self.cy[qcell]
        carried_q = (carry[:, None, :] == queue[:, :, None]).any(2)  # (E, Q)
        iq = self._requested(tasks)
        for i in range(f.n_agents):
            task, cargo = tasks[:, i], carry[:, i]
            keep = (task >= 0) & (iq[:, i] | (cargo == task))
            task = torch.where(keep, task, -1)
            free = ~(carried_q | (tasks[:, None, :] == queue[:, :, None]).any(2))
            here = f.cell[:, i]
            dist = (qx - self.cx[here][:, None]).abs() + (qy - self.cy[here][:, None]).abs()
            dist = torch.where(free, dist, 1 << 40)
            k = dist.argmin(1, keepdim=True)  # the first nearest, in request-slot order
            found = free.any(1)
            task = torch.where((task < 0) & (cargo < 0) & found, queue.gather(1, k)[:, 0], task)
            tasks[:, i] = task
        return tasks

    def _requested(self, shelves: torch.Tensor) -> torch.Tensor:
        """``(E, N)`` is each robot's shelf in ``shelves`` (-1: none) requested."""
        f = self.floor
        return (shelves >= 0) & f.in_queue.gather(1, shelves.clamp(min=0))

    def _nearest_free(self, home: torch.Tensor, free_home: torch.Tensor) -> torch.Tensor:
        """``(k,)`` the free shelf cell nearest (Manhattan) each of ``home`` ``(k,)``, the first in cell
        order among equals; ``free_home`` ``(k, S)`` marks the free shelf cells."""
        sh = self.floor.shelf_home
        hd = (self.cx[sh][None, :] - self.cx[home][:, None]).abs() + (self.cy[sh][None, :] - self.cy[home][:, None]).abs()
        return sh[torch.where(free_home, hd, 1 << 40).argmin(1)]

    def _plan(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``navigation.plan`` for every robot: (map index or -1 for none, toggle on arrival, loaded)."""
        f = self.floor
        E, n, C = f.n_floors, f.n_agents, f.n_cells
        cell, carry = f.cell, f.carry
        loaded = carry >= 0
        carried_requested = self._requested(carry)
        # a carried shelf no longer requested goes home, or to the free shelf cell nearest home
        home = f.shelf_home[carry.clamp(min=0)]
        parked = f.shelf_grid.gather(1, home) > 0
        free_home = f.shelf_grid.index_select(1, f.shelf_home) == 0  # (E, S) shelf cells without a shelf
        any_free = free_home.any(1)[:, None].expand(E, n)
        moved_home = (home != cell) & parked
        need = loaded & ~carried_requested & moved_home
        alt = home.clone()
        if f.may_sync:  # only the robots whose home is taken (few): (k, S)
            fl, rb = torch.nonzero(need, as_tuple=True)
            if fl.numel():
                alt[fl, rb] = self._nearest_free(home[fl, rb], free_home[fl])
        else:
            alt = torch.where(need, self._nearest_free(home.reshape(-1), free_home.repeat_interleave(n, 0)).view(E, n), home)
        dest = torch.where(moved_home, alt, home)
        going_home = loaded & ~carried_requested & ~(moved_home & ~any_free)
        # unloaded: the task shelf, unless it is no longer requested or someone else carries it
        task_ok = (~loaded) & self._requested(tasks)
        target = f.shelf_cell.gather(1, tasks.clamp(min=0))
        carrier = torch.where(carry[:, None, :] == tasks[:, :, None], f.idx[:, None, :], n).amin(2)  # first carrier
        task_ok &= (carrier == n) | (carrier == f.idx)
        # map index, or -1: at the target (or nothing to do)
        m = torch.full((E, n), -1, dtype=torch.long, device=f.device)
        m = torch.where(carried_requested, self.goal_map, m)
        m = torch.where(going_home & (dest != cell), C + dest, m)
        m = torch.where(task_ok & (target != cell), target, m)
        toggle = (going_home | task_ok) & ~carried_requested
        return m, toggle, loaded

    def __call__(self) -> torch.Tensor:
        f = self.floor
        E, n, C, r = f.n_floors, f.n_agents, f.n_cells, self.radius
        cell, d, carry = f.cell, f.dir, f.carry
        tasks = self.dispatch()
        m, toggle, loaded = self._plan(tasks)
        out = torch.empty(E, n, self.dim, dtype=torch.float32, device=f.device)
        out[:, :, 0:2] = self.xy[cell]
        out[:, :, 2:6] = self.eye[d]
        out[:, :, 6] = loaded.float()
        out[:, :, 7] = self._requested(carry).float()
        out[:, :, 8] = (tasks >= 0).float()
        has_map = m >= 0
        out[:, :, 9] = (~has_map & toggle).float()
        base = m.clamp(min=0) * (C * 4)
        ahead = f.nbr[cell * 4 + d]
        here = self.maps[base + cell * 4 + d]
        legal = (ahead != cell) & (~loaded | f.highway[ahead] | (self.maps[base + ahead * 4] == 0))
        fwd = torch.where(legal, self.maps[base + ahead * 4 + d], UNREACHABLE)
        left = self.maps[base + cell * 4 + f.turn[2 * 4 + d]]
        right = self.maps[base + cell * 4 + f.turn[3 * 4 + d]]
        for k, val in enumerate((fwd, left, right)):
            out[:, :, 10 + k] = torch.where(has_map, torch.where(val < here, 1.0, -1.0), 0.0)
        out[:, :, 13] = ((ahead != cell) & (f.agent_grid.gather(1, ahead) < n)).float()
        # the window: shelves, requested shelves, robots, goals, free cells (zero outside the floor)
        w = self.win[cell].reshape(E, -1)
        shelf = f.shelf_grid.gather(1, w)
        req_ext = torch.cat([f.in_queue.new_zeros(E, 1), f.in_queue], 1)
        robot = f.agent_grid.gather(1, w) < n
        inside = w <= C - 1
        k2 = (2 * r + 1) ** 2
        img = torch.stack([(shelf > 0), req_ext.gather(1, shelf), robot, self.goal_layer[w] > 0, inside & ~robot],
                          1)  # (E, 5, n*k2)
        out[:, :, N_SELF:].view(E, n, 5, k2).copy_(img.view(E, 5, n, k2).transpose(1, 2))
        return out
