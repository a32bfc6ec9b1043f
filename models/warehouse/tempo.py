"""The two tempos: when robots decide, and when their actions reach the floor.

- ``tick``: every ``tick_seconds`` all robots observe, their brain decides in
  one batch, and the floor takes one synchronous step: rware, exactly.
- ``event``: each robot lives on its own clock (see ``agents.Robot``): it asks
  :meth:`Tempo.decide` for an action, spends :meth:`Tempo.duration` on it and
  waits on :meth:`Tempo.complete`. Decisions that fall on one instant are
  batched into one brain call, and actions that end on one instant are resolved
  together by the floor's rules. Both happen at the end of the instant (an
  :class:`InstantBatch`), so with zero network delay and unit durations the
  event tempo reproduces the tick tempo exactly.

Both tempos tell the :class:`~desim.models.warehouse.robot_time.RobotClock`
how each resolved action turned out (moving, turning, loading, blocked, idle).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from desim.models.warehouse.floor import Action
from desim.models.warehouse.robot_time import RobotClock

END_OF_INSTANT = 2  # SimPy priority below NORMAL (1): runs after everything else at this time
FORWARD, LEFT, RIGHT, TOGGLE_LOAD = int(Action.FORWARD), int(Action.LEFT), int(Action.RIGHT), int(Action.TOGGLE_LOAD)  # as plain ints: cheaper to compare


class InstantBatch:
    """Requests made during one simulated instant, handled together at its end.

    :meth:`add` returns an event for the requester to wait on; at the end of
    the instant ``flush(batch)`` gets every ``(robot, payload, event)`` of the
    instant, sorted by robot, and must succeed each event (now or later).
    """

    def __init__(self, sim, flush: Callable[[list], None]) -> None:
        self.sim, self._flush = sim, flush
        self._items: list = []

    def add(self, i: int, payload: Any):
        ev = self.sim.env.event()
        if not self._items:
            self.sim.call_soon(self._run, END_OF_INSTANT)
        self._items.append((i, payload, ev))
        return ev

    def _run(self, _event) -> None:
        batch = sorted(self._items, key=lambda x: x[0])
        self._items = []
        self._flush(batch)


class Tempo:
    """Decisions (brain or ``external`` hook) and completions (the resolver), in either tempo.

    ``external(batch)``, when set, takes the decisions out of the simulation:
    it gets the instant's ``(robot, obs, event)`` triples and must succeed each
    event with the robot's action later. Otherwise ``brain.act`` decides.
    """

    def __init__(self, sim, cfg, floor, n: int, resolver, observe: Callable, brain=None, clock=None) -> None:
        self.sim, self.cfg, self.floor, self.n = sim, cfg, floor, n
        self.resolver, self.observe, self.brain = resolver, observe, brain
        self.clock = clock if clock is not None else RobotClock(n, cfg.tempo == "event", floor=floor)  # where robot time goes
        self.external = None
        self.runs = cfg.tempo == "event"  # whether a brain's ``follow_on`` actions are driven (``peers.PeerBeliefs.attach`` turns it off)
        self._follow: dict[int, list] = {}
        self.decisions = 0  # robot decisions taken (both tempos): env-steps = decisions / robots
        self._decisions = InstantBatch(sim, self._flush_decisions)
        self._completions = InstantBatch(sim, self._flush_completions)

    def start(self) -> None:
        if self.cfg.tempo == "tick":
            self.sim.env.process(self._tick_loop())

    # -- the tick tempo ----------------------------------------------------
    def _tick_loop(self):
        env, clock = self.sim.env, self.clock
        while True:
            decisions = [self.decide(i, self.observe(i)) for i in range(self.n)]
            yield env.all_of(decisions)
            actions = np.array([d.value for d in decisions], dtype=np.int64)
            clock.pending = actions
            yield env.timeout(self.cfg.tick_seconds)
            clock.tick(actions, self.resolver.resolve(actions), env.now)

    # -- decisions ---------------------------------------------------------
    def decide(self, i: int, obs):
        """An event that fires with robot ``i``'s action, decided in this instant's batch."""
        return self._decisions.add(i, obs)

    def _flush_decisions(self, batch: list) -> None:
        self.decisions += len(batch)
        if self.external is not None:  # an outside learner decides (the PettingZoo adapter)
            self.external(batch)
            return
        if self.brain is None:
            raise RuntimeError("the warehouse model has no brain and no external hook: pass a brain to "
                               "WarehouseModel(..., brain) or set model.external before the run")
        brain = self.brain
        actions = brain.act([obs for _i, obs, _ev in batch])
        follow = getattr(brain, "follow_on", None) if self.runs else None
        for (i, _obs, ev), a in zip(batch, actions):
            if follow is not None:
                run = follow(i)
                if run:
                    self._follow[i] = run
            ev.succeed(int(a))

    def follow_on(self, i: int) -> list:
        """The actions robot ``i``'s brain gave it beyond the one just decided (a run it drives
        without a new observation; ``[]`` for brains without ``follow_on`` and in the tick tempo)."""
        return self._follow.pop(i, [])

    # -- acting --------------------------------------------------------------
    def duration(self, i: int, action: int) -> float:
        """Seconds robot ``i`` spends on ``action`` (``[warehouse.durations]``, with jitter)."""
        d = self.cfg.durations
        if action == FORWARD:
            base = d.move_loaded if self.floor.cargo[i] >= 0 else d.move
        elif action == LEFT or action == RIGHT:
            base = d.turn
        elif action == TOGGLE_LOAD:
            base = d.load
        else:
            base = d.noop
        if d.jitter:
            base *= 1.0 + self.sim.rng.stream("durations").uniform(-d.jitter, d.jitter)
        return base

    def complete(self, i: int, action: int):
        """An event that fires once robot ``i``'s action has been resolved on the floor."""
        return self._completions.add(i, action)

    def _flush_completions(self, batch: list) -> None:
        actions = np.zeros(self.n, dtype=np.int64)
        for i, a, _ev in batch:
            actions[i] = a
        now, clock = self.sim.now, self.clock
        if len(batch) == 1:
            i, a, _ev = batch[0]
            clock.resolved(i, a, self.resolver.resolve_one(i, actions), now)
        else:
            blocked = self.resolver.resolve(actions)
            for i, a, _ev in batch:
                clock.resolved(i, a, blocked is not None and bool(blocked[i]), now)
        for _i, _a, ev in batch:
            ev.succeed()
