"""Warehouse env-steps/s: rware 2.0.0 vs desim's Floor and model (tick and event tempos).

Both sides get the same layout, robot count, request queue and the same
pre-drawn uniform random joint actions; each runs ``--steps`` joint steps
from its own reset (no resets inside the timed loop). Figures:

- ``rware``: ``Warehouse.step`` as users call it, with its default
  (FLATTENED) observations. Note that rware's step *includes building the
  observations* for every robot, while ``Floor.step`` builds none.
- ``rware no-obs``: the same ``Warehouse.step`` with observation building
  stubbed out (``env._make_obs = lambda agent: None``): rware's step logic
  alone (graph of moves, networkx components, grid, deliveries).
- ``desim tick``: ``models.warehouse.Floor.step`` (state, collisions,
  rewards, blocked-move heatmap; no observations).
- ``model tick`` / ``model event+net``: the whole warehouse model on the
  SimPy kernel with a random brain (snapshots, batching, metrics, Mesa grid),
  synchronous, and asynchronous with every action's status and observation
  crossing the network; ``event cost vs tick`` is their ratio (goal <= 5x).

Usage: python bench/env_speed.py [--steps N] [--seed S]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from desim.models.warehouse import Floor, Layout
from desim.models.warehouse.layout import SIZES

# (label, size, n_agents): request_queue_size = n_agents, as rware's default difficulty.
CASES = [
    ("tiny-2ag", "tiny", 2),
    ("small-4ag", "small", 4),
    ("medium-6ag", "medium", 6),
    ("large-8ag", "large", 8),
    ("large-64ag", "large", 64),
]


def _rware_env(size: str, n: int, strip_obs: bool):
    from rware.warehouse import RewardType, Warehouse

    rows, cols = SIZES[size]
    env = Warehouse(
        shelf_columns=cols,
        column_height=8,
        shelf_rows=rows,
        n_agents=n,
        msg_bits=0,
        sensor_range=1,
        request_queue_size=n,
        max_inactivity_steps=None,
        max_steps=None,
        reward_type=RewardType.INDIVIDUAL,
    )
    if strip_obs:
        env._make_obs = lambda agent: None
    return env


def bench_rware(size: str, n: int, actions: np.ndarray, seed: int, strip_obs: bool = False) -> float:
    env = _rware_env(size, n, strip_obs)
    env.reset(seed=seed)
    acts = [list(map(int, a)) for a in actions]
    step = env.step
    t0 = time.perf_counter()
    for a in acts:
        step(a)
    return len(acts) / (time.perf_counter() - t0)


def bench_tick(size: str, n: int, actions: np.ndarray, seed: int) -> float:
    floor = Floor(Layout.from_size(size), n, n, "individual", rng=np.random.default_rng(seed))
    floor.reset()
    step = floor.step
    t0 = time.perf_counter()
    for a in actions:
        step(a)
    return len(actions) / (time.perf_counter() - t0)


def bench_model(size: str, n: int, steps: int, seed: int, tempo: str) -> float:
    """env-steps/s of the whole desim model driven by the SimPy kernel, random brain.

    ``tick``: the synchronous tempo (snapshots, brain batching, metrics, Mesa
    grid). ``event``: every robot on its own clock, observations and commands
    over the network (wireless hop: lognormal 5 ms mean, 2 ms jitter; a
    status and an observation message per action), unit action durations.
    An env-step is one action per robot (decisions / robots).
    """
    from desim.app.runner import build
    from desim.models.warehouse.env import scenario_for

    net = dict(delay_mean=0.005, jitter=0.002) if tempo == "event" else {}
    sc = scenario_for(size=size, robots=n, tempo=tempo, max_steps=steps, **net)
    world = build(sc, seed)
    sim, model = world.sim, world.model
    t0 = time.perf_counter()
    sim.run(float(steps))
    dt = time.perf_counter() - t0
    return model.decisions / n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000, help="joint steps per run (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-strip", action="store_true", help="skip the rware no-obs column")
    args = ap.parse_args()

    console = Console(width=max(Console().width, 120))
    table = Table(title=f"warehouse env-steps/s ({args.steps} steps, uniform random actions)")
    table.add_column("layout")
    table.add_column("grid", justify="right")
    table.add_column("rware", justify="right")
    if not args.no_strip:
        table.add_column("rware no-obs", justify="right")
    table.add_column("desim tick", justify="right")
    table.add_column("desim/rware", justify="right")
    if not args.no_strip:
        table.add_column("desim/rware no-obs", justify="right")
    table.add_column("model tick", justify="right")
    table.add_column("model event+net", justify="right")
    table.add_column("event cost vs tick", justify="right")
    for label, size, n in CASES:
        rng = np.random.default_rng(args.seed)
        actions = rng.integers(0, 5, size=(args.steps, n))
        r = bench_rware(size, n, actions, args.seed)
        r0 = None if args.no_strip else bench_rware(size, n, actions, args.seed, strip_obs=True)
        d = bench_tick(size, n, actions, args.seed)
        H, W = Layout.from_size(size).shape
        row = [label, f"{H}x{W}", f"{r:,.0f}"]
        if r0 is not None:
            row.append(f"{r0:,.0f}")
        row += [f"{d:,.0f}", f"{d / r:.1f}x"]
        if r0 is not None:
            row.append(f"{d / r0:.1f}x")
        model_steps = max(args.steps // 3, 200)
        mt = bench_model(size, n, model_steps, args.seed, "tick")
        me = bench_model(size, n, model_steps, args.seed, "event")
        row += [f"{mt:,.0f}", f"{me:,.0f}", f"{mt / me:.1f}x"]
        table.add_row(*row)
    console.print(table)
    console.print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")


if __name__ == "__main__":
    main()
