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

from models.warehouse.observe import FloorStatic

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
