"""N warehouse floors of one layout as torch tensors, stepped together (tick tempo).

:class:`BatchedFloor` holds ``n_floors`` copies of the numpy
:class:`~desim.models.warehouse.floor.Floor`'s state as tensors with the
floor as the first dimension, on any torch device, and steps them all at
once with exactly the Floor's (that is rware 2.0.0's) rules, in the same
order: target cells, the loaded-robot shelf rule, conflict resolution, turns,
loads and unloads, moves, deliveries goal by goal with the request refill,
rewards, counters and the episode limits. The differential test
(``tests/test_batched_floor.py``) checks it against ``Floor(...,
tie_break="index")`` step by step, every field.

Conflict resolution, per floor, on the robot -> robot successor graph
(``succ[i]`` = the robot standing on robot i's target cell, or i itself),
without any loop over floors or robots: pointer doubling finds each robot's
chain end (a robot that stays, a robot moving into an empty cell, or a node
of a cycle), then

- a cycle of three or more rotates, a head-on swap (2-cycle) blocks its
  component, a robot that stays blocks everyone queued behind it;
- chains draining into one empty cell: only the longest queue moves. The
  longest queue behind every robot comes from two doubling passes (depth to
  the chain end, then the deepest depth in each subtree), each robot's
  preferred predecessor from one ``scatter_reduce(amax)`` over the key
  ``(queue length, -robot index)``, and "on the chosen path" from a path-AND
  doubling.

Ties: rware breaks equal queues by networkx's node order (CPython ``set``
order of cell tuples), which no tensor code can reproduce cheaply. Here the
**index rule** holds: among equal-length queues into a cell (or behind a
robot), the one whose first robot has the lowest index moves; the numpy
Floor's ``tie_break="index"`` is the same rule. Ties are rare (equal queues
meeting head to head at one free cell); the statistics of a trained policy
do not depend on them, but a run is not step-for-step rware's when they occur.

Randomness: a counter-based 32-bit hash of ``(seed, floor id, episode,
purpose, step, slot)`` in integer tensor ops, so a floor's stream depends on
neither the number of floors nor the device: floor ``k`` of a 16-floor batch
and of a 4,096-floor batch, on CPU or CUDA, replays the same episodes under
the same actions. Resets put robots on distinct cells (sorting hashed keys:
a uniform permutation), random headings, and a request queue of distinct
shelves; a delivered request is replaced by a shelf drawn uniformly from
those not requested (the delivered one counted as requested), as rware does.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from desim.models.warehouse.floor import REWARD_TYPES, TURN
from desim.models.warehouse.layout import Layout

__all__ = ["BatchedFloor", "hash32"]

_M32 = 0xFFFFFFFF
# purposes of the random draws: distinct streams of one floor
_CELLS, _DIRS, _QUEUE, _REFILL = 1, 2, 3, 4


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (xorshift-multiply rounds) of ``x`` (int64, any value; the low 32 bits count).

    Multipliers below 2**31 keep every product inside int64, so the result is
    the same on every device."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    x = x ^ (x >> 12)
    x = (x * 0x297A2D39) & _M32
    return x ^ (x >> 15)


class BatchedFloor:
    """``n_floors`` rware floors of one :class:`Layout`, stepped together on ``device``.

    Parameters as the numpy ``Floor`` (``n_agents``, ``request_queue_size``,
    ``reward_type``, ``max_steps``, ``max_inactivity_steps``), plus
    ``n_floors``, ``seed`` (the streams of every floor) and ``device``.
    :meth:`reset` starts every (or some) floors; :meth:`step` takes one
    action per robot, ``(n_floors, n_agents)`` ints, and returns
    ``(rewards (E, N) float32, done (E,) bool)``; finished floors stay as
    they are until reset (the vector env resets them).

    State (read them, do not write): ``cell``, ``dir``, ``carry`` (shelf id,
    -1 none), ``has_delivered`` ``(E, N)``; ``shelf_cell`` ``(E, S)``;
    ``queue`` ``(E, Q)``, ``in_queue`` ``(E, S)``; ``steps``, ``inactive``,
    ``episode`` ``(E,)``; after a step ``delivered`` ``(E,)``, ``refills``
    ``(E, goals)`` (the shelf drawn at each goal this step, -1 none) and
    ``blocked`` ``(E, N)`` (FORWARDs that did not move). Cells are flat
    ``y * width + x`` as in the Floor. ``stream_ids`` ``(E,)``: whose random
    streams each floor draws (its own index, except in a copy made by
    :meth:`load_repeated`).
    """

    def __init__(
        self,
        layout: Layout,
        n_agents: int,
        request_queue_size: int,
        n_floors: int,
        reward_type: str = "individual",
        max_steps: int | None = None,
        max_inactivity_steps: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if not isinstance(layout, Layout):
            raise TypeError(f"layout must be a Layout, got {type(layout).__name__}")
        n, Q, E = int(n_agents), int(request_queue_size), int(n_floors)
        if not 1 <= n <= layout.n_cells:
            raise ValueError(f"n_agents must be in 1..{layout.n_cells} for this layout, got {n}")
        if Q < 1 or Q >= layout.n_shelves:
            raise ValueError(f"request_queue_size must be in 1..{layout.n_shelves - 1}, got {Q}")
        if E < 1:
            raise ValueError(f"n_floors must be at least 1, got {E}")
        reward_type = str(getattr(reward_type, "name", reward_type)).lower()
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        self.layout, self.n_agents, self.request_queue_size, self.n_floors = layout, n, Q, E
        self.reward_type = reward_type
        self.max_steps = int(max_steps) if max_steps else 0
        self.max_inactivity_steps = int(max_inactivity_steps) if max_inactivity_steps else 0
        self.seed = int(seed)
        self.device = torch.device(device)
        # a CPU floor may look at a tensor's value for free (skip work nobody needs); CUDA must not wait
        self._may_sync = self.device.type == "cpu"
        dev = self.device
        H, W = layout.shape
        C = H * W
        self.height, self.width, self.n_cells = H, W, C
        self.n_shelves = layout.n_shelves
        ys, xs = np.divmod(np.arange(C), W)
        nbr = np.stack([np.maximum(ys - 1, 0) * W + xs, np.minimum(ys + 1, H - 1) * W + xs,
                        ys * W + np.maximum(xs - 1, 0), ys * W + np.minimum(xs + 1, W - 1)], axis=1)
        self.nbr = torch.as_tensor(nbr.reshape(-1), dtype=torch.long, device=dev)  # [cell * 4 + dir]
        self.turn = torch.as_tensor(np.array(TURN).reshape(-1), dtype=torch.long, device=dev)  # [action * 4 + dir]
        self.highway = torch.as_tensor(np.array(layout.highway).reshape(-1), device=dev)
        self.goal_cells = [y * W + x for x, y in layout.goals]  # python ints: the goals loop
        self.shelf_home = torch.as_tensor([y * W + x for x, y in layout.shelf_cells], dtype=torch.long, device=dev)
        self.floor_ids = torch.arange(E, device=dev)
        # whose random streams each floor draws from: its own index, or (a counterfactual copy's) the
        # index of the floor it copies (``load_repeated``), so a copy draws exactly the original's numbers
        self.stream_ids = self.floor_ids
        self.idx = torch.arange(n, device=dev).expand(E, n)
        self._jumps = max(1, math.ceil(math.log2(n))) if n > 1 else 1
        self._key_scale = n + 1
        self._pairwise = n * n <= C  # the cheaper way to find the longest queue into each free cell
        # grids carry two extra columns: C takes the writes of robots that do not move
        # (scatter's "nowhere"), C + 1 is never written (outside the floor, for windows)
        self.cell = torch.zeros(E, n, dtype=torch.long, device=dev)
        self.dir = torch.zeros(E, n, dtype=torch.long, device=dev)
        self.carry = torch.full((E, n), -1, dtype=torch.long, device=dev)
        self.has_delivered = torch.zeros(E, n, dtype=torch.bool, device=dev)
        self._shelf_cell = self.shelf_home.repeat(E, 1)
        self._shelf_cell = torch.cat([self._shelf_cell, torch.zeros(E, 1, dtype=torch.long, device=dev)], 1)
        self.queue = torch.zeros(E, Q, dtype=torch.long, device=dev)
        self.in_queue = torch.zeros(E, self.n_shelves, dtype=torch.bool, device=dev)
        self.agent_grid = torch.full((E, C + 2), n, dtype=torch.long, device=dev)
        self.shelf_grid = torch.zeros(E, C + 2, dtype=torch.long, device=dev)
        self.steps = torch.zeros(E, dtype=torch.long, device=dev)
        self.inactive = torch.zeros(E, dtype=torch.long, device=dev)
        self.episode = torch.zeros(E, dtype=torch.long, device=dev)
        self.delivered = torch.zeros(E, dtype=torch.long, device=dev)
        self.refills = torch.full((E, len(self.goal_cells)), -1, dtype=torch.long, device=dev)
        self.blocked = torch.zeros(E, n, dtype=torch.bool, device=dev)
        self._ready = False

    # ------------------------------------------------------------------ random
    def _draw(self, purpose: int, floors: torch.Tensor, counters: tuple[torch.Tensor, ...], slots: int) -> torch.Tensor:
        """``(len(floors), slots)`` uniform 32-bit values of stream ``(seed, floor, purpose, *counters)``
        (counters: ``(len(floors),)`` non-negative ints below 2**32)."""
        h = hash32(torch.full_like(floors, self.seed & _M32) ^ ((self.seed >> 32) & _M32))
        h = hash32(h ^ floors)
        h = hash32(h + purpose * 0x9E3779B1)
        for c in counters:
            h = hash32(h ^ c)
        s = torch.arange(slots, device=self.device)
        return hash32(h[:, None] + s[None, :] * 0x632BE5AB)

    # ------------------------------------------------------------------ state
    @property
    def may_sync(self) -> bool:
        """True on CPU: reading a tensor's value is free there, so work nobody needs may be skipped;
        on an accelerator the code never waits for the device."""
        return self._may_sync

    @property
    def ready(self) -> bool:
        """True once a reset (or load_state) has given every floor a state."""
        return self._ready

    @property
    def shelf_cell(self) -> torch.Tensor:
        """``(E, S)`` flat cell of every shelf."""
        return self._shelf_cell[:, :-1]

    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Start a new episode on every floor (``mask`` None) or on the floors where ``mask`` is True.

        Each floor draws from its own stream, keyed by its episode count: the
        k-th episode of floor f is the same in any batch, on any device. On
        CPU only the masked floors are drawn; on an accelerator every floor is
        drawn and the masked ones kept, so the host never waits for the device."""
        dev = self.device
        if mask is None:
            rows, blend = self.floor_ids, None
        elif self._may_sync:
            rows, blend = torch.nonzero(mask, as_tuple=False).reshape(-1), None
            if rows.numel() == 0:
                return
        else:
            rows, blend = self.floor_ids, mask.to(dev)
        R, n, C, S, Q = rows.numel(), self.n_agents, self.n_cells, self.n_shelves, self.request_queue_size
        ep = self.episode[rows]
        fid = self.stream_ids[rows]
        cells = torch.argsort(self._draw(_CELLS, fid, (ep,), C), dim=1, stable=True)[:, :n]
        dirs = self._draw(_DIRS, fid, (ep,), n) & 3
        queue = torch.argsort(self._draw(_QUEUE, fid, (ep,), S), dim=1, stable=True)[:, :Q]
        fresh = (cells, dirs, torch.full((R, n), -1, dtype=torch.long, device=dev),
                 torch.zeros(R, n, dtype=torch.bool, device=dev), self.shelf_home.expand(R, S), queue)
        if blend is None:
            self._put(rows, *fresh)
            self.steps[rows] = 0
            self.inactive[rows] = 0
            self.episode[rows] = ep + 1
        else:
            old = (self.cell, self.dir, self.carry, self.has_delivered, self.shelf_cell, self.queue)
            self._put(rows, *(torch.where(blend[:, None], new, cur) for new, cur in zip(fresh, old)))
            self.steps = torch.where(blend, 0, self.steps)
            self.inactive = torch.where(blend, 0, self.inactive)
            self.episode = self.episode + blend.long()
        self._ready = True

    def _put(self, rows, cells, dirs, carry, has_delivered, shelf_cell, queue) -> None:
        """Write the dynamic state of floors ``rows`` and rebuild their grids."""
        dev = self.device
        R, n, C = rows.numel(), self.n_agents, self.n_cells
        self.cell[rows] = cells
        self.dir[rows] = dirs
        self.carry[rows] = carry
        self.has_delivered[rows] = has_delivered
        self._shelf_cell[rows, :-1] = shelf_cell
        self.queue[rows] = queue
        ag = torch.full((R, C + 2), n, dtype=torch.long, device=dev)
        ag.scatter_(1, cells, self.idx[:R])
        self.agent_grid[rows] = ag
        sg = torch.zeros(R, C + 2, dtype=torch.long, device=dev)
        sg.scatter_(1, shelf_cell, torch.arange(1, self.n_shelves + 1, device=dev).expand(R, -1))
        self.shelf_grid[rows] = sg
        iq = torch.zeros(R, self.n_shelves, dtype=torch.bool, device=dev)
        iq.scatter_(1, queue, True)
        self.in_queue[rows] = iq

    def load_state(self, floor: int, d: dict[str, Any]) -> None:
        """Set floor ``floor`` from a numpy ``Floor.state_dict``-shaped dict (for tests and replays).

        The dict is trusted to be valid (``Floor.load_state`` checks one)."""
        dev, W = self.device, self.width

        def t(key: str, dtype=torch.long) -> torch.Tensor:
            return torch.as_tensor(np.asarray(d[key]), dtype=dtype, device=dev).reshape(1, -1)

        rows = torch.tensor([int(floor)], device=dev)
        self._put(rows, t("agent_y") * W + t("agent_x"), t("agent_dir"), t("carrying"),
                  t("has_delivered", torch.bool) if "has_delivered" in d else torch.zeros(1, self.n_agents, dtype=torch.bool, device=dev),
                  t("shelf_y") * W + t("shelf_x"), t("request_queue"))
        self.steps[rows] = int(d.get("steps", 0))
        self.inactive[rows] = int(d.get("inactive_steps", 0))
        self._ready = True

    # the dynamic state (with the grids kept in step with it): what a copy of a floor must carry
    _STATE = ("cell", "dir", "carry", "has_delivered", "_shelf_cell", "queue", "in_queue", "agent_grid",
              "shelf_grid", "steps", "inactive", "episode")

    def load_repeated(self, other: "BatchedFloor", repeats: int) -> None:
        """Make this batch ``repeats`` consecutive copies of each of ``other``'s floors: floor
        ``f * repeats + j`` gets floor ``f``'s whole state, its counters and its random streams
        (``stream_ids``), so stepping a copy draws exactly the numbers ``other`` would draw from the
        same state (request refills: common random numbers). ``other`` is only read.

        Both must have the same layout, robots, queue and reward, and ``n_floors`` must be
        ``other.n_floors * repeats`` (a counterfactual batch: ``models.warehouse.counterfactual``)."""
        r = int(repeats)
        same = (self.layout is other.layout or self.layout == other.layout) and (
            self.n_agents, self.request_queue_size, self.reward_type) == (
            other.n_agents, other.request_queue_size, other.reward_type)
        if not same:
            raise ValueError("load_repeated needs a floor of the same layout, robots, queue and reward")
        if r < 1 or self.n_floors != other.n_floors * r:
            raise ValueError(f"load_repeated: {self.n_floors} floors cannot hold {r} copies of {other.n_floors}")
        if not other.ready:
            raise RuntimeError("load_repeated: the floor copied has no state yet (reset it first)")
        for name in self._STATE:
            setattr(self, name, getattr(other, name).repeat_interleave(r, dim=0))
        self.stream_ids = other.stream_ids.repeat_interleave(r)
        self.seed = other.seed
        self._ready = True

    def state_dict(self, floor: int) -> dict[str, Any]:
        """Floor ``floor``'s state as numpy, shaped like ``Floor.state_dict`` (for comparisons)."""
        W = self.width
        cell, sc = self.cell[floor].cpu().numpy(), self.shelf_cell[floor].cpu().numpy()
        ay, ax = np.divmod(cell, W)
        sy, sx = np.divmod(sc, W)
        return {
            "agent_x": ax, "agent_y": ay,
            "agent_dir": self.dir[floor].cpu().numpy(),
            "carrying": self.carry[floor].cpu().numpy(),
            "has_delivered": self.has_delivered[floor].cpu().numpy(),
            "shelf_x": sx, "shelf_y": sy,
            "request_queue": self.queue[floor].cpu().numpy(),
            "steps": int(self.steps[floor]),
            "inactive_steps": int(self.inactive[floor]),
        }

    # ------------------------------------------------------------------ step
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick of every floor. ``actions``: ``(n_floors, n_agents)`` ints in 0..4.

        Returns ``(rewards (E, N) float32, done (E,) bool)``."""
        if not self._ready:
            raise RuntimeError("BatchedFloor has no state yet: call reset() first")
        E, n = self.n_floors, self.n_agents
        a = torch.as_tensor(actions, device=self.device)
        if a.shape != (E, n):
            raise ValueError(f"actions must have shape ({E}, {n}), got {tuple(a.shape)}")
        a = a.long()
        cell, d, carry = self.cell, self.dir, self.carry
        ag, sg = self.agent_grid, self.shelf_grid
        C = self.n_cells

        fwd = a == 1
        tcell = torch.where(fwd, self.nbr[cell * 4 + d], cell)
        moving = tcell != cell
        loaded = carry >= 0
        occ = ag.gather(1, tcell)  # robot on the target cell, n where none
        occ_loaded = torch.cat([loaded, loaded.new_zeros(E, 1)], 1).gather(1, occ)
        # a loaded robot may not drive under a parked shelf (one carried by a robot there may leave)
        moving &= ~(loaded & (sg.gather(1, tcell) > 0) & ~occ_loaded)
        move = self._resolve(moving, tcell, occ)
        self.blocked = fwd & ~move

        self.dir = d = self.turn[a * 4 + d]
        tog = a == 4
        rewards = torch.zeros(E, n, dtype=torch.float32, device=self.device)
        # pick up the shelf under an unloaded robot (togglers stay, so their cell is current)
        s = sg.gather(1, cell)
        carry = torch.where(tog & ~loaded & (s > 0), s - 1, carry)
        # put a carried shelf down, off the highways
        drop = tog & loaded & ~self.highway[cell]
        if self.reward_type == "two_stage":
            rewards += (drop & self.has_delivered).float() * 0.5
        self.has_delivered &= ~drop
        carry = torch.where(drop, -1, carry)
        self.carry = carry

        # moves: empty the old cells first, then fill the new ones (chains hand cells on)
        nowhere = torch.full_like(cell, C)
        ag.scatter_(1, torch.where(move, cell, nowhere), n)
        ag.scatter_(1, torch.where(move, tcell, nowhere), self.idx)
        mc = move & (carry >= 0)
        sg.scatter_(1, torch.where(mc, cell, nowhere), 0)
        sg.scatter_(1, torch.where(mc, tcell, nowhere), carry + 1)
        self._shelf_cell.scatter_(1, torch.where(mc, carry, self.n_shelves), tcell)
        self.cell = torch.where(move, tcell, cell)

        self._deliver(rewards)
        self.steps += 1
        self.inactive = torch.where(self.delivered > 0, 0, self.inactive + 1)
        done = torch.zeros(E, dtype=torch.bool, device=self.device)
        if self.max_steps:
            done |= self.steps >= self.max_steps
        if self.max_inactivity_steps:
            done |= self.inactive >= self.max_inactivity_steps
        return rewards, done

    def _resolve(self, moving: torch.Tensor, tcell: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
        """Mask of the robots that move, from those that want to (see the module docstring)."""
        E, n, idx = self.n_floors, self.n_agents, self.idx
        chain = moving & (occ < n)  # wants the cell of another robot
        succ = torch.where(chain, occ, idx)
        levels = [succ]
        P = succ
        for _ in range(self._jumps):
            P = P.gather(1, P)
            levels.append(P)
        term = P  # chain end (a fixed point) or a node of the component's cycle
        tree = ~chain.gather(1, term)
        # cycles: every cycle node is some cycle node's ``term``; >= 3 rotate, 2-cycles block
        on_cycle = torch.zeros(E, n, dtype=torch.long, device=self.device).scatter_add_(1, term, (~tree).long()) > 0
        move = on_cycle & (succ.gather(1, succ) != idx)
        rooted = tree & moving.gather(1, term)  # chains ending with a move into an empty cell
        if self._may_sync and not bool(rooted.any()):
            return move
        # depth: robots between i and its chain end; then the deepest depth in i's subtree
        depth = chain.long()
        for P in levels[:-1]:
            depth = depth + depth.gather(1, P)
        deep = torch.where(rooted, depth, -1)
        for P in levels[:-1]:
            deep = deep.scatter_reduce(1, P, deep, "amax", include_self=True)
        queue_len = deep - depth  # the longest queue behind each robot
        # each robot's (or each empty cell's) preferred predecessor: longest queue, then lowest index
        key = torch.where(rooted, queue_len * self._key_scale + (n - idx), -1)
        head = rooted & ~chain
        best_robot = torch.full((E, n), -1, dtype=torch.long, device=self.device)
        best_robot.scatter_reduce_(1, succ, torch.where(chain, key, -1), "amax")
        hkey = torch.where(head, key, -1)
        if self._pairwise:  # few robots: compare the heads into each cell pairwise, (E, N, N)
            same = tcell[:, :, None] == tcell[:, None, :]
            best_head = torch.where(same, hkey[:, None, :], -1).amax(2)
        else:  # many robots: one slot per cell
            best_cell = torch.full((E, self.n_cells + 2), -1, dtype=torch.long, device=self.device)
            tslot = torch.where(head, tcell, self.n_cells)
            best_cell.scatter_reduce_(1, tslot, hkey, "amax")
            best_head = best_cell.gather(1, tslot)
        chosen = rooted & torch.where(chain, key == best_robot.gather(1, succ), key == best_head)
        on_path = chosen
        for P in levels[:-1]:
            on_path = on_path & on_path.gather(1, P)
        return move | on_path

    def _deliver(self, rewards: torch.Tensor) -> None:
        """Goals in layout order; the queue is updated between goals (as rware)."""
        E, n, dev = self.n_floors, self.n_agents, self.device
        ag, sg, iq, queue = self.agent_grid, self.shelf_grid, self.in_queue, self.queue
        self.delivered = torch.zeros(E, dtype=torch.long, device=dev)
        self.refills.fill_(-1)
        if self._may_sync and not bool((sg[:, self.goal_cells] > 0).any()):
            return
        for k, g in enumerate(self.goal_cells):
            s = sg[:, g] - 1
            sc = s.clamp(min=0)[:, None]
            ok = (s >= 0) & iq.gather(1, sc)[:, 0]
            if self._may_sync and not bool(ok.any()):
                continue
            robot = ag[:, g]
            robot = torch.where(robot == n, n - 1, robot)[:, None]  # no robot on the goal: rware's agents[-1]
            slot = (queue == s[:, None]).long().argmax(1, keepdim=True)
            # a shelf drawn uniformly from those not requested (the delivered one still counts as requested)
            free = ~iq
            count = free.sum(1)
            u = self._draw(_REFILL + 8 * k, self.stream_ids, (self.episode, self.steps), 1)[:, 0]
            pick = (u * count) >> 32
            new = (free.long().cumsum(1) <= pick[:, None]).sum(1, keepdim=True)
            new = torch.where(ok[:, None], new, queue.gather(1, slot))
            queue.scatter_(1, slot, new)
            iq.scatter_(1, sc, iq.gather(1, sc) & ~ok[:, None])
            iq.scatter_(1, new, iq.gather(1, new) | ok[:, None])
            self.refills[:, k] = torch.where(ok, new[:, 0], -1)
            okf = ok.float()[:, None]
            if self.reward_type == "global":
                rewards += okf
            elif self.reward_type == "individual":
                rewards.scatter_add_(1, robot, okf)
            else:
                rewards.scatter_add_(1, robot, okf * 0.5)
                self.has_delivered.scatter_(1, robot, self.has_delivered.gather(1, robot) | ok[:, None])
            self.delivered += ok.long()
