"""The warehouse model: robots on an rware-rules floor, in two tempos (see ``tempo``).

This module is the wiring: it builds the floor and the collaborators that each
do one job, registers the robots and zone controllers with Mesa, and starts
the processes. The jobs live in their own modules:

- ``observe.Views``: the floor snapshot every observation shares
- ``dispatch.Dispatcher``: which requested shelf each robot goes for
- ``tempo.Tempo``: the tick loop, batched decisions and completions
- ``resolution.Resolver``: applying actions to the floor and what follows
- ``watch.Watcher``: wait-for deadlocks and stuck robots
- ``order_flow.OrderFlow``: order arrivals, expiry, request slots
- ``robot_time.RobotClock``: where each robot's time goes (moving ... idle)
- ``results.Results``: samples, ``summary()``, ``tables()``
"""
from __future__ import annotations

import numpy as np
from mesa.space import MultiGrid

from desim.agent import Agent
from desim.models.warehouse.agents import Robot, ZoneController
from desim.models.warehouse.dispatch import Dispatcher
from desim.models.warehouse.floor import Floor
from desim.models.warehouse.observe import FloorView, RobotObs, Views
from desim.models.warehouse.order_flow import OrderFlow
from desim.models.warehouse.resolution import PATH_ROBOTS, Resolver
from desim.models.warehouse.results import Playback, Results
from desim.models.warehouse.robot_time import RobotClock
from desim.models.warehouse.tempo import END_OF_INSTANT, Tempo
from desim.models.warehouse.watch import Watcher
from desim.network.topology import robot_name

__all__ = ["WarehouseModel", "END_OF_INSTANT", "PATH_ROBOTS"]

PLAYBACK_EVERY = 0.5  # seconds between playback frames in the event tempo (the tick tempo: every tick)


