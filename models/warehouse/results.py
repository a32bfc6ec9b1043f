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

from desim.models.warehouse.robot_time import totals


class Results:
    def __init__(self, wh) -> None:
        self.wh = wh
        self.sample_times: list[float] = []
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
        """Rows for the results store: time series, contention, floor plan, paths, events, orders."""
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
        return {"timeseries": ts, "contention": contention, "paths": paths, "events": events, "orders": orders,
                "robot_time": robot_time}
