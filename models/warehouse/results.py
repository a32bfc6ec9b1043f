"""Results: periodic samples (Mesa DataCollector), the run's summary and its tables.

Reads the model only through its public surface (``floor``, ``book``,
``deadlocks``, ``events``, ``paths``, ``rewards``, ``robot_time()``, counters).

The summary's ``robot_time`` (seconds per state, summed over robots),
``robot_time_share`` (the same as fractions of all robot time, summing to 1)
and ``bottleneck`` (the largest of blocked, waiting_obs, waiting_command and
idle: where robots lose the most time; None if they lost none) come from
``robot_time.RobotClock``; the ``robot_time`` table has one row per robot.
"""
from __future__ import annotations

import mesa
import numpy as np

from desim.models.warehouse.robot_time import STATES, totals

FRAME_CAP = 8192  # playback frames kept at most: past it, every other one goes and the interval doubles
ROBOT_FRAMES_CAP = 1_000_000  # ... and at most this many robot positions in all (500 robots: 2,000 frames)
SERIES_CAP = 2000  # robot-time samples kept at most (thinned evenly when a run takes more)


class Playback:
    """The floor at a fixed interval, for the dashboard's playback (recording runs only).

    A frame (``floor_frames``) is each robot's cell, heading and carried shelf
    (-1: none) and the requested shelves, read at ``every`` seconds (the tick in
    the tick tempo, half a second in the event tempo), before that instant's
    floor step: the state that held up to the frame's time. Shelves that are
    not carried are logged when their cell changes (``floor_shelves``: every
    shelf at 0 s, then each put-down elsewhere), so a frame stays a few dozen
    integers. Past :data:`FRAME_CAP` frames (fewer on a crowded floor: at most
    :data:`ROBOT_FRAMES_CAP` robot positions in all) every other one is dropped
    and the interval doubles, so a run of any length keeps at most that many.
    Reads the floor only: no draws, nothing recorded in the trace.
    """

    def __init__(self, sim, floor, every: float) -> None:
        self.sim, self.floor, self.every = sim, floor, float(every)
        self.cap = max(256, min(FRAME_CAP, ROBOT_FRAMES_CAP // max(1, floor.cells.size)))
        self.t: list[float] = []
        self.cell: list[str] = []  # comma-separated integers, one per robot (the store has no list columns)
        self.heading: list[str] = []
        self.cargo: list[str] = []
        self.requests: list[str] = []
        self._shelf = floor.shelf_cells.copy()
        self.shelves: dict[str, list] = {"t": [0.0] * self._shelf.size, "shelf": list(range(self._shelf.size)),
                                         "cell": self._shelf.tolist()}

    def start(self) -> None:
        self.sim.env.process(self._loop())

    def _loop(self):
        env = self.sim.env
        while True:
            self.frame(env.now)
            yield env.timeout(self.every)

    def frame(self, now: float) -> None:
        f = self.floor
        self.t.append(float(now))
        self.cell.append(",".join(map(str, f.cells.tolist())))
        self.heading.append(",".join(map(str, f.headings.tolist())))
        self.cargo.append(",".join(map(str, f.cargo.tolist())))
        self.requests.append(",".join(str(x) for x in f.requests.tolist() if x >= 0))
        cells = f.shelf_cells
        moved = np.flatnonzero(cells != self._shelf)
        if moved.size:
            carried = set(f.cargo.tolist())
            for k in moved.tolist():
                if k not in carried:  # put down (a carried shelf is drawn on its robot)
                    self.shelves["t"].append(float(now))
                    self.shelves["shelf"].append(k)
                    self.shelves["cell"].append(int(cells[k]))
                    self._shelf[k] = cells[k]
        if len(self.t) > self.cap:
            for lst in (self.t, self.cell, self.heading, self.cargo, self.requests):
                del lst[1::2]
            self.every *= 2

    def tables(self) -> dict[str, dict]:
        return {"floor_frames": {"t": self.t, "cell": self.cell, "heading": self.heading, "cargo": self.cargo,
                                 "requests": self.requests},
                "floor_shelves": self.shelves}


class Results:
    def __init__(self, wh) -> None:
        self.wh = wh
        self.sample_times: list[float] = []
        self.robot_time_samples: list[tuple[float, dict]] = []  # (t, seconds per state per robot so far)
        self.playback: Playback | None = None  # set by the model in recording runs
        self._last_sample = (0.0, 0)
        f, book, net = wh.floor, wh.book, wh.net
        self.datacollector = mesa.DataCollector(model_reporters={
            "deliveries": lambda m: f.deliveries,
            "throughput_per_hour": lambda m: self._window_throughput(),
            "orders_pending": lambda m: book.pending,
            "orders_completed": lambda m: book.completed,
            "orders_failed": lambda m: sum(book.failed.values()),
            "collisions": lambda m: int(f.collisions_per_cell.sum()),
            "blocked_moves": lambda m: int(f.blocked_per_cell.sum()),
            "deadlocks": lambda m: sum(wh.deadlocks.values()),
            "robots_loaded": lambda m: int((f.cargo >= 0).sum()),
            "messages_delivered": lambda m: net.delivered,
            "messages_dropped": lambda m: sum(net.dropped.values()),
        })

    def _window_throughput(self) -> float:
        t0, d0 = self._last_sample
        now = self.wh.sim.now
        deliveries = self.wh.floor.deliveries
        rate = (deliveries - d0) * 3600.0 / (now - t0) if now > t0 else 0.0
        self._last_sample = (now, deliveries)
        return rate

    def sample(self) -> None:
        """One row of every metric, now."""
        self.sample_times.append(self.wh.sim.now)
        self.datacollector.collect(self.wh.sim.model)
        self.robot_time_samples.append((self.wh.sim.now, self.wh.robot_time()))

    def finish(self) -> None:
        """Take a last sample at the end of the run, unless one was just taken."""
        if not self.sample_times or self.sample_times[-1] < self.wh.sim.now:
            self.sample()

    def summary(self) -> dict:
        wh = self.wh
        now = wh.sim.now
        f, cfg = wh.floor, wh.cfg
        time_total, time_share, bottleneck = totals(wh.robot_time())
        return {
            "tempo": cfg.tempo,
            "brain": cfg.brain,
            "robots": wh.n,
            "floor": {"name": wh.layout.name or (cfg.size or "map"), "width": f.width, "height": f.height,
                      "shelves": f.n_shelves, "goals": len(wh.layout.goals)},
            "deliveries": int(f.deliveries),
            "throughput_per_hour": f.deliveries * 3600.0 / now if now > 0 else 0.0,
            "order_latency": wh.book.latency_percentiles(),
            "collisions": int(f.collisions_per_cell.sum()),
            "blocked_moves": int(f.blocked_per_cell.sum()),
            "deadlocks": int(sum(wh.deadlocks.values())),
            "deadlocks_by_kind": dict(wh.deadlocks),
            "longest_stuck_s": wh.watcher.longest_stuck(now),
            "longest_still_s": wh.watcher.longest_still(now),
            "orders": wh.book.counts(),
            "orders_conserved": wh.book.conserved(),
            "retries": wh.retries + wh.net.retries,
            "corrupt_observations": wh.corrupt_obs,
            "mean_return": float(wh.rewards.mean()),
            "robot_time": time_total,
            "robot_time_share": time_share,
            "bottleneck": bottleneck,
        }

    def tables(self) -> dict[str, dict]:
        """Rows for the results store: time series, contention, floor plan, paths, events, orders, robot
        time (per robot, and cumulative at every sample: ``robot_time_series``), playback frames."""
        wh = self.wh
        ts = {"t": [], "metric": [], "value": []}
        for metric, values in self.datacollector.model_vars.items():
            for t, v in zip(self.sample_times, values):
                ts["t"].append(float(t))
                ts["metric"].append(metric)
                ts["value"].append(float(v))
        f = wh.floor
        H, W = f.height, f.width
        ys, xs = np.divmod(np.arange(H * W), W)
        goals = np.zeros(H * W, dtype=bool)
        goals[f.goal_cells] = True
        contention = {"x": xs.tolist(), "y": ys.tolist(), "blocked": f.blocked_per_cell.tolist(),
                      "collisions": f.collisions_per_cell.tolist(),
                      "cell": np.where(goals, "goal", np.where(f.highway, "highway", "shelf")).tolist()}
        p = wh.paths
        paths = {"t": [x[0] for x in p], "robot": [x[1] for x in p], "x": [x[2] for x in p], "y": [x[3] for x in p]}
        e = wh.events
        events = {"t": [x[0] for x in e], "kind": [x[1] for x in e], "agent": [x[2] for x in e], "detail": [x[3] for x in e]}
        orders = {"oid": [], "shelf": [], "created": [], "assigned": [], "picked": [], "delivered": [], "failed": [], "reason": []}
        for o in wh.book.orders:
            for k in orders:
                orders[k].append(getattr(o, k))
        robot_time = {"robot": list(range(wh.n)), "zone": [i % wh.cfg.zones for i in range(wh.n)]}
        robot_time.update({s: v.tolist() for s, v in wh.robot_time().items()})
        series = {"t": [], "robot": [], **{k: [] for k in STATES}}
        samples = self.robot_time_samples
        if len(samples) > SERIES_CAP:  # evenly thinned, the last sample kept
            keep = np.unique(np.linspace(0, len(samples) - 1, SERIES_CAP).round().astype(int))
            samples = [samples[i] for i in keep]
        for t, secs in samples:
            series["t"] += [float(t)] * wh.n
            series["robot"] += list(range(wh.n))
            for k in STATES:
                series[k] += secs[k].tolist()
        out = {"timeseries": ts, "contention": contention, "paths": paths, "events": events, "orders": orders,
               "robot_time": robot_time, "robot_time_series": series}
        if self.playback is not None:
            out.update(self.playback.tables())
        return out
