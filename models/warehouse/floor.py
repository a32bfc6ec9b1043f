"""Warehouse floor in the synchronous tick tempo: rware 2.0.0's rules, vectorized.

:class:`Floor` holds the state of a robotic warehouse (robots, shelves,
request queue) and advances it one joint step at a time with exactly the
rules of ``rware.warehouse.Warehouse.step`` (checked step by step against
rware in ``tests/test_warehouse_rware_diff.py``):

1. Each robot's target cell: its position, or the next cell in its facing
   direction for ``FORWARD`` (clamped at the walls, so a wall bump stays put).
2. A loaded robot may not drive into a cell holding a shelf, unless that
   shelf is carried by a robot standing there (it may leave this tick); such
   moves are cancelled (the robot does nothing this tick).
3. Conflicts are resolved like rware's graph of intended moves (one edge per
   robot, start -> target; its weakly connected components):

   - a component containing a robot that stays (self-loop) commits only that
     robot: every robot queued behind it is blocked;
   - a cycle of 3 or more robots rotates (all members move, robots queued
     into the cycle are blocked); a 2-cycle (head-on swap) blocks the whole
     component;
   - a tree of robots draining into an empty cell: only the robots on
     networkx's ``dag_longest_path`` move, i.e. from the empty cell backwards
     always the predecessor with the longest queue behind it. Equal queues are
     broken as networkx does (the predecessor order of the copied subgraph,
     which follows CPython ``set`` iteration order of the component's node
     tuples when the component is less than half of the graph, and graph
     insertion order otherwise). ``tie_break="rware"`` reproduces that
     exactly; ``tie_break="index"`` uses the lowest robot index instead.

4. Turns (``LEFT``/``RIGHT``), ``TOGGLE_LOAD`` (pick up the shelf under an
   unloaded robot; put down a carried shelf only on a non-highway cell),
   moves.
5. Deliveries, goal by goal in layout order: a carried, requested shelf on a
   goal is replaced in the request queue by a shelf drawn uniformly
   (``rng.choice``) from the shelves not in the queue (in shelf order, the
   same draw rware makes with its ``np_random``), and rewards are paid:
   ``global`` +1 to every robot, ``individual`` +1 to the robot on the goal,
   ``two_stage`` +0.5 to it and another +0.5 when it next puts a shelf down.

Vectorization: target cells, the shelf rule, turns, loads and moves are numpy
array operations; conflict resolution uses pointer doubling on the
robot -> robot successor array (cycles, chain terminals), an iterative
longest-queue length and a path-AND doubling, and only falls back to Python
for the (small) components that have equal-length queues into one cell.

Indexing: cells are ``(x, y)``, flat cell ``y * width + x``; robot ``i`` is
rware's ``Agent.id == i + 1``; shelf ``s`` is rware's ``Shelf.id == s + 1``
(shelves numbered row-major over the layout's non-highway cells).

``blocked_moves`` (shape ``(height, width)``) counts, at the robot's cell,
every ``FORWARD`` that did not move the robot (collision, wall, or a loaded
robot facing a shelf), for contention heatmaps.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from desim.models.warehouse.layout import Layout

__all__ = ["Action", "Direction", "Floor", "REWARD_TYPES", "TURN"]


class Action(IntEnum):
    """Same integer codes as ``rware.warehouse.Action``."""

    NOOP = 0
    FORWARD = 1
    LEFT = 2
    RIGHT = 3
    TOGGLE_LOAD = 4


class Direction(IntEnum):
    """Same integer codes as ``rware.warehouse.Direction``."""

    UP = 0
    DOWN = 1
    LEFT = 2
    RIGHT = 3


REWARD_TYPES = ("global", "individual", "two_stage")

# _TURN[action, dir] -> new dir. rware's wraplist is UP, RIGHT, DOWN, LEFT.
_TURN = np.array(
    [
        [0, 1, 2, 3],  # NOOP
        [0, 1, 2, 3],  # FORWARD
        [2, 3, 1, 0],  # LEFT:  UP->LEFT, DOWN->RIGHT, LEFT->DOWN, RIGHT->UP
        [3, 2, 0, 1],  # RIGHT: UP->RIGHT, DOWN->LEFT, LEFT->UP, RIGHT->DOWN
        [0, 1, 2, 3],  # TOGGLE_LOAD
    ],
    dtype=np.int64,
)
_TURN.flags.writeable = False
# Action codes as plain ints for the hot paths (an enum member lookup and an
# array == IntEnum comparison cost several times an int's)
_FORWARD, _LEFT, _RIGHT, _TOGGLE_LOAD = int(Action.FORWARD), int(Action.LEFT), int(Action.RIGHT), int(Action.TOGGLE_LOAD)
TURN = _TURN  # public name: ``TURN[action, direction] -> new direction`` (read-only)


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: it follows ``a``'s values, but cannot write them."""
    v = a.view()
    v.flags.writeable = False
    return v


