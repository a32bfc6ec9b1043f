"""Observation vectors for learned policies, computed from a robot's observation.

The vector is built from what the robot was told (a possibly stale
:class:`FloorView` and its task), never from the live floor, so a policy
trained in the tick tempo and run in the event tempo sees the production gap.

Layout (``obs_dim(radius)`` floats):
- position (x, y scaled to [0, 1]); heading one-hot (4);
- carrying, carrying a requested shelf, has a task, should toggle the load now;
- guidance: for FORWARD, LEFT, RIGHT, +1 if it brings the robot closer to its
  target, -1 if farther or not allowed, 0 with no target;
- a robot directly ahead;
- a (2r+1)^2 window of 5 layers around the robot: shelves, requested shelves,
  robots, goals, free cells.
"""
from __future__ import annotations

import numpy as np

from desim.models.warehouse.navigation import TOGGLE_LOAD, UNREACHABLE, Navigator, plan

N_SELF = 2 + 4 + 4 + 3 + 1


def obs_dim(radius: int = 1) -> int:
    return N_SELF + 5 * (2 * radius + 1) ** 2


class Encoder:
    """Encodes batches of :class:`RobotObs`; caches the layer image per view."""

    def __init__(self, static, radius: int = 1):
        self.static = static
        self.radius = radius
        self.nav = Navigator(static)
        self._layers_for = None
        self._layers = None

    def _padded_layers(self, view) -> np.ndarray:
        if self._layers_for is view:
            return self._layers
        st = self.static
        H, W, r = st.height, st.width, self.radius
        layers = np.zeros((5, H * W), dtype=np.float32)
        layers[0, view.shelf_cell] = 1.0
        q = view.queue[view.queue >= 0]
        layers[1, view.shelf_cell[q]] = 1.0
        layers[2, view.cell] = 1.0
        layers[3, st.goal_cells] = 1.0
        layers[4] = 1.0
        layers[4, view.cell] = 0.0
        self._layers = np.pad(layers.reshape(5, H, W), ((0, 0), (r, r), (r, r)))
        self._layers_for = view
        return self._layers

    def encode(self, ob) -> np.ndarray:
        st, v, i, r = self.static, ob.view, ob.agent, self.radius
        out = np.zeros(obs_dim(r), dtype=np.float32)
        c, d, carrying = int(v.cell[i]), int(v.dir[i]), int(v.carry[i])
        y, x = divmod(c, st.width)
        out[0] = x / max(st.width - 1, 1)
        out[1] = y / max(st.height - 1, 1)
        out[2 + d] = 1.0
        out[6] = carrying >= 0
        out[7] = carrying >= 0 and bool(np.any(v.queue == carrying))
        out[8] = ob.task >= 0
        dmap, on_arrival = plan(ob, self.nav)
        out[9] = dmap is None and on_arrival == TOGGLE_LOAD
        if dmap is not None:
            here = dmap[c, d]
            ahead = int(st.nbr[c, d])
            legal = ahead != c and (carrying < 0 or st.highway[ahead] or dmap[ahead, 0] == 0)
            nxt = (dmap[ahead, d] if legal else UNREACHABLE, dmap[c, st.turn[2, d]], dmap[c, st.turn[3, d]])
            for k, val in enumerate(nxt):
                out[10 + k] = 1.0 if val < here else -1.0
        ahead = int(st.nbr[c, d])
        out[13] = ahead != c and int(v.agent_grid[ahead]) != v.n_robots
        img = self._padded_layers(v)[:, y : y + 2 * r + 1, x : x + 2 * r + 1]
        out[N_SELF:] = img.reshape(-1)
        return out

    def encode_batch(self, obs_list) -> np.ndarray:
        return np.stack([self.encode(ob) for ob in obs_list]) if obs_list else np.zeros((0, obs_dim(self.radius)), np.float32)
