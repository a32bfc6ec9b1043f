"""The warehouse's agents: robots and zone controllers.

In the event tempo a robot's life is one loop: ask its zone controller for an
observation, wait for it (it may come late, out of order, corrupted or not at
all), let its brain decide, spend the action's duration doing it, report back.
The model's ``clock`` (``robot_time.RobotClock``) follows it through these
states: waiting_obs, waiting_command, then the action. With ``[belief] peers``
the model's ``peers`` (``peers.PeerBeliefs``) reads every observation received
and may turn a ``FORWARD`` into a hold.
In the tick tempo the model drives every robot in lock step instead, exactly
as rware does, and robots are only registry entries on the Mesa grid.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from desim.agent import Agent
from desim.models.warehouse.robot_time import FORWARD, WAIT_CMD, WAIT_OBS

if TYPE_CHECKING:
    from desim.models.warehouse.model import WarehouseModel

STATUS_SIZE = 64  # bytes: pose, battery, action result
OBS_SIZE = 512  # bytes: a local snapshot and a task


class Robot(Agent):
    role = "robot"

    def __init__(self, sim, name: str, index: int, zone: int, wh: "WarehouseModel"):
        self.index = index
        self.controller = f"zone-{zone}"
        self.wh = wh
        self.last_obs_t = -1.0
        self._mail: list = []
        self._waiter = None
        super().__init__(sim, name, role="robot")

    def behaviour(self):
        if self.wh.cfg.tempo != "event":
            return
        env, wh = self.sim.env, self.wh
        i, clock = self.index, wh.clock  # the clock starts every robot in waiting_obs
        self.send(self.controller, "status", size=STATUS_SIZE)
        while True:
            obs = yield from self._await_observation()
            clock.switch(i, WAIT_CMD, env.now)  # (a no-op switch if the controller's answer already did it)
            action = yield wh.decide(i, obs)
            if wh.peers is not None:  # [belief] peers: hold rather than drive where a peer may be
                action = wh.peers.gate(i, obs, action, env.now)
            run = wh.tempo.follow_on(i)  # more actions given in the same decision (a traffic brain's run)
            floor = wh.floor
            for a in (action, *run) if run else (action,):  # no new observation between them
                before = int(floor.cells[i])
                clock.switch(i, a, env.now)
                yield env.timeout(wh.duration(i, a))
                yield wh.complete(i, a)  # the tempo settles the action as what it turned out to be
                if a == FORWARD and int(floor.cells[i]) == before:
                    break  # refused on the floor: the rest of the run is void, observe again
            clock.switch(i, WAIT_OBS, env.now)
            self.send(self.controller, "status", size=STATUS_SIZE)

    def deliver(self, msg) -> None:
        # a mailbox with one waiter, cheaper than a Store get raced against a timer
        self._mail.append(msg)
        w = self._waiter
        if w is not None and not w.triggered:
            w.succeed()

    def _await_observation(self):
        """The freshest usable observation; on silence, ask again (a retry)."""
        env = self.sim.env
        while True:
            if not self._mail:
                w = self._waiter = env.event()
                env.timeout(self.wh.cfg.obs_timeout).callbacks.append(lambda _e, w=w: w.triggered or w.succeed())
                yield w
                self._waiter = None
                if not self._mail:  # silence: the status or its answer was lost, or the zone is cut off
                    self.wh.retries += 1
                    self.wh.clock.settle(self.index, WAIT_OBS, env.now)  # the whole wait was for an observation
                    self.send(self.controller, "status", size=STATUS_SIZE)
                    continue
            msgs, self._mail = self._mail, []
            peers = self.wh.peers
            if peers is not None:  # every observation received updates the beliefs of the peers
                for m in msgs:
                    if m.kind == "obs" and not m.corrupted:
                        peers.read(self.index, m.payload.view, env.now)
            usable = [m for m in msgs if m.kind == "obs" and not m.corrupted and m.payload.view.t >= self.last_obs_t]
            self.wh.corrupt_obs += sum(1 for m in msgs if m.corrupted)
            if not usable:  # only stale or corrupted ones: keep waiting for a good one
                continue
            best = max(usable, key=lambda m: m.payload.view.t)
            self.last_obs_t = best.payload.view.t
            return best.payload


class ZoneController(Agent):
    """Answers a robot's status report with an observation and its task."""

    role = "controller"

    def __init__(self, sim, name: str, wh: "WarehouseModel"):
        self.wh = wh
        super().__init__(sim, name, role="controller")

    def behaviour(self):
        return
        yield  # a controller only reacts to messages

    def deliver(self, msg) -> None:
        self.on_message(msg)

    def on_message(self, msg) -> None:
        if msg.kind != "status" or msg.corrupted:
            return
        robot = self.wh.robot_by_name.get(msg.src)
        if robot is None:
            return
        self.wh.clock.answered(robot.index, self.sim.now)  # its observation and task (its command) are on their way
        self.send(msg.src, "obs", payload=self.wh.observe(robot.index), size=OBS_SIZE)
