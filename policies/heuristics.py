"""Heuristic brains for warehouse robots: random, greedy, epsilon-greedy.

Each brain maps a batch of :class:`models.warehouse.observe.RobotObs` to a
batch of actions (rware codes: 0 NOOP, 1 FORWARD, 2 LEFT, 3 RIGHT,
4 TOGGLE_LOAD). Brains decide from what the observation says, which in the
event tempo may be stale.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from desim.models.warehouse.navigation import UNREACHABLE, Navigator, plan

NOOP, FORWARD, LEFT, RIGHT, TOGGLE = 0, 1, 2, 3, 4


class RandomBrain:
    """Uniformly random actions: the floor's lower bound."""

    policy_version = 0
    name = "random"

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def act(self, observations: Sequence) -> list[int]:
        return self.rng.integers(0, 5, size=len(observations)).tolist()


class GreedyBrain:
    """Shortest path to the task, with a one-step reservation table.

    - Unloaded with a task: drive to the task shelf (under shelves allowed), lift it.
    - Loaded with a requested shelf: drive along highways to the nearest goal.
    - Loaded with a shelf no longer requested: take it home (or to the nearest
      free shelf cell) and put it down.
    Within one batch, robots claim the cell they drive into; a robot does not
    drive into a claimed cell, nor into a cell whose robot is not leaving it.
    A robot blocked ``patience`` times in a row evades for ``evade_steps``
    decisions: it drives into any free neighbouring cell (turning towards one
    first), which breaks head-on standoffs and jams in one-lane aisles.
    """

    policy_version = 0
    name = "greedy"

    def __init__(self, rng: np.random.Generator, patience: int = 2, evade_steps: int = 4):
        self.rng = rng
        self.patience = patience
        self.evade_steps = evade_steps
        self._nav: Navigator | None = None
        self._blocked: dict[int, int] = {}
        self._evade: dict[int, int] = {}

    def _navigator(self, static) -> Navigator:
        if self._nav is None or self._nav.static is not static:
            self._nav = Navigator(static)
        return self._nav

    def act(self, observations: Sequence) -> list[int]:
        claimed: set[int] = set()
        leaving: set[int] = set()
        return [self._decide(ob, claimed, leaving) for ob in observations]

    # -- one robot ----------------------------------------------------------
    def _plan(self, ob) -> tuple[np.ndarray | None, int]:
        """(distance map to the robot's target or None, action to take on arrival)."""
        return plan(ob, self._navigator(ob.view.static))

    def _decide(self, ob, claimed: set, leaving: set) -> int:
        v, i = ob.view, ob.agent
        st = v.static
        c, d = int(v.cell[i]), int(v.dir[i])
        dmap, on_arrival = self._plan(ob)
        if dmap is None:
            if on_arrival == NOOP and v.carry[i] < 0 and st.highway[c]:
                # idle on a highway: park under a shelf, out of the loaded robots' way
                dmap = self._navigator(st).parking_map()
            else:
                return on_arrival
        if dmap[c, d] == 0:
            return on_arrival
        if self._evade.get(i, 0) > 0:
            self._evade[i] -= 1
            return self._evasive(ob, claimed, leaving)
        ahead = int(st.nbr[c, d])
        # a loaded robot may only drive along highways, or onto its target
        enter = ahead != c and (v.carry[i] < 0 or st.highway[ahead] or dmap[ahead, 0] == 0)
        options = [
            (dmap[ahead, d] if enter else UNREACHABLE, 0, FORWARD),
            (dmap[c, st.turn[LEFT, d]], 1, LEFT),
            (dmap[c, st.turn[RIGHT, d]], 1, RIGHT),
        ]
        best = min(options)
        if best[0] >= UNREACHABLE:
            return NOOP
        action = best[2]
        if action == FORWARD:
            return self._move_if_free(ob, claimed, leaving, FORWARD)
        self._blocked[i] = 0
        return action

    def _move_if_free(self, ob, claimed: set, leaving: set, action: int) -> int:
        v, i = ob.view, ob.agent
        st = v.static
        c, d = int(v.cell[i]), int(v.dir[i])
        ahead = int(st.nbr[c, d])
        if self._free(ob, c, d, claimed, leaving):
            self._blocked[i] = 0
            claimed.add(ahead)
            leaving.add(c)
            return FORWARD
        n = self._blocked.get(i, 0) + 1
        self._blocked[i] = n
        other = int(v.agent_grid[ahead]) if ahead != c else v.n_robots
        if other < v.n_robots and self._priority(v, i) < self._priority(v, other) and n < 3 * self.patience:
            return NOOP  # right of way: the other robot should evade (unless it never does)
        if n >= self.patience:
            self._blocked[i] = 0
            self._evade[i] = self.evade_steps
            return self._evasive(ob, claimed, leaving)
        return NOOP

    @staticmethod
    def _priority(v, i: int) -> tuple:
        """Right of way in a standoff: deliveries first, then lower index."""
        s = int(v.carry[i])
        delivering = s >= 0 and bool(np.any(v.queue == s))
        return (0 if delivering else 1, i)

    def _free(self, ob, cell: int, heading: int, claimed: set, leaving: set) -> bool:
        v, i = ob.view, ob.agent
        st = v.static
        ahead = int(st.nbr[cell, heading])
        if ahead == cell or ahead in claimed:
            return False
        if int(v.agent_grid[ahead]) != v.n_robots and ahead not in leaving:
            return False
        return not (v.carry[i] >= 0 and not st.highway[ahead] and np.any(v.shelf_cell == ahead))

    def _evasive(self, ob, claimed: set, leaving: set) -> int:
        """Into a free neighbouring cell, turning towards one first; NOOP if boxed in."""
        v, i = ob.view, ob.agent
        st = v.static
        c, d = int(v.cell[i]), int(v.dir[i])
        if self._free(ob, c, d, claimed, leaving):
            claimed.add(int(st.nbr[c, d]))
            leaving.add(c)
            return FORWARD
        turns = [a for a in (LEFT, RIGHT) if self._free(ob, c, int(st.turn[a, d]), claimed, leaving)]
        if turns:
            return int(turns[int(self.rng.integers(len(turns)))])
        back = int(st.turn[LEFT, st.turn[LEFT, d]])
        if self._free(ob, c, back, claimed, leaving):
            return int(self.rng.choice([LEFT, RIGHT]))
        return NOOP


class EpsilonGreedyBrain(GreedyBrain):
    """Greedy, except that with probability ``epsilon`` a robot acts at random:
    the strawman whose random moves cost more the more crowded the floor."""

    name = "epsilon_greedy"

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.2, patience: int = 2):
        super().__init__(rng, patience)
        self.epsilon = epsilon

    def _decide(self, ob, claimed: set, leaving: set) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(0, 5))
        return super()._decide(ob, claimed, leaving)
