"""The traffic brain: lifelong path finding for RWARE's rules (``brain = "traffic"``).

A controller in the PIBT family (Okumura et al., "Priority inheritance with
backtracking for iterative multi-agent path finding", AIJ 2022), adapted to
robots that turn before they drive (RWARE's actions, as in the League of Robot
Runners) and to decisions that arrive one robot at a time (the event tempo; the
asynchronous variant follows Causal-PIBT, Okumura et al. AAAI 2021: a push is a
request left for the robot in the way, honoured when it next decides).

One step, for the robots deciding at one instant (all of them in the tick tempo):

1. **Targets.** Each robot's target comes from :func:`navigation.plan` (its task
   shelf, a goal, the shelf's home), except that a loaded robot with a requested
   shelf is given *one goal* when it picks the shelf up: the goal with the least
   ``distance + balance * robots already heading there``, so a fleet does not
   queue at the nearest goal. A robot with nothing to do parks under a shelf, off
   the highways the loaded robots need.
2. **Priorities.** A robot's priority is how long it has waited for its target
   (decisions since its target last changed), loaded robots first, with a fixed
   random tie-break: the robot that has waited longest is planned first, so every
   robot's priority eventually wins (PIBT's fairness).
3. **Priority inheritance.** Robots are planned in priority order; a robot takes
   its best action by the distance it leaves to its target (a move into the cell
   ahead, a turn, or a wait). A move into a cell that another unplanned robot
   holds *pushes* that robot: it is planned at once, must vacate its cell and may
   not drive into the pusher's (no swaps); if it cannot vacate this step (it must
   turn first, or is boxed in), the push fails, the pusher takes its next option
   (backtracking) and the pushed robot turns towards its best escape, so the next
   step it can leave. A cell is reserved by one robot only, so two robots never
   enter one cell, and never pass through each other.
4. **Robots that are not deciding now** (the event tempo: they are driving,
   turning, waiting for an observation, or cut off by a partition) hold both the
   cell they are in and the cell they were sent into, until they next decide. A
   move into such a cell is refused; a push is left for its robot and honoured at
   its next decision if the pusher still outranks it. A robot that hears nothing
   (a partition) decides nothing and holds its cell.
5. **Runs** (the event tempo): a robot on its shortest way with nobody within
   ``radius`` cells of it is given up to ``window`` more actions of that way (moves and
   the turns between them, ending on a move) in the same decision
   (:meth:`TrafficBrain.follow_on`), as a windowed planner sends a path segment: it
   drives them without asking for a new observation, and the brain holds every cell
   of the run until a newer view shows the robot past it or the robot decides again,
   so the round trips it saves cost no safety. Near others, in a goal's approach or at
   its target, it decides step by step.

The controller's table (who holds which cell, who pushed whom, priorities) is
kept in the brain: it stands for the traffic server the zone controllers share.
What it knows of robots it does not command comes from the observations the
zone controllers deliver, late or never when the network says so.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from desim.models.warehouse.navigation import UNREACHABLE, Navigator, plan

NOOP, FORWARD, LEFT, RIGHT, TOGGLE = 0, 1, 2, 3, 4
_INF = float(UNREACHABLE)


class GuidedNavigator(Navigator):
    """Distance maps with traffic guidance for loaded robots: lanes by parity.

    On the highways a loaded robot drives, each column has a preferred vertical
    direction (even x down, odd x up) and each row a preferred horizontal one
    (even y right, odd y left): a Manhattan grid of one-way streets, made soft.
    A move against its lane costs ``lane`` extra actions, so opposing flows take
    different lanes where there is room, and no place ever becomes unreachable.
    Unloaded robots (which may drive under shelves) get the plain maps.
    """

    def __init__(self, static, lane: float, capacity: int = 1024):
        super().__init__(static, capacity)
        self.lane = float(lane)
        nc = static.n_cells
        xs, ys = np.arange(nc) % static.width, np.arange(nc) // static.width
        # preferred heading per cell and axis: UP=0, DOWN=1, LEFT=2, RIGHT=3
        vertical = np.where(xs % 2 == 0, 1, 0)
        horizontal = np.where(ys % 2 == 0, 3, 2)
        src, dst, w = [], [], []
        state = np.arange(nc * 4).reshape(nc, 4)
        for d in range(4):
            for a in (2, 3):  # turns: cost 1
                src.append(state[:, d])
                dst.append(state[np.arange(nc), static.turn[a, d]])
                w.append(np.ones(nc))
            nxt = static.nbr[:, d]
            ok = (nxt != np.arange(nc)) & static.highway[nxt]
            against = (vertical != d) if d in (0, 1) else (horizontal != d)
            src.append(state[ok, d])
            dst.append(state[nxt[ok], d])
            w.append(1.0 + self.lane * against[ok])
        # the reversed graph (distances *to* a target): edge dst -> src
        self._rev = csr_matrix((np.concatenate(w), (np.concatenate(dst), np.concatenate(src))), shape=(nc * 4, nc * 4))

    def _compute(self, target, loaded: bool) -> np.ndarray:
        if not loaded or self.lane <= 0:
            return super()._compute(target, loaded)
        st = self.static
        nc = st.n_cells
        targets = np.atleast_1d(np.asarray(target, dtype=np.int64))
        rev = self._rev
        extra = ~st.highway[targets]
        if extra.any():  # a non-highway target (a shelf's home): it may be entered, from any side
            src, dst, w = [], [], []
            for t in targets[extra].tolist():
                for d in range(4):
                    prev = np.flatnonzero(st.nbr[:, d] == t)
                    prev = prev[prev != t]
                    src.append(prev * 4 + d)
                    dst.append(np.full(prev.size, t * 4 + d))
                    w.append(np.ones(prev.size))
            add = csr_matrix((np.concatenate(w), (np.concatenate(dst), np.concatenate(src))), shape=rev.shape)
            rev = rev + add
        dist = dijkstra(rev, directed=True, indices=(targets[:, None] * 4 + np.arange(4)).ravel(), min_only=True)
        dist = np.where(np.isfinite(dist), dist, float(UNREACHABLE)).reshape(nc, 4)
        return dist


def _move(table: dict[int, set], m: int, old: int, new: int) -> None:
    """Move robot ``m`` from cell ``old`` to cell ``new`` in a cell -> robots table (-1: none)."""
    if old >= 0:
        ms = table.get(old)
        if ms is not None:
            ms.discard(m)
            if not ms:
                del table[old]
    if new >= 0:
        table.setdefault(new, set()).add(m)


class _Held:
    """The cells held by robots not deciding now: the cell each was sent into, the cells of its
    run, the cell it was last known in, except those the deciding robots' view (newer than that
    robot's last decision) shows it has passed on that way (it moves only when commanded, and it
    has not been commanded since); then the cells deciding robots may still be leaving
    (``ghosts``). A view over the brain's tables, so a decision costs what it touches, not the fleet."""

    __slots__ = ("brain", "dset", "ghosts", "view")

    def __init__(self, brain, dset, ghosts, view):
        self.brain, self.dset, self.ghosts, self.view = brain, dset, ghosts, view

    def get(self, x, default=None):
        b = self.brain
        for table in (b._sent_at, b._run_at, b._known_at):
            ms = table.get(x)
            if ms:
                for m in sorted(ms) if len(ms) > 1 else ms:
                    if m not in self.dset and not self._passed(m, x):
                        return m
        return self.ghosts.get(x, default)

    def _passed(self, m: int, x: int) -> bool:
        """Whether the view (newer than robot ``m``'s last decision) shows ``m`` past cell ``x`` on the
        way it was sent: its last known cell, the cell it was sent into, then its run. It moves only
        as commanded, so a cell behind it on that way has been left."""
        b, v = self.brain, self.view
        if not v.t > b.known_t[m]:
            return False
        y = int(b.sent[m])
        if y < 0:
            return False
        now = int(v.cell[m])
        way = [int(b.known[m]), y] + b._run_cells.get(m, [])
        if now not in way or x not in way:
            return False
        return way.index(x) < way.index(now)

    def __contains__(self, x) -> bool:
        return self.get(x) is not None

    def __getitem__(self, x) -> int:
        m = self.get(x)
        if m is None:
            raise KeyError(x)
        return m


