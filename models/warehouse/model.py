"""The warehouse model: robots on an rware-rules floor, in two tempos.

- ``tick``: every ``tick_seconds`` all robots observe, their brain decides in
  one batch, and the floor takes one synchronous step: rware, exactly.
- ``event``: each robot lives on its own clock (see ``agents.Robot``): actions
  take durations, observations and commands cross the network from zone
  controllers. Robots whose decisions fall on one instant are batched into one
  brain call, and robots whose actions end on one instant are resolved
  together by the floor's rules. Both happen at the end of the instant (a
  SimPy event of lower priority than every normal one), so with zero network
  delay and unit durations the event tempo reproduces the tick tempo exactly.

Orders: without an ``[warehouse.orders]`` section the request queue behaves
as rware's (a delivered request is replaced at once by a random shelf, each
replacement an order). With one, orders arrive as a Poisson stream with
peaks, wait for a free request slot, and fail when older than ``max_age``.
"""
from __future__ import annotations

import json
import math
import zlib

import mesa
import numpy as np
from mesa.space import MultiGrid

from desim.agent import Agent
from desim.models.warehouse.agents import Robot, ZoneController
from desim.models.warehouse.floor import Floor
from desim.models.warehouse.observe import FloorStatic, FloorView, RobotObs
from desim.models.warehouse.orders import OrderBook, Peak, arrivals
from desim.network.topology import robot_name

END_OF_INSTANT = 2  # SimPy priority below NORMAL (1): runs after everything else at this time
PATH_ROBOTS = 8  # robots whose every position is recorded for the path plot