def _reward_type(rt: Any) -> str:
    name = getattr(rt, "name", rt)  # also accepts rware.RewardType members
    key = str(name).lower()
    if key not in REWARD_TYPES:
        raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {rt!r}")
    return key


class Floor:
    """rware's warehouse state and step, numpy-vectorized (tick tempo).

    Parameters mirror ``rware.warehouse.Warehouse``: ``n_agents``,
    ``request_queue_size``, ``reward_type`` (``"global"``, ``"individual"``,
    ``"two_stage"``), ``max_steps`` and ``max_inactivity_steps`` (``None`` or 0:
    no limit). ``rng`` (a ``numpy.random.Generator``, or a seed) is the only
    randomness used: reset spawns and request-queue replacements.
    Call :meth:`reset` (or :meth:`load_state`) before :meth:`step`.

    Reading the state: :attr:`cells`, :attr:`headings`, :attr:`cargo`,
    :attr:`shelf_cells`, :attr:`requests`, :attr:`requested`, :attr:`occupancy`
    (and the static :attr:`neighbours`, :attr:`highway`, :attr:`goal_cells`,
    :attr:`shelf_homes`, the counters :attr:`blocked_per_cell`,
    :attr:`collisions_per_cell`) are live read-only views of the floor's own
    arrays, free to read in hot loops; copy one to keep its value. The older
    :attr:`positions`, :attr:`directions`, :attr:`carrying`,
    :attr:`request_queue` and :meth:`state_dict` return copies. Only the
    floor writes its state: :meth:`step`, :meth:`step_one`,
    :meth:`set_request`, :meth:`reset`, :meth:`load_state`. After
    :meth:`step`, :attr:`refused` is its mask of ``FORWARD`` actions that did
    not move (what ``blocked_moves`` counted; not set by :meth:`step_one`).
    """

    def __init__(
        self,
        layout: Layout,
        n_agents: int,
        request_queue_size: int,
        reward_type: Any = "individual",
        rng: np.random.Generator | int | None = None,
        max_steps: int | None = None,
        max_inactivity_steps: int | None = None,
        tie_break: str = "rware",
    ) -> None:
        if not isinstance(layout, Layout):
            raise TypeError(f"layout must be a Layout, got {type(layout).__name__}")
        n_agents = int(n_agents)
        request_queue_size = int(request_queue_size)
        if not 1 <= n_agents <= layout.n_cells:
            raise ValueError(f"n_agents must be in 1..{layout.n_cells} for this layout, got {n_agents}")
        if request_queue_size < 0 or (request_queue_size and request_queue_size >= layout.n_shelves):
            raise ValueError(
                f"request_queue_size must be in 0..{layout.n_shelves - 1} "
                f"(fewer than the {layout.n_shelves} shelves), got {request_queue_size}"
            )
        if tie_break not in ("rware", "index"):
            raise ValueError(f"tie_break must be 'rware' or 'index', got {tie_break!r}")
        self.layout = layout
        self.n_agents = n_agents
        self.request_queue_size = request_queue_size
        self.reward_type = _reward_type(reward_type)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.max_steps = max_steps
        self.max_inactivity_steps = max_inactivity_steps
        self.tie_break = tie_break

        H, W = layout.shape
        self.height, self.width = H, W
        nc = H * W
        self._highway = layout.highway.reshape(-1).copy()
        self._goal_cells = np.array([y * W + x for x, y in layout.goals], dtype=np.int64)
        self._shelf_home = np.array([y * W + x for x, y in layout.shelf_cells], dtype=np.int64)
        self.n_shelves = len(self._shelf_home)
        # neighbour table, clamped at the walls like Agent.req_location
        ys, xs = np.divmod(np.arange(nc), W)
        self._nbr = np.stack(
            [
                np.maximum(ys - 1, 0) * W + xs,  # UP
                np.minimum(ys + 1, H - 1) * W + xs,  # DOWN
                ys * W + np.maximum(xs - 1, 0),  # LEFT
                ys * W + np.minimum(xs + 1, W - 1),  # RIGHT
            ],
            axis=1,
        ).astype(np.int64)
        n = n_agents
        self._arange = np.arange(n, dtype=np.int64)
        self._jumps = max(1, int(np.ceil(np.log2(n)))) if n > 1 else 1
        self._loaded_ext = np.zeros(n + 1, dtype=bool)  # [n] = "no robot" sentinel
        self._scratch = np.zeros(nc, dtype=np.int64)
        self._blocked = np.zeros(nc, dtype=np.int64)
        self.refused: np.ndarray | None = None  # the last step()'s mask of FORWARDs that did not move
        self._collisions = np.zeros(nc, dtype=np.int64)
        # read-only views, made once (an array's view follows it: no copy per read)
        self._ro_highway = _readonly(self._highway)
        self._ro_goal_cells = _readonly(self._goal_cells)
        self._ro_shelf_home = _readonly(self._shelf_home)
        self._ro_nbr = _readonly(self._nbr)
        self._ro_blocked = _readonly(self._blocked)
        self._ro_collisions = _readonly(self._collisions)
        # Event tempo: orders decide what replaces a delivered request
        # (``request_source(shelf, robot) -> new shelf or -1`` for an empty slot).
        self.request_source = None
        self._tie_events = 0  # components resolved by the networkx tie-break emulation
        self._ready = False

    # ------------------------------------------------------------------ state
    def _alloc(self) -> None:
        n, nc = self.n_agents, self.height * self.width
        self._cell = np.zeros(n, dtype=np.int64)
        self._dir = np.zeros(n, dtype=np.int64)
        self._carry = np.full(n, -1, dtype=np.int64)
        self._has_delivered = np.zeros(n, dtype=bool)
        self._shelf_cell = self._shelf_home.copy()
        self._queue = np.zeros(self.request_queue_size, dtype=np.int64)
        self._in_queue = np.zeros(self.n_shelves, dtype=bool)
        self._agent_grid = np.full(nc, n, dtype=np.int64)  # robot index, n = empty
        self._shelf_grid = np.zeros(nc, dtype=np.int64)  # shelf index + 1, 0 = empty
        # the state arrays are only ever written in place from here on, so these views stay live
        self._ro_cell = _readonly(self._cell)
        self._ro_dir = _readonly(self._dir)
        self._ro_carry = _readonly(self._carry)
        self._ro_shelf_cell = _readonly(self._shelf_cell)
        self._ro_queue = _readonly(self._queue)
        self._ro_in_queue = _readonly(self._in_queue)
        self._ro_agent_grid = _readonly(self._agent_grid)
        self._steps = 0
        self._inactive = 0
        self.deliveries = 0
        self.done = False

    def _rebuild_grids(self) -> None:
        self._agent_grid[:] = self.n_agents
        self._agent_grid[self._cell] = self._arange
        self._shelf_grid[:] = 0
        self._shelf_grid[self._shelf_cell] = np.arange(1, self.n_shelves + 1)
        self._in_queue[:] = False
        self._in_queue[self._queue[self._queue >= 0]] = True

    def reset(self, clear_stats: bool = True) -> None:
        """rware's ``reset``: shelves home, robots on distinct random cells with
        random directions, a request queue of distinct random shelves. Draws
        from ``self.rng`` in the same order and with the same calls as rware
        draws from its ``np_random`` (same generator state -> same state)."""
        self._alloc()
        H, W, n = self.height, self.width, self.n_agents
        locs = self.rng.choice(np.arange(H * W), size=n, replace=False)
        ys, xs = np.unravel_index(locs, (H, W))
        self._cell[:] = ys * W + xs
        self._dir[:] = self.rng.choice(np.arange(4), size=n)
        self._queue[:] = self.rng.choice(np.arange(self.n_shelves), size=self.request_queue_size, replace=False)
        self._rebuild_grids()
        if clear_stats:
            self._blocked[:] = 0
            self._collisions[:] = 0
        self._ready = True

    def state_dict(self) -> dict[str, Any]:
        """Copy of the dynamic state (shelf ids are 0-based; ``carrying`` -1 = none)."""
        self._check_ready()
        ay, ax = np.divmod(self._cell, self.width)
        sy, sx = np.divmod(self._shelf_cell, self.width)
        return {
            "agent_x": ax,
            "agent_y": ay,
            "agent_dir": self._dir.copy(),
            "carrying": self._carry.copy(),
            "has_delivered": self._has_delivered.copy(),
            "shelf_x": sx,
            "shelf_y": sy,
            "request_queue": self._queue.copy(),
            "steps": self._steps,
            "inactive_steps": self._inactive,
            "deliveries": self.deliveries,
        }

    def load_state(self, d: dict[str, Any]) -> None:
        """Set the state from a :meth:`state_dict`-shaped dict (missing
        ``has_delivered``/``steps``/``inactive_steps``/``deliveries`` default to
        False/0). Validates it: robots and shelves on distinct in-grid cells,
        carried shelves distinct and at their carrier's cell, queue distinct."""
        n, S, H, W = self.n_agents, self.n_shelves, self.height, self.width

        def arr(key: str, size: int) -> np.ndarray:
            if key not in d:
                raise ValueError(f"state is missing {key!r}")
            a = np.asarray(d[key], dtype=np.int64).reshape(-1)
            if a.shape != (size,):
                raise ValueError(f"state[{key!r}] must have {size} entries, got {a.size}")
            return a

        ax, ay, dirs, carry = arr("agent_x", n), arr("agent_y", n), arr("agent_dir", n), arr("carrying", n)
        sx, sy = arr("shelf_x", S), arr("shelf_y", S)
        queue = arr("request_queue", self.request_queue_size)
        hd = np.asarray(d.get("has_delivered", np.zeros(n, bool)), dtype=bool).reshape(-1)
        if hd.shape != (n,):
            raise ValueError(f"state['has_delivered'] must have {n} entries")
        for name, xs_, ys_ in (("robot", ax, ay), ("shelf", sx, sy)):
            if ((xs_ < 0) | (xs_ >= W) | (ys_ < 0) | (ys_ >= H)).any():
                raise ValueError(f"a {name} position lies outside the {W}x{H} grid")
        cells, scells = ay * W + ax, sy * W + sx
        if np.unique(cells).size != n:
            raise ValueError("two robots share a cell")
        if np.unique(scells).size != S:
            raise ValueError("two shelves share a cell")
        if ((dirs < 0) | (dirs > 3)).any():
            raise ValueError("agent_dir values must be 0..3 (UP, DOWN, LEFT, RIGHT)")
        c = carry[carry >= 0]
        if (carry < -1).any() or (c >= S).any() or np.unique(c).size != c.size:
            raise ValueError("carrying must hold distinct shelf ids (or -1)")
        if (scells[c] != cells[carry >= 0]).any():
            raise ValueError("a carried shelf is not at its carrier's cell")
        q = queue[queue >= 0]
        if (queue < -1).any() or (q >= S).any() or np.unique(q).size != q.size:
            raise ValueError("request_queue must hold distinct shelf ids (or -1 for an empty slot)")
        self._alloc()
        self._cell[:], self._dir[:], self._carry[:] = cells, dirs, carry
        self._has_delivered[:] = hd
        self._shelf_cell[:] = scells
        self._queue[:] = queue
        self._steps = int(d.get("steps", 0))
        self._inactive = int(d.get("inactive_steps", 0))
        self.deliveries = int(d.get("deliveries", 0))
        self._rebuild_grids()
        self._ready = True

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("Floor has no state yet: call reset() or load_state() first")

    # ------------------------------------------------------------ read-outs
    def _xy(self, cells: np.ndarray) -> np.ndarray:
        """``(k, 2)`` array of ``(x, y)`` for flat cell indices."""
        y, x = np.divmod(cells, self.width)
        return np.stack([x, y], axis=1)

    @property
    def positions(self) -> np.ndarray:
        """``(n_agents, 2)`` array of robot ``(x, y)``."""
        return self._xy(self._cell)

    @property
    def directions(self) -> np.ndarray:
        return self._dir.copy()

    @property
    def carrying(self) -> np.ndarray:
        """Shelf id carried by each robot, -1 for none."""
        return self._carry.copy()

    @property
    def shelf_positions(self) -> np.ndarray:
        """``(n_shelves, 2)`` array of shelf ``(x, y)``."""
        return self._xy(self._shelf_cell)

    @property
    def request_queue(self) -> np.ndarray:
        return self._queue.copy()

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def collisions(self) -> np.ndarray:
        """``(height, width)`` counts, at the robot's cell, of ``FORWARD`` moves
        into a free-of-walls cell that another robot kept it from (a read-only view)."""
        return self._ro_collisions.reshape(self.height, self.width)

    # --------------------------------------------- live read-only views (no copies)
    # Each is a read-only numpy view of the floor's own array: it changes as the
    # floor steps (copy it to keep a value) and raises on any write. Flat cells
    # are ``y * width + x``. Made once per reset / load_state, so reading one is free.
    @property
    def cells(self) -> np.ndarray:
        """``(n_agents,)`` flat cell of each robot."""
        return self._ro_cell

    @property
    def headings(self) -> np.ndarray:
        """``(n_agents,)`` :class:`Direction` of each robot."""
        return self._ro_dir

    @property
    def cargo(self) -> np.ndarray:
        """``(n_agents,)`` shelf id carried by each robot, -1 for none (:attr:`carrying` is a copy)."""
        return self._ro_carry

    @property
    def shelf_cells(self) -> np.ndarray:
        """``(n_shelves,)`` flat cell of each shelf."""
        return self._ro_shelf_cell

    @property
    def requests(self) -> np.ndarray:
        """``(request_queue_size,)`` requested shelf id per slot, -1 for an empty slot."""
        return self._ro_queue

    @property
    def requested(self) -> np.ndarray:
        """``(n_shelves,)`` bool: is the shelf in the request queue."""
        return self._ro_in_queue

    @property
    def occupancy(self) -> np.ndarray:
        """``(cells,)`` index of the robot on each cell, ``n_agents`` where none."""
        return self._ro_agent_grid

    @property
    def neighbours(self) -> np.ndarray:
        """``(cells, 4)`` the cell ahead in each :class:`Direction` (the cell itself at a wall)."""
        return self._ro_nbr

    @property
    def highway(self) -> np.ndarray:
        """``(cells,)`` bool: highway cells (no shelf may be put down there)."""
        return self._ro_highway

    @property
    def goal_cells(self) -> np.ndarray:
        """``(goals,)`` flat cells of the goals, in layout order."""
        return self._ro_goal_cells

    @property
    def shelf_homes(self) -> np.ndarray:
        """``(n_shelves,)`` flat cell each shelf starts on."""
        return self._ro_shelf_home

    @property
    def blocked_per_cell(self) -> np.ndarray:
        """``(cells,)`` flat :attr:`blocked_moves`."""
        return self._ro_blocked

    @property
    def collisions_per_cell(self) -> np.ndarray:
        """``(cells,)`` flat :attr:`collisions`."""
        return self._ro_collisions

    # ----------------------------------------------------- request slots (orders)
    def set_request(self, slot: int, shelf: int) -> None:
        """Put ``shelf`` (or -1: nothing) into request slot ``slot``."""
        old = int(self._queue[slot])
        if shelf >= 0 and self._in_queue[shelf] and old != shelf:
            raise ValueError(f"shelf {shelf} is already requested")
        if old >= 0:
            self._in_queue[old] = False
        self._queue[slot] = shelf
        if shelf >= 0:
            self._in_queue[shelf] = True

    def free_slots(self) -> np.ndarray:
        return np.flatnonzero(self._queue < 0)

    @property
    def blocked_moves(self) -> np.ndarray:
        """``(height, width)`` counts of blocked ``FORWARD`` actions (a read-only view)."""
        return self._ro_blocked.reshape(self.height, self.width)

    def local_view(self, agent: int, radius: int = 1, directional: bool = False) -> np.ndarray:
        """``(5, 2r+1, 2r+1)`` float32 window around a robot, zero-padded, with
        rware's default image layers: SHELVES, REQUESTS, AGENTS, GOALS,
        ACCESSIBLE (rotated to the robot's heading if ``directional``)."""
        self._check_ready()
        H, W, nc, r = self.height, self.width, self.height * self.width, int(radius)
        layers = np.zeros((5, nc), dtype=np.float32)
        layers[0, self._shelf_cell] = 1.0
        layers[1, self._shelf_cell[self._queue[self._queue >= 0]]] = 1.0
        layers[2, self._cell] = 1.0
        layers[3, self._goal_cells] = 1.0
        layers[4] = 1.0
        layers[4, self._cell] = 0.0
        padded = np.pad(layers.reshape(5, H, W), ((0, 0), (r, r), (r, r)))
        y, x = divmod(int(self._cell[agent]), W)
        obs = padded[:, y : y + 2 * r + 1, x : x + 2 * r + 1]
        if directional:
            k = {Direction.UP: 0, Direction.DOWN: 2, Direction.LEFT: 3, Direction.RIGHT: 1}[Direction(int(self._dir[agent]))]
            obs = np.rot90(obs, k=k, axes=(1, 2))
        return np.ascontiguousarray(obs)

    # ------------------------------------------------------------------ step
    def step(self, actions) -> tuple[np.ndarray, dict[str, Any]]:
        """Advance one tick. ``actions``: ``(n_agents,)`` ints (:class:`Action`).

        Returns ``(rewards float32 (n_agents,), info)`` with ``info`` keys
        ``delivered`` (shelves delivered this tick), ``blocked`` (FORWARDs
        that did not move) and ``done`` (max_steps / max_inactivity_steps).
        """
        self._check_ready()
        n = self.n_agents
        a = np.asarray(actions)
        if a.shape != (n,):
            raise ValueError(f"actions must have shape ({n},), got {a.shape}")
        if a.dtype.kind not in "iu":
            a = a.astype(np.int64)
        if a.min() < 0 or a.max() > 4:
            raise ValueError("actions must be integers in 0..4 (NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD)")
        cell = self._cell
        d = self._dir
        carry = self._carry
        rewards = np.zeros(n, dtype=np.float32)

        fwd = a == _FORWARD
        tcell = np.where(fwd, self._nbr[cell, d], cell)
        moving = tcell != cell
        loaded = carry >= 0
        if moving.any():
            occ = self._agent_grid[tcell]
            lx = self._loaded_ext
            lx[:n] = loaded
            moving &= ~(loaded & (self._shelf_grid[tcell] > 0) & ~lx[occ])
            move = self._resolve(moving, tcell, occ) if moving.any() else moving
            collided = moving & ~move  # wanted and allowed to move, kept by other robots
            if collided.any():
                np.add.at(self._collisions, cell[collided], 1)
        else:
            move = moving
        blocked = fwd & ~move
        self.refused = blocked  # handed out, never written again (a new array every step)
        n_blocked = int(np.count_nonzero(blocked))
        if n_blocked:
            np.add.at(self._blocked, cell[blocked], 1)

        d[:] = _TURN[a, d]  # in place: the read-only views keep following the state

        tog = a == _TOGGLE_LOAD
        if tog.any():
            ti = np.flatnonzero(tog)
            ld = loaded[ti]
            pick = ti[~ld]
            if pick.size:
                s = self._shelf_grid[cell[pick]]
                ok = s > 0
                carry[pick[ok]] = s[ok] - 1
            drop = ti[ld]
            if drop.size:
                drop = drop[~self._highway[cell[drop]]]
                if drop.size:
                    if self.reward_type == "two_stage":
                        rewards[drop[self._has_delivered[drop]]] += 0.5
                    self._has_delivered[drop] = False
                    carry[drop] = -1

        if move.any():
            mi = np.flatnonzero(move)
            old = cell[mi]
            new = tcell[mi]
            ag = self._agent_grid
            ag[old] = n
            ag[new] = mi
            cell[mi] = new
            cs = carry[mi]
            c = cs >= 0
            if c.any():
                sids = cs[c]
                sg = self._shelf_grid
                sg[old[c]] = 0
                sg[new[c]] = sids + 1
                self._shelf_cell[sids] = new[c]

        return self._end_step(rewards, n_blocked)

    def step_one(self, i: int, action: int) -> tuple[np.ndarray, dict[str, Any]]:
        """``step`` where only robot ``i`` acts and every other robot does NOOP,
        in plain Python: the event tempo's common case (robots desynchronised by
        jitter finish their actions one at a time). Same rules, same result
        (checked against ``step`` in tests/test_warehouse_floor_fastpath.py)."""
        self._check_ready()
        n = self.n_agents
        if not 0 <= action <= 4:
            raise ValueError("actions must be integers in 0..4 (NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD)")
        rewards = np.zeros(n, dtype=np.float32)
        cell = int(self._cell[i])
        d = int(self._dir[i])
        carry = int(self._carry[i])
        n_blocked = 0
        if action == _FORWARD:
            t = int(self._nbr[cell, d])
            moved = False
            if t != cell:
                occ = int(self._agent_grid[t])
                occ_loaded = occ < n and self._carry[occ] >= 0
                if carry >= 0 and self._shelf_grid[t] > 0 and not occ_loaded:
                    pass  # a loaded robot cannot drive under a parked shelf: cancelled, not a collision
                elif occ < n:
                    self._collisions[cell] += 1  # the robot ahead stays put
                else:
                    moved = True
            if moved:
                ag = self._agent_grid
                ag[cell] = n
                ag[t] = i
                self._cell[i] = t
                if carry >= 0:
                    self._shelf_grid[cell] = 0
                    self._shelf_grid[t] = carry + 1
                    self._shelf_cell[carry] = t
            else:
                self._blocked[cell] += 1
                n_blocked = 1
        elif action == _LEFT or action == _RIGHT:
            self._dir[i] = _TURN[action, d]
        elif action == _TOGGLE_LOAD:
            if carry < 0:
                s = int(self._shelf_grid[cell])
                if s > 0:
                    self._carry[i] = s - 1
            elif not self._highway[cell]:
                if self.reward_type == "two_stage" and self._has_delivered[i]:
                    rewards[i] += 0.5
                self._has_delivered[i] = False
                self._carry[i] = -1
        return self._end_step(rewards, n_blocked)

    def _end_step(self, rewards: np.ndarray, n_blocked: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The tail both steps share: deliveries (rewards, request refill), counters, ``info``."""
        delivered = 0
        if self._shelf_grid[self._goal_cells].any():
            delivered = self._deliver(rewards)
        self.deliveries += delivered
        self._steps += 1
        self._inactive = 0 if delivered else self._inactive + 1
        self.done = bool(
            (self.max_inactivity_steps and self._inactive >= self.max_inactivity_steps)
            or (self.max_steps and self._steps >= self.max_steps)
        )
        return rewards, {"delivered": delivered, "blocked": n_blocked, "done": self.done}

    def _deliver(self, rewards: np.ndarray) -> int:
        """Goals in layout order; the queue is updated between goals (as rware)."""
        n = self.n_agents
        delivered = 0
        inq = self._in_queue
        for g in self._goal_cells.tolist():
            s = int(self._shelf_grid[g]) - 1
            if s < 0 or not inq[s]:
                continue
            ag = int(self._agent_grid[g])
            if ag == n:  # no robot on the goal: rware indexes agents[-1]
                ag = n - 1
            q = int(np.flatnonzero(self._queue == s)[0])
            if self.request_source is None:  # rware: drawn among shelves not requested, s included as requested
                new = int(self.rng.choice(np.flatnonzero(~inq)))
                inq[s] = False
            else:
                inq[s] = False
                self._queue[q] = -1
                new = int(self.request_source(s, ag))
            self._queue[q] = new
            if new >= 0:
                inq[new] = True
            delivered += 1
            if self.reward_type == "global":
                rewards += 1.0
            elif self.reward_type == "individual":
                rewards[ag] += 1.0
            else:
                self._has_delivered[ag] = True
                rewards[ag] += 0.5
        return delivered

    # --------------------------------------------------- conflict resolution
    def _resolve(self, moving: np.ndarray, tcell: np.ndarray, occ: np.ndarray) -> np.ndarray:
        """Mask of robots that move, from those that want to (``moving``)."""
        n = self.n_agents
        mv = np.flatnonzero(moving)
        if (occ[mv] == n).all():
            if mv.size == 1:
                return moving
            t = tcell[mv]
            k = self._arange[: mv.size]
            sc = self._scratch
            sc[t] = k
            if (sc[t] == k).all():  # distinct empty targets: everyone moves
                return moving
        return self._resolve_graph(moving, tcell, occ)

    def _resolve_graph(self, moving: np.ndarray, tcell: np.ndarray, occ: np.ndarray) -> np.ndarray:
        n = self.n_agents
        idx = self._arange
        chain = moving & (occ < n)  # wants the cell of another robot
        succ = np.where(chain, occ, idx)  # functional graph; fixed points = chain ends
        levels = [succ]
        P = succ
        for _ in range(self._jumps):
            P = P[P]
            levels.append(P)
        term = P  # chain end (fixed point), or a node on the component's cycle
        tree = ~chain[term]
        move = np.zeros(n, dtype=bool)

        cyc = ~tree
        if cyc.any():
            on_cycle = np.zeros(n, dtype=bool)
            on_cycle[term[cyc]] = True
            move |= on_cycle & (succ[succ] != idx)  # cycles of >= 3 rotate; 2-cycles block

        rooted = tree & moving[term]  # chains ending with a move into an empty cell
        if not rooted.any():
            return move
        ri = np.flatnonzero(rooted)
        nt = ri[chain[ri]]  # queued behind another robot
        tm = ri[~chain[ri]]  # heads, moving into the (empty) root cell
        # longest queue behind each robot (networkx dag_longest_path distances)
        dist = np.zeros(n, dtype=np.int64)
        if nt.size:
            s_nt = succ[nt]
            for _ in range(n):
                new = np.zeros(n, dtype=np.int64)
                np.maximum.at(new, s_nt, dist[nt] + 1)
                if np.array_equal(new, dist):
                    break
                dist = new
        roots, inv = np.unique(tcell[tm], return_inverse=True)
        rmax = np.full(roots.size, -1, dtype=np.int64)
        np.maximum.at(rmax, inv, dist[tm])
        good = np.zeros(n, dtype=bool)
        good_t = dist[tm] == rmax[inv]
        good[tm] = good_t
        tied_roots = np.bincount(inv[good_t], minlength=roots.size) >= 2
        rid = np.full(n, -1, dtype=np.int64)
        rid[tm] = inv
        if nt.size:
            good_nt = dist[nt] == dist[s_nt] - 1
            good[nt] = good_nt
            tied_agents = np.flatnonzero(np.bincount(s_nt[good_nt], minlength=n) >= 2)
            if tied_agents.size:
                tied_roots[rid[term[tied_agents]]] = True
        A = good
        for P in levels[:-1]:
            A = A & A[P]
        move[ri] = A[ri]
        if tied_roots.any():
            comp_of = rid[term[ri]]
            g_len = n + np.unique(tcell[moving & (occ == n)]).size  # nodes of rware's graph
            for r in np.flatnonzero(tied_roots).tolist():
                comp = ri[comp_of == r]
                move[comp] = False
                path = self._tie_chain(comp.tolist(), int(roots[r]), succ, chain, dist, int(rmax[r]) + 1, g_len)
                move[path] = True
                self._tie_events += 1
        return move

    def _tie_chain(
        self,
        comp: list[int],
        root: int,
        succ: np.ndarray,
        chain: np.ndarray,
        dist: np.ndarray,
        root_dist: int,
        g_len: int,
    ) -> list[int]:
        """networkx's ``dag_longest_path`` on rware's component subgraph copy.

        ``comp``: robots of one tree component (ascending = rware's edge
        insertion order), draining into empty cell ``root``. Rebuilds the
        component's node set exactly as ``weakly_connected_components`` and
        ``Graph.subgraph(...).copy()`` build it, to get the predecessor order
        that breaks equal-length ties.
        """
        W = self.width
        ROOT = -1
        tgt = {a: (int(succ[a]) if chain[a] else ROOT) for a in comp}
        preds: dict[int, list[int]] = {a: [] for a in comp}
        preds[ROOT] = []
        for a in comp:  # rware adds edges in robot order
            preds[tgt[a]].append(a)
        dist_of = {a: int(dist[a]) for a in comp}
        dist_of[ROOT] = root_dist

        if self.tie_break == "index":
            rank = {a: a for a in comp}
        else:
            cells = self._cell
            node = {a: (int(cells[a]) % W, int(cells[a]) // W) for a in comp}
            node[ROOT] = (root % W, root // W)
            back = {v: k for k, v in node.items()}
            # first appearance in rware's graph: robot a adds (start_a, target_a)
            key = {a: 2 * a for a in comp}
            for v, ps in preds.items():
                if ps:
                    key[v] = min(key.get(v, 1 << 62), 2 * ps[0] + 1)
            src = min(key, key=key.__getitem__)
            # networkx _plain_bfs
            seen = {node[src]}
            nextlevel = [src]
            while nextlevel:
                thislevel = nextlevel
                nextlevel = []
                for v in thislevel:
                    nbrs = ([tgt[v]] if v != ROOT else []) + preds[v]
                    for w in nbrs:
                        if node[w] not in seen:
                            seen.add(node[w])
                            nextlevel.append(w)
            # G.subgraph(c): show_nodes(set(nbunch_iter(c))); FilterAdjacency.__iter__
            nodes = set(v for v in seen)
            if 2 * len(nodes) < g_len:
                order = [back[v] for v in nodes]
            else:
                order = sorted(key, key=key.__getitem__)
            rank = {v: i for i, v in enumerate(order)}

        path: list[int] = []
        v = ROOT
        while preds[v]:
            best = preds[v][0]
            for u in preds[v][1:]:
                if dist_of[u] > dist_of[best] or (dist_of[u] == dist_of[best] and rank[u] < rank[best]):
                    best = u
            path.append(best)
            v = best
        return path
