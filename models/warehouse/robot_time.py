"""Where each robot's time goes: simulated seconds per state, in both tempos.

States (every robot is in exactly one at every instant, so per robot they sum
to the simulated time of the run):

- ``moving``: a ``FORWARD`` that moved the robot (loaded or not);
- ``turning``: ``LEFT`` or ``RIGHT``;
- ``loading``: ``TOGGLE_LOAD`` (pick up or put down);
- ``blocked``: held up by traffic, either way: a ``FORWARD`` that left the
  robot where it was (another robot in the way, the wall, or a parked shelf
  ahead of a loaded robot: the floor's ``blocked_moves``), or a ``NOOP`` while
  it has work (a task or a load), which is how a brain that sees the robot
  ahead waits for it (the greedy brain never drives into an occupied cell: it
  yields or is boxed in). The action's whole duration counts;
- ``waiting_obs`` (event tempo): the robot has asked its zone controller for an
  observation (its status report) and the controller has not answered it yet,
  plus time lost to silence: after ``obs_timeout`` without a usable answer the
  whole wait counts here and the robot asks again;
- ``waiting_command`` (event tempo): the controller has answered (the floor
  snapshot and the robot's task: its command) and the answer is in flight to
  the robot, then the robot's decision (zero simulated time with a brain on
  board);
- ``idle``: a ``NOOP`` with nothing to do (no task, no load).

Event tempo: an action counts from its decision to its completion and is
classified when the floor resolves it. Tick tempo: each tick (from one floor
step to the next, ``tick_seconds``) counts as its action's state; there is
no network, so no waiting. Whether a ``NOOP`` robot has work is read when its
action is resolved (a ``NOOP`` changes neither its task nor its load). An
action still in progress when the run ends counts as its nominal state (a
``FORWARD`` as moving).

Cost: the tick tempo appends each tick's actions, work mask and (if any)
the floor's mask of refused moves to lists and adds them up in one
``bincount`` every few hundred ticks; the event tempo makes a few scalar
updates per state change. Nothing here draws random numbers or schedules
events, so the trace is unchanged.
"""
from __future__ import annotations

import numpy as np

STATES = ("moving", "turning", "loading", "blocked", "waiting_obs", "waiting_command", "idle")
WAITING = ("blocked", "waiting_obs", "waiting_command", "idle")  # the candidates for the bottleneck

# raw columns: the action codes first (NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD), so an action indexes its own;
# BLOCKED: a refused FORWARD, HELD: a NOOP with work
NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD, BLOCKED, WAIT_OBS, WAIT_CMD, HELD = range(9)
RAW = 9
_COLUMNS = {"moving": (FORWARD,), "turning": (LEFT, RIGHT), "loading": (TOGGLE_LOAD,), "blocked": (BLOCKED, HELD),
            "waiting_obs": (WAIT_OBS,), "waiting_command": (WAIT_CMD,), "idle": (NOOP,)}