class WarehouseModel:
    def __init__(self, sim, net, cfg, layout, brain=None):
        from desim.policies import make_brain

        self.sim, self.net, self.cfg, self.layout = sim, net, cfg, layout
        env = sim.env
        n = cfg.robots
        self.n = n
        slots = cfg.request_queue or n
        self.floor = Floor(layout, n, slots, cfg.reward, rng=sim.rng.stream("floor"))
        self.floor.reset()
        self.static = FloorStatic.of(self.floor)
        self.brain = brain if brain is not None else make_brain(cfg.brain, sim.rng.stream("brain"))
        self.tasks = np.full(n, -1, dtype=np.int64)
        self.book = OrderBook(self.floor.n_shelves, slots, cfg.orders.max_age if cfg.orders else None)
        if cfg.orders is None:  # rware's queue: its initial requests are the first orders
            for s in self.floor._queue.tolist():
                self.book.create(0.0, s)
                self.book.next_for_slot(0.0)
        else:  # production: the floor starts with no requests; orders fill the slots
            for slot in range(slots):
                self.floor.set_request(slot, -1)
        self.floor.request_source = self._on_delivery
        self.version = 0
        self._view: FloorView | None = None
        self._view_version = -1

        # Mesa: the registry (sim.model.agents) and the grid
        self.grid = MultiGrid(layout.width, layout.height, torus=False)
        sim.model.grid = self.grid
        self.robots: list[Robot] = []
        pos = self.floor.positions
        for i in range(n):
            r = Robot(sim, robot_name(i, cfg.zones), i, i % cfg.zones, self)
            self.grid.place_agent(r, (int(pos[i, 0]), int(pos[i, 1])))
            self.robots.append(r)
        self.robot_by_name = {r.name: r for r in self.robots}
        for z in range(cfg.zones):
            ZoneController(sim, f"zone-{z}", self)
        for node, data in net.graph.nodes(data=True):
            if data.get("role") == "service" and node not in sim.agents:
                Agent(sim, node, role="service")

        # metrics
        self.retries = 0
        self.corrupt_obs = 0
        self.rewards = np.zeros(n)
        self.last_progress = np.zeros(n)
        self._stuck = np.zeros(n, dtype=bool)
        self._waits = np.full(n, -1, dtype=np.int64)
        self._cycles: set[frozenset] = set()
        self.deadlocks = {"wait_for_cycle": 0, "stuck": 0}
        self.events: list[tuple[float, str, str, str]] = []
        self.paths: list[tuple[float, int, int, int]] = [(0.0, i, int(pos[i, 0]), int(pos[i, 1])) for i in range(min(n, PATH_ROBOTS))]
        self.resolutions = 0
        self.decisions = 0  # robot decisions taken (both tempos): env-steps = decisions / robots
        self._last_sample = (0.0, 0)
        self.datacollector = mesa.DataCollector(model_reporters={
            "deliveries": lambda m: self.floor.deliveries,
            "throughput_per_hour": lambda m: self._window_throughput(),
            "orders_pending": lambda m: self.book.pending,
            "orders_completed": lambda m: self.book.completed,
            "orders_failed": lambda m: sum(self.book.failed.values()),
            "collisions": lambda m: int(self.floor._collisions.sum()),
            "blocked_moves": lambda m: int(self.floor._blocked.sum()),
            "deadlocks": lambda m: sum(self.deadlocks.values()),
            "robots_loaded": lambda m: int((self.floor._carry >= 0).sum()),
            "messages_delivered": lambda m: self.net.delivered,
            "messages_dropped": lambda m: sum(self.net.dropped.values()),
        })
        self.sample_times: list[float] = []

        # decision batching; ``external(batch)``, when set, takes the decisions
        # out of the simulation: it must succeed each (i, obs, event) later
        self.external = None
        self._decisions: list = []
        self._completions: list = []

        if cfg.tempo == "tick":
            env.process(self._tick_loop())
        if cfg.orders is not None:
            env.process(self._order_arrivals())
            if cfg.orders.max_age is not None:
                env.process(self._order_expiry())
        env.process(self._watch())

    # -- observing and dispatching -----------------------------------------
    def view(self) -> FloorView:
        """A snapshot of the floor, shared by every observation until the floor changes."""
        if self._view_version != self.version:
            self._view = FloorView.of(self.floor, self.sim.now, self.static)
            self._view_version = self.version
        return self._view

    def observe(self, i: int) -> RobotObs:
        return RobotObs(i, self.view(), self.dispatch(i))

    def dispatch(self, i: int) -> int:
        """Robot ``i``'s task shelf: kept while it matters, else the nearest free request."""
        f = self.floor
        task = int(self.tasks[i])
        if task >= 0 and not f._in_queue[task] and f._carry[i] != task:
            task = -1  # delivered, returned, or its order failed
        if task < 0 and f._carry[i] < 0:
            req = f._queue[f._queue >= 0]
            if req.size:
                busy = np.zeros(f.n_shelves, dtype=bool)
                busy[self.tasks[self.tasks >= 0]] = True
                busy[f._carry[f._carry >= 0]] = True
                free = req[~busy[req]]
                if free.size:
                    W = f.width
                    here = int(f._cell[i])
                    cells = f._shelf_cell[free]
                    dist = np.abs(cells % W - here % W) + np.abs(cells // W - here // W)
                    task = int(free[np.argmin(dist)])
        self.tasks[i] = task
        return task

    # -- the tick tempo ----------------------------------------------------
    def _tick_loop(self):
        env = self.sim.env
        while True:
            decisions = [self.decide(i, self.observe(i)) for i in range(self.n)]
            yield env.all_of(decisions)
            actions = np.array([d.value for d in decisions], dtype=np.int64)
            yield env.timeout(self.cfg.tick_seconds)
            self._resolve(actions)

    # -- the event tempo ---------------------------------------------------
    def _at_end_of_instant(self, callback) -> None:
        self.sim.call_soon(callback, END_OF_INSTANT)

    def decide(self, i: int, obs: RobotObs):
        """An event that fires with robot ``i``'s action, decided in this instant's batch."""
        ev = self.sim.env.event()
        if not self._decisions:
            self._at_end_of_instant(self._flush_decisions)
        self._decisions.append((i, obs, ev))
        return ev

    def _flush_decisions(self, _event) -> None:
        batch = sorted(self._decisions, key=lambda x: x[0])
        self._decisions = []
        self.decisions += len(batch)
        if self.external is not None:  # an outside learner decides (the PettingZoo adapter)
            self.external(batch)
            return
        actions = self.brain.act([obs for _i, obs, _ev in batch])
        for (_i, _obs, ev), a in zip(batch, actions):
            ev.succeed(int(a))

    def duration(self, i: int, action: int) -> float:
        d = self.cfg.durations
        if action == 1:
            base = d.move_loaded if self.floor._carry[i] >= 0 else d.move
        elif action in (2, 3):
            base = d.turn
        elif action == 4:
            base = d.load
        else:
            base = d.noop
        if d.jitter:
            base *= 1.0 + self.sim.rng.stream("durations").uniform(-d.jitter, d.jitter)
        return base

    def complete(self, i: int, action: int):
        """An event that fires once robot ``i``'s action has been resolved on the floor."""
        ev = self.sim.env.event()
        if not self._completions:
            self._at_end_of_instant(self._flush_completions)
        self._completions.append((i, action, ev))
        return ev

    def _flush_completions(self, _event) -> None:
        batch = sorted(self._completions, key=lambda x: x[0])
        self._completions = []
        actions = np.zeros(self.n, dtype=np.int64)
        for i, a, _ev in batch:
            actions[i] = a
        if len(batch) == 1:
            self._resolve_one(batch[0][0], actions)
        else:
            self._resolve(actions)
        for _i, _a, ev in batch:
            ev.succeed()

    # -- the floor changes -------------------------------------------------
    def _resolve(self, actions: np.ndarray) -> None:
        f = self.floor
        now = self.sim.now
        cell0, dir0, carry0 = f._cell.copy(), f._dir.copy(), f._carry.copy()
        rewards, info = f.step(actions)
        self.sim.recorder.record(now, "floor", zlib.crc32(actions.tobytes()), zlib.crc32(f._cell.tobytes()), info["delivered"])
        self.rewards += rewards
        self.resolutions += 1
        self.version += 1
        picked = np.flatnonzero((carry0 < 0) & (f._carry >= 0))
        for i in picked.tolist():
            self.book.picked(now, int(f._carry[i]), i)
        changed = (f._cell != cell0) | (f._dir != dir0) | (f._carry != carry0)
        self.last_progress[changed] = now
        self._stuck[changed] = False
        moved = np.flatnonzero(f._cell != cell0)
        if moved.size:
            W = f.width
            for i in moved.tolist():
                c = int(f._cell[i])
                self.grid.move_agent(self.robots[i], (c % W, c // W))
                if i < PATH_ROBOTS:
                    self.paths.append((now, i, c % W, c // W))
        self._wait_for(actions, cell0, dir0, changed)

    def _resolve_one(self, i: int, actions: np.ndarray) -> None:
        """``_resolve`` when only robot ``i`` acts (the event tempo's usual case)."""
        f = self.floor
        now = self.sim.now
        a = int(actions[i])
        cell0, dir0, carry0 = int(f._cell[i]), int(f._dir[i]), int(f._carry[i])
        rewards, info = f.step_one(i, a)
        self.sim.recorder.record(now, "floor", zlib.crc32(actions.tobytes()), zlib.crc32(f._cell.tobytes()), info["delivered"])
        if info["delivered"] or self.cfg.reward == "global":
            self.rewards += rewards
        else:
            self.rewards[i] += rewards[i]
        self.resolutions += 1
        self.version += 1
        c, carry = int(f._cell[i]), int(f._carry[i])
        if carry0 < 0 and carry >= 0:
            self.book.picked(now, carry, i)
        if c != cell0 or int(f._dir[i]) != dir0 or carry != carry0:
            self.last_progress[i] = now
            self._stuck[i] = False
            self._waits[i] = -1
            if c != cell0:
                W = f.width
                self.grid.move_agent(self.robots[i], (c % W, c // W))
                if i < PATH_ROBOTS:
                    self.paths.append((now, i, c % W, c // W))
            if self._cycles:
                self._cycles = {cyc for cyc in self._cycles if i not in cyc}
            return
        if a == 1 and int(f._nbr[cell0, dir0]) != cell0:
            changed = np.zeros(self.n, dtype=bool)
            cell_arr = f._cell.copy()
            dir_arr = f._dir.copy()
            self._wait_for(actions, cell_arr, dir_arr, changed)

    def _wait_for(self, actions, cell0, dir0, changed) -> None:
        """Track who waits for whom; a new cycle in that graph is a deadlock."""
        f = self.floor
        n = self.n
        self._waits[changed] = -1
        tgt = f._nbr[cell0, dir0]
        blocked = (actions == 1) & ~changed & (tgt != cell0)
        if not blocked.any():
            return
        occ = f._agent_grid[tgt[blocked]]
        idx = np.flatnonzero(blocked)
        self._waits[idx] = np.where(occ < n, occ, -1)
        cycles = set()
        waits = self._waits
        for start in idx.tolist():
            seen = [start]
            j = int(waits[start])
            while j >= 0 and j not in seen and len(seen) <= n:
                seen.append(j)
                j = int(waits[j])
            if j == start:
                cycles.add(frozenset(seen))
        for cyc in cycles - self._cycles:
            self.deadlocks["wait_for_cycle"] += 1
            self.events.append((self.sim.now, "deadlock", self.robots[min(cyc)].name,
                                json.dumps({"type": "wait_for_cycle", "robots": sorted(self.robots[r].name for r in cyc)})))
        self._cycles = {c for c in self._cycles | cycles if all(waits[r] >= 0 for r in c)}

    def _on_delivery(self, shelf: int, robot: int) -> int:
        """Called by the floor when ``shelf`` reaches a goal: the shelf for the freed slot."""
        now = self.sim.now
        self.book.delivered(now, shelf, robot)
        if self.cfg.orders is None:  # rware: a random shelf not already requested
            f = self.floor
            cand = np.flatnonzero(~f._in_queue)
            cand = cand[cand != shelf]
            self.book.create(now, int(f.rng.choice(cand)))
        return self.book.next_for_slot(now)

    def _fill_slots(self) -> None:
        now = self.sim.now
        for slot in self.floor.free_slots().tolist():
            s = self.book.next_for_slot(now)
            if s < 0:
                break
            self.floor.set_request(slot, s)
            self.version += 1

    # -- orders ------------------------------------------------------------
    def _order_arrivals(self):
        env = self.sim.env
        oc = self.cfg.orders
        rng = self.sim.rng.stream("orders")
        peaks = [Peak(p.at, p.duration, p.factor) for p in oc.peaks]
        for gap, accept in arrivals(rng, oc.rate_per_hour / 3600.0, peaks, math.inf):
            yield env.timeout(gap)
            if accept:
                self.book.create(env.now, int(rng.integers(self.floor.n_shelves)))
                self._fill_slots()

    def _order_expiry(self):
        env = self.sim.env
        while True:
            yield env.timeout(1.0)
            freed = self.book.expire(env.now)
            for shelf in freed:
                slot = int(np.flatnonzero(self.floor._queue == shelf)[0])
                self.floor.set_request(slot, -1)
                self.version += 1
                self.events.append((env.now, "order_failed", "", json.dumps({"shelf": shelf, "reason": "timeout"})))
            if freed:
                self._fill_slots()

    # -- sampling and stuck robots -----------------------------------------
    def _window_throughput(self) -> float:
        t0, d0 = self._last_sample
        now = self.sim.now
        rate = (self.floor.deliveries - d0) * 3600.0 / (now - t0) if now > t0 else 0.0
        self._last_sample = (now, self.floor.deliveries)
        return rate

    def _watch(self):
        env = self.sim.env
        every = self.cfg.sample_every
        while True:
            yield env.timeout(every)
            self.sample_times.append(env.now)
            self.datacollector.collect(self.sim.model)
            f = self.floor
            busy = (self.tasks >= 0) | (f._carry >= 0)
            stuck = busy & ~self._stuck & (env.now - self.last_progress > self.cfg.stuck_after)
            for i in np.flatnonzero(stuck).tolist():
                self.deadlocks["stuck"] += 1
                self.events.append((env.now, "deadlock", self.robots[i].name,
                                    json.dumps({"type": "stuck", "since": float(self.last_progress[i])})))
            self._stuck |= stuck

    # -- results -----------------------------------------------------------
    def finish(self) -> None:
        """Take a last sample at the end of the run (called by the runner)."""
        if not self.sample_times or self.sample_times[-1] < self.sim.now:
            self.sample_times.append(self.sim.now)
            self.datacollector.collect(self.sim.model)

    def summary(self) -> dict:
        now = self.sim.now
        f = self.floor
        return {
            "tempo": self.cfg.tempo,
            "brain": self.cfg.brain,
            "robots": self.n,
            "floor": {"name": self.layout.name or (self.cfg.size or "map"), "width": f.width, "height": f.height,
                      "shelves": f.n_shelves, "goals": len(self.layout.goals)},
            "deliveries": int(f.deliveries),
            "throughput_per_hour": f.deliveries * 3600.0 / now if now > 0 else 0.0,
            "order_latency": self.book.latency_percentiles(),
            "collisions": int(f._collisions.sum()),
            "blocked_moves": int(f._blocked.sum()),
            "deadlocks": int(sum(self.deadlocks.values())),
            "deadlocks_by_kind": dict(self.deadlocks),
            "orders": self.book.counts(),
            "orders_conserved": self.book.conserved(),
            "retries": self.retries + self.net.retries,
            "corrupt_observations": self.corrupt_obs,
            "mean_return": float(self.rewards.mean()),
        }

    def tables(self) -> dict[str, dict]:
        """Rows for the results store: time series, contention, floor plan, paths, events, orders."""
        ts = {"t": [], "metric": [], "value": []}
        for metric, values in self.datacollector.model_vars.items():
            for t, v in zip(self.sample_times, values):
                ts["t"].append(float(t))
                ts["metric"].append(metric)
                ts["value"].append(float(v))
        f = self.floor
        H, W = f.height, f.width
        ys, xs = np.divmod(np.arange(H * W), W)
        goals = np.zeros(H * W, dtype=bool)
        goals[f._goal_cells] = True
        contention = {"x": xs.tolist(), "y": ys.tolist(), "blocked": f._blocked.tolist(), "collisions": f._collisions.tolist(),
                      "cell": np.where(goals, "goal", np.where(f._highway, "highway", "shelf")).tolist()}
        paths = {"t": [p[0] for p in self.paths], "robot": [p[1] for p in self.paths],
                 "x": [p[2] for p in self.paths], "y": [p[3] for p in self.paths]}
        events = {"t": [e[0] for e in self.events], "kind": [e[1] for e in self.events],
                  "agent": [e[2] for e in self.events], "detail": [e[3] for e in self.events]}
        orders = {"oid": [], "shelf": [], "created": [], "assigned": [], "picked": [], "delivered": [], "failed": [], "reason": []}
        for o in self.book.orders:
            for k in orders:
                orders[k].append(getattr(o, k))
        return {"timeseries": ts, "contention": contention, "paths": paths, "events": events, "orders": orders}