class TrafficBrain:
    """PIBT-style lifelong controller (see the module docstring).

    ``balance``: goal-assignment cost of one more robot heading to a goal, in actions;
    ``approach``/``admit``: a goal's approach (cells within that many loaded actions) and
    how many robots may be in it at once; ``lane``: the extra cost of a loaded move against
    its lane. Lanes and balancing pay where robots meet: both are scaled by how crowded the
    floor is, from nothing at ``crowd_from`` robots per highway cell to in full at
    ``crowd_full`` (a sparse floor drives the shortest ways, to the nearest goal).
    """

    policy_version = 0
    name = "traffic"

    def __init__(self, rng: np.random.Generator, balance: float = 6.0, approach: int = 3, admit: int = 4, lane: float = 8.0,
                 stuck: int = 8, evade_steps: int = 3, crowd_from: float = 0.03, crowd_full: float = 0.06,
                 window: int = 6, radius: int = 2):
        self.rng = rng
        self.balance_full, self.approach, self.admit, self.lane_full = float(balance), int(approach), int(admit), float(lane)
        self.crowd_from, self.crowd_full = float(crowd_from), max(float(crowd_full), float(crowd_from) + 1e-9)
        self.balance, self.lane = self.balance_full, self.lane_full
        self.stuck, self.evade_steps = int(stuck), int(evade_steps)
        self._zone_of, self._zone_static = None, None
        self._nav: Navigator | None = None
        self.n = -1
        self.pushes = 0  # pushes that moved a robot out of the way
        self.refusals = 0  # moves refused because the cell was held
        self.evasions = 0  # jams shaken
        self.window, self.radius = int(window), int(radius)
        self.run_moves = 0  # actions given as runs (observations and decisions saved)
        self._targets: dict[int, tuple] = {}
        self._last = None  # the last act's plan, for follow_on

    # -- state, made on the first call (the brain does not know the floor before) --
    def _setup(self, view) -> None:
        n = view.n_robots
        self.n = n
        density = n / max(int(view.static.highway.sum()), 1)  # robots per highway cell
        crowd = min(max((density - self.crowd_from) / (self.crowd_full - self.crowd_from), 0.0), 1.0)
        self.balance, self.lane = self.balance_full * crowd, self.lane_full * crowd
        self.tie = self.rng.random(n)  # fixed random tie-break among equal priorities
        self.age = np.zeros(n, dtype=np.int64)  # decisions since the robot's target last changed
        self.target = np.full(n, -2, dtype=np.int64)  # the target cell it is aged against
        self.goal = np.full(n, -1, dtype=np.int64)  # the goal cell given to a loaded robot (-1: none)
        self.known = view.cell.astype(np.int64).copy()
        self._known_at: dict[int, set] = {}  # cell -> robots whose last known cell it is
        for m, c in enumerate(self.known.tolist()):
            self._known_at.setdefault(c, set()).add(m)
        self._sent_at: dict[int, set] = {}  # cell -> robots sent into it
        self._run_at: dict[int, set] = {}  # cell -> robots given a run through it (held until they decide)
        self._near_cache: dict[int, np.ndarray] = {}  # cell -> the cells within ``radius`` of it, on this floor
        self._run_cells: dict[int, list] = {}  # robot -> the cells of its run
        self.known_t = np.full(n, -np.inf)  # the time of the view each robot last decided from
        self._zone_static = None  # approach counts are rebuilt from ``known``
        self.still = np.zeros(n, dtype=np.int64)  # decisions in a row without changing cell, with work to do
        self.evade = np.zeros(n, dtype=np.int64)  # decisions left of wandering out of a jam
        self.sent = np.full(n, -1, dtype=np.int64)  # cell it was sent into then (-1: it stayed)
        self.push = {}  # robot -> (pusher, pusher's cell, inherited priority): honoured at its decisions
        self.pushing: dict[int, list] = {}  # pusher -> robots it asked to move (lapse when it next decides)

    def _navigator(self, static) -> Navigator:
        if self._nav is None or self._nav.static is not static or self._nav.lane != self.lane:
            self._nav = GuidedNavigator(static, self.lane)
        return self._nav

    # -- the brain protocol ---------------------------------------------------
    def act(self, observations: Sequence) -> list[int]:
        if not observations:
            return []
        view0 = observations[0].view
        if self.n != view0.n_robots:
            self._setup(view0)
        nav = self._navigator(view0.static)
        st = view0.static
        zone_of, zone_n = self._zones(nav, st)
        deciding = [ob.agent for ob in observations]
        obs_of = {ob.agent: ob for ob in observations}
        # what each deciding robot knows of itself; its previous action is over
        me = {}
        for i in deciding:
            ob = obs_of[i]
            v = ob.view
            c, d, carry = int(v.cell[i]), int(v.dir[i]), int(v.carry[i])
            sent = int(self.sent[i])
            ghost = sent if sent >= 0 and c == int(self.known[i]) and c != sent else -1  # the view may predate the move
            moved = c != int(self.known[i])
            self._set_known(i, c)
            self.known_t[i] = v.t
            self._set_sent(i, -1)
            self._clear_run(i)
            dmap, arrive, tgt = self._target(ob, nav, c, d, carry)
            if dmap is None or moved:
                self.still[i] = 0
            else:
                self.still[i] += 1
                if self.still[i] >= self.stuck:  # a jam PIBT cannot untie (turning robots): shake it
                    self.still[i], self.evade[i] = 0, self.evade_steps
                    self.evasions += 1
            me[i] = (c, d, carry, dmap, arrive, tgt, ghost)
        # cells held by robots not deciding now: the cell they are in and the one they were sent into
        dset = set(deciding)
        freshest = max((ob.view for ob in observations), key=lambda v: v.t)
        held = _Held(self, dset, {me[i][6]: i for i in deciding if me[i][6] >= 0}, freshest)
        occ_now = {me[i][0]: i for i in deciding}
        prio = {i: self._priority(i, me[i], zone_of) for i in deciding}
        order = sorted(deciding, key=lambda i: prio[i], reverse=True)
        plan_act: dict[int, int] = {}
        plan_next: dict[int, int] = {}
        reserved: dict[int, int] = {}
        ctx = (st, me, held, occ_now, plan_act, plan_next, reserved, prio, zone_of, zone_n)

        for i in deciding:  # a deciding robot's own pushes lapse: it pushes again if it still must
            for m in self.pushing.pop(i, ()):
                if self.push.get(m, (None,))[0] == i:
                    del self.push[m]
        pushed = []
        for i in order:  # pushes left for robots deciding now, by robots that still outrank them and wait
            p = self.push.get(i)
            if p is not None:
                pusher, pcell, pprio = p
                if pprio > prio[i] and pusher not in dset and int(self.known[pusher]) == pcell and me[i][0] != pcell:
                    pushed.append((pprio, i, pcell))
                else:
                    del self.push[i]
        for pprio, i, pcell in sorted(pushed, reverse=True):
            if i not in plan_act:
                self._pibt(i, pcell, ctx, pprio)
        for i in order:
            if i not in plan_act:
                self._pibt(i, -1, ctx, prio[i])
        out = []
        for i in deciding:
            a = plan_act[i]
            c = me[i][0]
            nxt = plan_next[i]
            self._set_sent(i, nxt if nxt != c else -1)
            out.append(a)
        self._last = (st, me, plan_act, plan_next, zone_of)
        return out

    def follow_on(self, i: int) -> list[int]:
        """The actions robot ``i`` is given beyond the one the last :meth:`act` decided for it (a run:
        see the module docstring); the cells they drive through are held until it decides again.
        Called by the event tempo right after ``act``, robot by robot (the tick tempo never asks)."""
        last = self._last
        if last is None or self.window <= 0:
            return []
        st, me, plan_act, plan_next, zone_of = last
        a0 = plan_act.get(i)
        if a0 not in (FORWARD, LEFT, RIGHT) or self.evade[i] > 0 or i in self.push or self.pushing.get(i):
            return []
        c, d, carry, dmap, _arrive, tgt, _g = me[i]
        if dmap is None:
            return []
        turn, nbr = st.turn, st.nbr
        cur, hd = (int(plan_next[i]), d) if a0 == FORWARD else (c, int(turn[a0, d]))
        if not float(dmap[cur, hd]) < float(dmap[c, d]) or zone_of[cur] >= 0 or not self._alone(cur, i):
            return []  # not on its way (giving way, escaping), near others, or at a goal
        acts, cells = [], []
        for _k in range(self.window):
            here = float(dmap[cur, hd])
            if here <= 0:
                break  # arrived: what it does there it decides from a new observation
            nxt = int(nbr[cur, hd])
            fwd = float(dmap[nxt, hd]) if nxt != cur else _INF
            left, right = float(dmap[cur, int(turn[LEFT, hd])]), float(dmap[cur, int(turn[RIGHT, hd])])
            best = min(fwd, left, right)
            if not best < here:
                break
            if fwd == best:
                if zone_of[nxt] >= 0 or not self._enterable(nxt, carry, tgt, st) or not self._alone(nxt, i):
                    break
                acts.append(FORWARD)
                cells.append(nxt)
                cur = nxt
            else:
                a = LEFT if left == best else RIGHT
                acts.append(a)
                hd = int(turn[a, hd])
        while acts and acts[-1] != FORWARD:
            acts.pop()  # a run ends on a move: a last turn waits for the next observation
        if cells:
            self._run_cells[i] = cells
            for x in cells:
                self._run_at.setdefault(x, set()).add(i)
            self.run_moves += len(acts)
        return acts

    def _alone(self, x: int, i: int) -> bool:
        """Nobody but robot ``i`` is in, sent into or given a run through a cell within ``radius`` of ``x``."""
        near = self._near_cache.get(x)
        if near is None:
            st = self._last[0]
            w, h, r = st.width, st.height, self.radius
            cx, cy = x % w, x // w
            ys, xs = np.mgrid[max(cy - r, 0):min(cy + r, h - 1) + 1, max(cx - r, 0):min(cx + r, w - 1) + 1]
            ok = np.abs(xs - cx) + np.abs(ys - cy) <= r
            near = self._near_cache[x] = (ys[ok] * w + xs[ok]).ravel()
        for y in near.tolist():
            for table in (self._known_at, self._sent_at, self._run_at):
                ms = table.get(y)
                if ms and (len(ms) > 1 or i not in ms):
                    return False
        return True

    def _clear_run(self, i: int) -> None:
        for x in self._run_cells.pop(i, ()):
            ms = self._run_at.get(x)
            if ms is not None:
                ms.discard(i)
                if not ms:
                    del self._run_at[x]

    # -- targets and priorities --------------------------------------------------
    def _target(self, ob, nav, c, d, carry):
        """(distance map, action on arrival, target cell) for one robot; the map is None at its target."""
        v, i = ob.view, ob.agent
        requested = v.queue[v.queue >= 0]
        if carry >= 0 and np.any(requested == carry):  # delivering: to its own goal
            g = int(self.goal[i])
            goals = v.static.goal_cells
            if g < 0:
                g = self._assign_goal(i, nav, c, d, goals)
            dmap = nav.distance_map(g, True)
            tgt = g
            arrive = NOOP
        else:
            if self.goal[i] >= 0:
                self.goal[i] = -1
            dmap, arrive = plan(ob, nav)
            tgt = -1
            if dmap is None:
                if arrive == NOOP and carry < 0 and v.static.highway[c]:
                    dmap = nav.parking_map()  # idle on a highway: park under a shelf
                    tgt = -3
                else:
                    tgt = c
            else:
                tgt = self._target_of(dmap)
        if tgt != int(self.target[i]):
            self.target[i] = tgt
            self.age[i] = 0
        else:
            self.age[i] += 1
        if dmap is not None and dmap[c, d] == 0:
            return None, arrive, tgt
        return dmap, arrive, tgt

    def _target_of(self, dmap) -> int:
        """The cell a distance map leads to (its first zero), cached per map."""
        hit = self._targets.get(id(dmap))
        if hit is not None and hit[0] is dmap:
            return hit[1]
        t = int(np.flatnonzero(dmap[:, 0] == 0)[0])
        if len(self._targets) > 4096:
            self._targets.clear()
        self._targets[id(dmap)] = (dmap, t)
        return t

    def _assign_goal(self, i, nav, c, d, goals) -> int:
        heading = np.bincount(self.goal[self.goal >= 0], minlength=int(goals.max()) + 1) if np.any(self.goal >= 0) else None
        best, best_cost = int(goals[0]), _INF
        for g in goals.tolist():
            dist = float(nav.distance_map(g, True)[c, d])
            cost = dist + (self.balance * heading[g] if heading is not None and g < heading.size else 0.0)
            if cost < best_cost:
                best, best_cost = g, cost
        self.goal[i] = best
        return best

    def _priority(self, i: int, mine, zone_of) -> float:
        """Leaving a goal's approach first (a robot there that is not delivering frees a goal),
        then loaded robots, then by how long each has waited for its target."""
        c, _d, carry, _m, _a, tgt, _g = mine
        leaving = zone_of[c] >= 0 and int(self.goal[i]) < 0
        returning = carry >= 0 and int(self.goal[i]) < 0
        return (float(self.age[i]) + (1e6 if carry >= 0 else 0.0) + (5e5 if returning else 0.0) + (2e6 if leaving else 0.0)
                + float(self.tie[i]))

    def _zones(self, nav, st):
        """(goal whose approach each cell is in, -1: none; robots in each goal's approach now).

        A goal's approach is the cells within ``approach`` loaded actions of it; at most
        ``admit`` robots may be in it, so the queue for a goal waits outside, where the
        robots leaving the goal can pass it. The counts are kept up to date by
        :meth:`_set_known` (an event-tempo decision touches one robot, not the fleet)."""
        if self._zone_of is None or self._zone_static is not st:
            zone_of = np.full(st.n_cells, -1, dtype=np.int64)
            best = np.full(st.n_cells, _INF)
            for g in st.goal_cells.tolist():
                dist = nav.distance_map(g, True).min(axis=1).astype(float)
                near = (dist <= self.approach) & (dist < best)
                zone_of[near], best[near] = g, dist[near]
            z = zone_of[self.known]
            self._zone_n = np.bincount(z[z >= 0], minlength=st.n_cells).astype(np.int64)
            self._zone_of, self._zone_static = zone_of, st
        return self._zone_of, self._zone_n

    # -- the table: last known cells, cells sent into, approach counts (kept incrementally) --
    def _set_known(self, i: int, c: int) -> None:
        old = int(self.known[i])
        if old == c:
            return
        _move(self._known_at, i, old, c)
        zo, zn = self._zone_of, self._zone_n
        if zo[old] >= 0:
            zn[zo[old]] -= 1
        if zo[c] >= 0:
            zn[zo[c]] += 1
        self.known[i] = c

    def _set_sent(self, i: int, x: int) -> None:
        old = int(self.sent[i])
        if old != x:
            _move(self._sent_at, i, old, x)
            self.sent[i] = x

    # -- priority inheritance with backtracking ------------------------------------
    def _options(self, i, pushed_from, ctx):
        """Robot ``i``'s actions, best first: (cost, rank, action, next cell); the cost is the
        distance the action leaves to the target, and a move goes before a wait before a turn."""
        st, me = ctx[0], ctx[1]
        c, d, carry, dmap, arrive, tgt, _g = me[i]
        if dmap is None and pushed_from < 0:  # at its target (or nothing to do)
            return [(0.0, 0, arrive, c)]
        opts = []
        ahead = int(st.nbr[c, d])
        zone_of, zone_n = ctx[8], ctx[9]
        za = int(zone_of[ahead])
        full = za >= 0 and za != int(zone_of[c]) and zone_n[za] >= self.admit and pushed_from < 0 and carry >= 0
        if ahead != c and ahead != pushed_from and not full and self._enterable(ahead, carry, tgt, st):
            cost = float(dmap[ahead, d]) if dmap is not None else 1.0
            if cost < _INF:
                opts.append((cost, 0, FORWARD, ahead))
        if pushed_from >= 0:
            return sorted(opts)  # a pushed robot must leave its cell now, or it fails the push
        if self.evade[i] > 0:  # out of a jam: any move first, then a random turn, then a wait
            self.evade[i] -= 1
            opts = [(0.0, 0, a, x) for _c, _r, a, x in opts]
            turns = [LEFT, RIGHT] if self.rng.random() < 0.5 else [RIGHT, LEFT]
            return opts + [(1.0, 2, a, c) for a in turns] + [(2.0, 1, NOOP, c)]
        for a in (LEFT, RIGHT):
            opts.append((float(dmap[c, int(st.turn[a, d])]), 2, a, c))
        opts.append((float(dmap[c, d]), 1, NOOP, c))
        return sorted(opts)

    @staticmethod
    def _enterable(cell, carry, tgt, st) -> bool:
        if carry < 0:
            return True
        return bool(st.highway[cell]) or cell == tgt  # as the navigator's loaded maps: highways and the target

    def _escape_turn(self, i, pushed_from, ctx) -> int:
        """A pushed robot that cannot leave this step turns towards its best way out (or waits)."""
        st, me, held, occ_now, plan_act, plan_next, reserved, prio, _zo, _zn = ctx
        c, d, carry, dmap, arrive, tgt, _g = me[i]
        best = None
        for nd in range(4):
            if nd == d:
                continue
            x = int(st.nbr[c, nd])
            if x == c or x == pushed_from or not self._enterable(x, carry, tgt, st):
                continue
            busy = 1 if (x in held or x in reserved or x in occ_now) else 0
            cost = float(dmap[x, nd]) if dmap is not None else 0.0
            if cost >= _INF:
                continue
            key = (busy, cost, nd)
            if best is None or key < best:
                best = key
        if best is None:
            return NOOP
        nd = best[2]
        if int(st.turn[LEFT, d]) == nd:
            return LEFT
        if int(st.turn[RIGHT, d]) == nd:
            return RIGHT
        return LEFT if self.tie[i] < 0.5 else RIGHT  # behind: either way round

    def _pibt(self, i, pushed_from, ctx, eprio: float) -> bool:
        """Plan robot ``i``; with ``pushed_from`` (the pusher's cell) it must vacate its cell.

        ``eprio``: the priority it plans with (a pushed robot inherits its pusher's).
        Returns True when ``i`` leaves its cell (or was not pushed)."""
        st, me, held, occ_now, plan_act, plan_next, reserved, prio, _zo, _zn = ctx
        c = me[i][0]
        for _cost, _rank, a, x in self._options(i, pushed_from, ctx):
            if a != FORWARD:
                if c in reserved and reserved[c] != i:
                    continue
                reserved[c] = i
                plan_act[i], plan_next[i] = a, c
                return True
            if x in reserved or x in held:
                if x in held and x not in reserved:
                    m = held[x]
                    if m != i:
                        self._note_refusal(i, x)
                        if x == int(self.known[m]) and int(self.sent[m]) < 0 and self.push.get(m, (0, 0, -1.0))[2] < eprio:
                            self.push[m] = (i, c, eprio)  # honoured when m next decides
                            self.pushing.setdefault(i, []).append(m)
                continue
            j = occ_now.get(x)
            if j is not None and j != i:
                if j in plan_act:
                    if plan_next[j] == x or plan_next[j] == c:
                        continue  # j stays, or would swap with i
                else:
                    reserved[x] = i
                    plan_act[i], plan_next[i] = FORWARD, x
                    if not self._pibt(j, c, ctx, max(eprio, prio[j])):
                        del reserved[x]
                        del plan_act[i], plan_next[i]
                        self._note_refusal(i, x)
                        continue
                    self.pushes += 1
                    return True
            reserved[x] = i
            plan_act[i], plan_next[i] = FORWARD, x
            return True
        # nothing works: a pushed robot turns towards its way out and stays; others wait
        a = self._escape_turn(i, pushed_from, ctx) if pushed_from >= 0 else NOOP
        reserved[c] = i
        plan_act[i], plan_next[i] = a, c
        return False

    def _note_refusal(self, i, x) -> None:
        self.refusals += 1