class WarehouseModel:
    """``cfg.robots`` robots on an rware-rules floor, driven by SimPy in ``cfg.tempo``.

    ``WarehouseModel(sim, net, cfg, layout, brain)`` wires itself into ``sim``
    (its processes start with the simulation) and ``net`` (robots, zone
    controllers and services are agents on it). ``brain`` decides for every
    robot (``act(observations) -> actions``, one call per instant's batch);
    with ``brain=None`` the caller must set :attr:`external` before the run,
    or the first decision raises ``RuntimeError``.

    A caller may rely on:

    - state: ``floor`` (a :class:`Floor`; read it through its public read-only
      views), ``static`` (its unchanging geometry), ``n`` (robots), ``tasks``
      (task shelf per robot, -1: none), ``book`` (the :class:`OrderBook`),
      ``rewards`` (accumulated per robot), ``decisions`` (robot decisions taken),
      ``version`` (bumped on every floor change), ``events``, ``deadlocks``,
      ``robots``, ``grid``, ``cfg``, ``layout``, ``sim``, ``net``;
    - observing: :meth:`view` (one shared snapshot until the floor changes),
      :meth:`observe` (robot ``i``'s observation, with its task);
    - acting (event tempo, used by the robots): :meth:`decide`,
      :meth:`duration`, :meth:`complete`;
    - ``external``: a hook ``external(batch)`` that takes the decisions out of
      the simulation (``batch``: the instant's ``(robot, obs, event)``, sorted
      by robot; it must succeed each event with the action later);
    - results: :meth:`finish` (a last sample), :meth:`summary`, :meth:`tables`,
      :meth:`robot_time` (seconds per robot per state, summing to ``sim.now``;
      ``clock`` keeps them).
    """

    def __init__(self, sim, net, cfg, layout, brain=None):
        self.sim, self.net, self.cfg, self.layout = sim, net, cfg, layout
        env = sim.env
        n = cfg.robots
        self.n = n
        slots = cfg.request_queue or n
        self.floor = Floor(layout, n, slots, cfg.reward, rng=sim.rng.stream("floor"))
        self.floor.reset()
        self.views = Views(self.floor, sim)
        self.static = self.views.static
        self.dispatcher = Dispatcher(self.floor, n)
        self.events: list[tuple[float, str, str, str]] = []
        self.orders = OrderFlow(sim, self.floor, cfg.orders, slots, self.views, self.events)
        self.book = self.orders.book

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

        # counters the robots keep
        self.retries = 0
        self.corrupt_obs = 0
        self.watcher = Watcher(sim, self.floor, self.robots, self.events, cfg.stuck_after, self.dispatcher)
        self.dispatcher.on_task, self.dispatcher.on_idle = self.watcher.task_given, self.watcher.work_ended
        self.resolver = Resolver(sim, self.floor, self.book, self.watcher, self.views, self.grid, self.robots, cfg.reward)
        self.clock = RobotClock(n, cfg.tempo == "event", self.dispatcher.tasks, self.floor)
        self.results = Results(self)
        self.components: list = []  # parts wired in after the model (pipeline.Services): finish, summary, tables
        self.peers = None  # [belief] peers: the robots' beliefs of their peers' positions (peers.PeerBeliefs)
        self.tempo = Tempo(sim, cfg, self.floor, n, self.resolver, self.observe, brain, clock=self.clock)

        if getattr(net, "recording", False):  # a recording run: the floor at a fixed interval, for playback
            every = cfg.tick_seconds if cfg.tempo == "tick" else PLAYBACK_EVERY
            self.results.playback = Playback(sim, self.floor, every)
            self.results.playback.start()

        self.tempo.start()
        self.orders.start()
        env.process(self._sample_loop())

    # -- the collaborators' state, as the model's ------------------------------
    @property
    def brain(self):
        return self.tempo.brain

    @property
    def external(self):
        return self.tempo.external

    @external.setter
    def external(self, hook) -> None:
        self.tempo.external = hook

    @property
    def decisions(self) -> int:
        return self.tempo.decisions

    @property
    def version(self) -> int:
        return self.views.version

    @property
    def tasks(self) -> np.ndarray:
        return self.dispatcher.tasks

    @property
    def rewards(self) -> np.ndarray:
        return self.resolver.rewards

    @property
    def resolutions(self) -> int:
        return self.resolver.resolutions

    @property
    def paths(self) -> list:
        return self.resolver.paths

    @property
    def deadlocks(self) -> dict:
        return self.watcher.deadlocks

    @property
    def last_progress(self) -> np.ndarray:
        return self.watcher.last_progress

    @property
    def datacollector(self):
        return self.results.datacollector

    @property
    def sample_times(self) -> list:
        return self.results.sample_times

    # -- observing and dispatching -----------------------------------------
    def view(self) -> FloorView:
        """A snapshot of the floor, shared by every observation until the floor changes."""
        return self.views.view()

    def observe(self, i: int) -> RobotObs:
        return RobotObs(i, self.views.view(), self.dispatcher.dispatch(i))

    def dispatch(self, i: int) -> int:
        """Robot ``i``'s task shelf: kept while it matters, else the nearest free request."""
        return self.dispatcher.dispatch(i)

    # -- acting (the robots' side of the tempo) --------------------------------
    def decide(self, i: int, obs: RobotObs):
        """An event that fires with robot ``i``'s action, decided in this instant's batch."""
        return self.tempo.decide(i, obs)

    def duration(self, i: int, action: int) -> float:
        return self.tempo.duration(i, action)

    def complete(self, i: int, action: int):
        """An event that fires once robot ``i``'s action has been resolved on the floor."""
        return self.tempo.complete(i, action)

    # -- sampling and results ------------------------------------------------
    def _sample_loop(self):
        env = self.sim.env
        every = self.cfg.sample_every
        while True:
            yield env.timeout(every)
            self.results.sample()
            self.watcher.check_stuck(self.dispatcher.busy(), env.now)

    def finish(self) -> None:
        """Take a last sample at the end of the run (called by the runner)."""
        self.results.finish()
        for c in self.components:
            c.finish()

    def summary(self) -> dict:
        out = self.results.summary()
        for c in self.components:
            out.update(c.summary())
        return out

    def robot_time(self) -> dict[str, np.ndarray]:
        """Seconds each robot has spent in each state (``robot_time.STATES``) so far: ``(n,)`` arrays
        that sum, robot by robot, to the simulated time."""
        return self.clock.seconds(self.sim.now)

    def tables(self) -> dict[str, dict]:
        """Rows for the results store: time series, contention, floor plan, paths, events, orders, robot time."""
        out = self.results.tables()
        for c in self.components:
            out.update(c.tables())
        return out