class RobotClock:
    """Seconds per robot per state (see the module docstring).

    ``tasks`` (each robot's task shelf, -1: none; a live array) and ``floor``
    (its ``cargo``) tell whether a ``NOOP`` robot has work. Event tempo: each
    robot has one open segment (its start and state); :meth:`switch` closes it
    in its state and opens the next, :meth:`settle` closes it as what it turned
    out to be (a wait that timed out), :meth:`resolved` as the action the floor
    resolved. Tick tempo: one open segment for all robots, closed by
    :meth:`tick` at every floor step.
    """

    def __init__(self, n: int, event: bool, tasks: np.ndarray | None = None, floor=None) -> None:
        self.n, self.event = n, event
        self._tasks = tasks if tasks is not None else np.full(n, -1, dtype=np.int64)
        self._floor = floor
        # event tempo: per robot, plain lists (scalar updates on them cost a third of numpy's)
        self._ev = [[0.0] * RAW for _ in range(n)]  # closed segments, seconds
        self._mark = [0.0] * n
        self._state = [WAIT_OBS if event else NOOP] * n  # a robot's life starts with its status report
        # tick tempo: closed segments; the last floor step and the tick's actions once decided; the
        # ticks not yet added up (in one bincount every _batch ticks: cheaper than an indexed add per tick)
        self._acc = np.zeros((n, RAW))
        self._base = np.arange(n, dtype=np.int64) * RAW
        self._t = 0.0
        self.pending: np.ndarray | None = None
        self._ticks: list = []  # each tick's actions
        self._refused: list = []  # (tick, mask of refused FORWARDs) for the ticks that had some
        self._work: list = []  # each tick's max(task, load): >= 0 where the robot has work
        self._dts: list = []  # each tick's seconds
        self._batch = max(16, min(1024, 65536 // max(n, 1)))

    def _has_work(self, i: int) -> bool:
        return self._tasks[i] >= 0 or (self._floor is not None and self._floor.cargo[i] >= 0)

    def _work_now(self) -> np.ndarray:
        if self._floor is None:
            return self._tasks.copy()
        return np.maximum(self._tasks, self._floor.cargo)

    # -- event tempo ---------------------------------------------------------
    def switch(self, i: int, state: int, now: float) -> None:
        """Robot ``i``'s open segment ends now, in its current state; the next one is ``state``."""
        self._ev[i][self._state[i]] += now - self._mark[i]
        self._mark[i] = now
        self._state[i] = state

    def settle(self, i: int, state: int, now: float) -> None:
        """Robot ``i``'s open segment ends now and counts as ``state`` (which stays current)."""
        self._ev[i][state] += now - self._mark[i]
        self._mark[i] = now
        self._state[i] = state

    def resolved(self, i: int, action: int, blocked: bool, now: float) -> None:
        """Robot ``i``'s ``action`` has been resolved on the floor (``blocked``: a refused ``FORWARD``)."""
        if blocked:
            state = BLOCKED
        elif action == NOOP and self._has_work(i):
            state = HELD
        else:
            state = action
        self.settle(i, state, now)

    def answered(self, i: int, now: float) -> None:
        """Robot ``i``'s zone controller has answered it: waiting_obs -> waiting_command."""
        if self._state[i] == WAIT_OBS:
            self.switch(i, WAIT_CMD, now)

    # -- tick tempo ----------------------------------------------------------
    def tick(self, actions: np.ndarray, blocked: np.ndarray | None, now: float) -> None:
        """A floor step: the tick since the last one counts as each robot's action (or blocked)."""
        codes = self._ticks
        codes.append(actions)
        if blocked is not None:
            self._refused.append((len(codes) - 1, blocked))
        self._work.append(self._work_now())
        self._dts.append(now - self._t)
        self._t = now
        self.pending = None
        if len(codes) >= self._batch:
            self._add_ticks()

    def _add_ticks(self) -> None:
        if not self._ticks:
            return
        n = self.n
        codes = np.concatenate(self._ticks)  # tick-major: robot k of tick j at j * n + k
        codes[(codes == NOOP) & (np.concatenate(self._work) >= 0)] = HELD
        idx = codes.reshape(-1, n)
        if self._refused:
            rows = np.array([j for j, _ in self._refused])
            idx[rows] = np.where(np.stack([m for _, m in self._refused]), BLOCKED, idx[rows])
        idx += self._base  # robot k, column c -> k * RAW + c
        dts = self._dts
        dt = dts[0]
        flat = self._acc.reshape(-1)  # a view
        if all(x == dt for x in dts):  # every tick as long (the usual case): count, then scale
            flat += np.bincount(idx.ravel(), minlength=n * RAW) * dt
        else:
            flat += np.bincount(idx.ravel(), weights=np.repeat(dts, n), minlength=n * RAW)
        self._ticks, self._work, self._dts, self._refused = [], [], [], []

    # -- reading ---------------------------------------------------------------
    def raw(self, now: float) -> np.ndarray:
        """``(n, RAW)`` seconds per raw column, the open segments counted up to ``now``."""
        if self.event:
            acc = np.array(self._ev).reshape(self.n, RAW)
            for i in range(self.n):
                state = self._state[i]
                if state == NOOP and self._has_work(i):
                    state = HELD
                acc[i, state] += now - self._mark[i]
            return acc
        self._add_ticks()
        acc = self._acc.copy()
        if self.pending is not None:
            codes = np.where((self.pending == NOOP) & (self._work_now() >= 0), HELD, self.pending)
            acc.reshape(-1)[self._base + codes] += now - self._t
        else:  # between a floor step and the next decisions (zero time unless a decider is slow)
            acc[:, NOOP] += now - self._t
        return acc

    def seconds(self, now: float) -> dict[str, np.ndarray]:
        """Per state (:data:`STATES`), each robot's seconds up to ``now``: ``(n,)`` arrays."""
        acc = self.raw(now)
        return {s: acc[:, cols].sum(axis=1) for s, cols in _COLUMNS.items()}


def totals(per_robot: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float], str | None]:
    """Seconds per state over all robots, the shares (summing to 1), and the bottleneck: the
    largest of :data:`WAITING` (None when the robots spent no time in any of them)."""
    tot = {s: float(per_robot[s].sum()) for s in STATES}
    whole = sum(tot.values())
    share = {s: (v / whole if whole > 0 else 0.0) for s, v in tot.items()}
    worst = max(WAITING, key=lambda s: tot[s])
    return tot, share, (worst if tot[worst] > 0 else None)
