"""Distance maps over robot states (cell, heading) for planning on the floor.

``distance_map(static, target, loaded)[cell, dir]`` is the least number of
actions (FORWARD, LEFT, RIGHT each cost 1) from that state to reach
``target``. An unloaded robot may drive anywhere (under shelves too); a loaded
robot only along highways, plus the target cell itself (rware's rule: a
carried shelf cannot pass under a parked one). Computed backwards from the
target with a vectorised breadth-first wavefront, and cached.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from desim.models.warehouse.observe import FloorStatic

UNREACHABLE = np.iinfo(np.int32).max // 2


class Navigator:
    """Caches distance maps for one floor (LRU, ``capacity`` maps)."""

    def __init__(self, static: FloorStatic, capacity: int = 1024):
        self.static = static
        self.capacity = capacity
        self._maps: OrderedDict[tuple, np.ndarray] = OrderedDict()
        nc = static.n_cells
        # behind[c, d]: the cell from which moving FORWARD with heading d lands on c (-1 if none)
        behind = np.full((nc, 4), -1, dtype=np.int64)
        src = np.arange(nc)
        for d in range(4):
            dst = static.nbr[:, d]
            ok = dst != src
            behind[dst[ok], d] = src[ok]
        self._behind = behind
        # turn_from[a][d] = the headings that action a (LEFT=2/RIGHT=3) turns into d
        self._turn_from = {a: np.argsort(static.turn[a]) for a in (2, 3)}

    def distance_map(self, target: int, loaded: bool) -> np.ndarray:
        key = (int(target), bool(loaded))
        m = self._maps.get(key)
        if m is not None:
            self._maps.move_to_end(key)
            return m
        m = self._compute(*key)
        self._maps[key] = m
        if len(self._maps) > self.capacity:
            oldest = next(iter(self._maps))
            if oldest in (("goals", True), ("parking", False)):
                self._maps.move_to_end(oldest)
            self._maps.popitem(last=False)
        return m

    def nearest_goal_map(self) -> np.ndarray:
        """Loaded distance to the nearest goal (the minimum over goals' maps)."""
        m = self._maps.get(("goals", True))
        if m is None:
            maps = [self.distance_map(int(g), True) for g in self.static.goal_cells]
            m = np.minimum.reduce(maps) if len(maps) > 1 else maps[0]
            self._maps[("goals", True)] = m
        return m

    def parking_map(self) -> np.ndarray:
        """Unloaded distance to the nearest non-highway cell (parking under a shelf)."""
        m = self._maps.get(("parking", False))
        if m is None:
            m = self._maps[("parking", False)] = self._compute(np.flatnonzero(~self.static.highway), False)
        return m

    def _compute(self, target, loaded: bool) -> np.ndarray:
        st = self.static
        nc = st.n_cells
        targets = np.atleast_1d(np.asarray(target, dtype=np.int64))
        dist = np.full((nc, 4), UNREACHABLE, dtype=np.int32)
        enter_ok = np.ones(nc, dtype=bool) if not loaded else st.highway.copy()
        enter_ok[targets] = True
        dist[targets, :] = 0
        fc = np.repeat(targets, 4)
        fd = np.tile(np.arange(4), targets.size)
        k = 0
        while fc.size:
            k += 1
            cand_c, cand_d = [], []
            for a in (2, 3):  # a turn into heading d came from heading turn_from[a][d]
                cand_c.append(fc)
                cand_d.append(self._turn_from[a][fd])
            prev = self._behind[fc, fd]  # a FORWARD into cell c with heading d
            ok = (prev >= 0) & enter_ok[fc]
            cand_c.append(prev[ok])
            cand_d.append(fd[ok])
            c = np.concatenate(cand_c)
            d = np.concatenate(cand_d)
            new = dist[c, d] == UNREACHABLE
            c, d = c[new], d[new]
            if not c.size:
                break
            flat = np.unique(c * 4 + d)
            c, d = flat // 4, flat % 4
            dist[c, d] = k
            fc, fd = c, d
        return dist


NOOP, TOGGLE_LOAD = 0, 4


def plan(ob, nav: Navigator) -> tuple[np.ndarray | None, int]:
    """Where robot ``ob.agent`` should go next, from its observation:
    ``(distance map to the target, action on arrival)``, or ``(None, action)``
    when it is at its target or has nothing to do.

    - carrying a requested shelf: the nearest goal (loaded: highways only);
    - carrying a shelf no longer requested: its home, or the free shelf cell
      nearest home; put it down there;
    - unloaded with a task shelf: drive to it (under shelves allowed), lift it.
    """
    v, i = ob.view, ob.agent
    st = v.static
    c, carrying = int(v.cell[i]), int(v.carry[i])
    requested = v.queue[v.queue >= 0]
    if carrying >= 0:
        if np.any(requested == carrying):
            return nav.nearest_goal_map(), NOOP
        home = int(st.shelf_home[carrying])
        if home != c and np.any(v.shelf_cell == home):  # someone parked there: any free shelf cell
            free = np.setdiff1d(st.shelf_home, v.shelf_cell)
            if free.size == 0:
                return None, NOOP
            hx, hy = home % st.width, home // st.width
            home = int(free[np.argmin(np.abs(free % st.width - hx) + np.abs(free // st.width - hy))])
        if home == c:
            return None, TOGGLE_LOAD
        return nav.distance_map(home, True), TOGGLE_LOAD
    task = ob.task
    if task < 0 or not np.any(requested == task):
        return None, NOOP
    target = int(v.shelf_cell[task])
    carrier = np.flatnonzero(v.carry == task)
    if carrier.size and int(carrier[0]) != i:
        return None, NOOP  # someone else has it (a stale assignment)
    if target == c:
        return None, TOGGLE_LOAD
    return nav.distance_map(target, False), TOGGLE_LOAD
