"""Env-steps/s of rware, the numpy Floor and the batched torch floor (issue 14), in one run.

One env step = one step of one floor (all its robots act). Every side gets
the same layout, robot count and request queue (rware's registered tasks:
tiny-2ag, small-4ag, large-8ag) and uniform random joint actions, drawn
before the clock starts:

- ``rware``: ``Warehouse.step`` as users call it (it builds its flattened
  observations every step); the peer every ratio is taken against.
- ``Floor``: desim's numpy ``Floor.step`` (no observations).
- ``batched N=...``: ``BatchedFloor.step`` over N floors (state, conflicts,
  deliveries, rewards; a finished floor is reset), no observations.
- ``env rware-obs`` / ``env features``: ``BatchedWarehouseEnv.step`` at
  N = 1,024 (the floor, automatic reset, and every robot's observation:
  rware's 71 floats, or the project's feature vector with the planner's
  guidance), what a learner gets.

``--mappo``: MAPPO end to end (rollout and update, learning) on 1,024 batched
floors against today's loop on 8 simulated floors (:func:`bench_mappo`).

Usage: python bench/batched_floor.py [--quick] [--device cpu|cuda|auto] [--threads K] [--mappo]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rware.warehouse import RewardType, Warehouse

from desim.models.warehouse import Floor
from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.layout import SIZES, rware_task
from desim.models.warehouse.env import VectorWarehouseEnv
from desim.models.warehouse.vector_env import BatchedWarehouseEnv
from desim.policies.common import EnvInfo
from desim.policies.mappo import MAPPO

TASKS = ("tiny-2ag", "small-4ag", "large-8ag")
SIZES_N = (1, 64, 1024, 4096)
ENV_N = 1024


def bench_rware(task: str, steps: int, seed: int) -> float:
    layout, kw = rware_task(task)
    rows, cols = SIZES[layout.name]
    env = Warehouse(shelf_columns=cols, column_height=8, shelf_rows=rows, n_agents=kw["n_agents"], msg_bits=0,
                    sensor_range=1, request_queue_size=kw["request_queue_size"], max_inactivity_steps=None,
                    max_steps=None, reward_type=RewardType.INDIVIDUAL)
    env.reset(seed=seed)
    acts = np.random.default_rng(seed).integers(0, 5, size=(steps, kw["n_agents"])).tolist()
    step = env.step
    t0 = time.perf_counter()
    for a in acts:
        step(a)
    return steps / (time.perf_counter() - t0)


def bench_floor(task: str, steps: int, seed: int) -> float:
    layout, kw = rware_task(task)
    floor = Floor(layout, kw["n_agents"], kw["request_queue_size"], "individual", rng=np.random.default_rng(seed))
    floor.reset()
    acts = np.random.default_rng(seed).integers(0, 5, size=(steps, kw["n_agents"]))
    step = floor.step
    t0 = time.perf_counter()
    for a in acts:
        step(a)
    return steps / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _actions(n_floors: int, n: int, device: torch.device, seed: int, pool: int = 32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 5, (n_floors, n), generator=g).to(device) for _ in range(pool)]


def bench_batched(task: str, n_floors: int, iters: int, device: torch.device, seed: int) -> float:
    layout, kw = rware_task(task)
    bf = BatchedFloor(layout, kw["n_agents"], kw["request_queue_size"], n_floors, "individual",
                      max_steps=kw["max_steps"], seed=seed, device=device)
    bf.reset()
    acts = _actions(n_floors, kw["n_agents"], device, seed)
    for i in range(5):  # warm-up (allocator, kernels)
        bf.step(acts[i])
    _sync(device)
    t0 = time.perf_counter()
    for i in range(iters):
        _r, done = bf.step(acts[i % len(acts)])
        bf.reset(done)
    _sync(device)
    return iters * n_floors / (time.perf_counter() - t0)


def bench_env(task: str, n_floors: int, iters: int, device: torch.device, seed: int, obs: str) -> float:
    layout, kw = rware_task(task)
    env = BatchedWarehouseEnv(layout.name, kw["n_agents"], max_steps=kw["max_steps"],
                              request_queue=kw["request_queue_size"], n_envs=n_floors, seed=seed, device=device, obs=obs)
    env.reset()
    acts = _actions(n_floors, kw["n_agents"], device, seed)
    for i in range(3):
        env.step(acts[i])
    _sync(device)
    t0 = time.perf_counter()
    for i in range(iters):
        env.step(acts[i % len(acts)])
    _sync(device)
    return iters * n_floors / (time.perf_counter() - t0)


# MAPPO on batched floors: 1,024 floors x 32-step rollouts = 32,768 env steps per update (the numpy loop's
# default is 8 copies x 128 steps = 1,024), 4 epochs of 2 minibatches
MAPPO_BATCHED = {"rollout": 32, "epochs": 4, "minibatches": 2}


def bench_mappo(task: str, device: torch.device, quick: bool) -> tuple[float, float]:
    """MAPPO end to end (rollout + update, learning), env-steps/s: on 1,024 batched floors on ``device``
    (``policies.ondevice``), and today's loop on 8 simulated floors (``VectorWarehouseEnv``, the peer),
    both with desim's feature observations."""
    layout, kw = rware_task(task)
    env = BatchedWarehouseEnv(layout.name, kw["n_agents"], max_steps=kw["max_steps"],
                              request_queue=kw["request_queue_size"], n_envs=ENV_N, seed=0, device=device)
    learner = MAPPO(EnvInfo(**env.info()), MAPPO_BATCHED, device, 0)
    steps = ENV_N * MAPPO_BATCHED["rollout"] * (2 if quick else 6)
    t0 = time.perf_counter()
    learner.train(env, steps, lambda s, m: None)
    _sync(device)
    batched = steps / (time.perf_counter() - t0)
    venv = VectorWarehouseEnv(8, seed=0, size=layout.name, robots=kw["n_agents"], max_steps=kw["max_steps"],
                              request_queue=kw["request_queue_size"])
    peer = MAPPO(EnvInfo(**venv.info()), {}, "cpu", 0)
    steps = 8 * 128 * (1 if quick else 3)
    t0 = time.perf_counter()
    peer.train(venv, steps, lambda s, m: None)
    return batched, steps / (time.perf_counter() - t0)


def _iters(n_floors: int, quick: bool, device: torch.device) -> int:
    budget = 400_000 if device.type == "cpu" else 20_000_000  # env steps per measurement
    it = max(30, min(2000, budget // n_floors))
    return max(10, it // 4) if quick else it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the steps (a rough table in about a minute)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a small shared CPU more threads wait on each other)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mappo", action="store_true", help="also MAPPO end to end: batched floors against simulated floors")
    args = ap.parse_args()
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev not in ("cpu", "cuda") and not dev.startswith("cuda:"):
        sys.exit(f"--device must be cpu, cuda or auto, got {args.device!r}")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available on this machine")
    if args.threads < 1:
        sys.exit(f"--threads must be at least 1, got {args.threads}")
    device = torch.device(dev)
    torch.set_num_threads(args.threads)
    rsteps = 500 if args.quick else 2000

    console = Console(width=max(Console().width, 180))
    table = Table(title=f"env-steps/s, uniform random actions, batched on {device} ({args.threads} torch thread(s))")
    for col in ("task", "rware", "Floor", "Floor/rware", *(f"batched N={n:,}" for n in SIZES_N), "best/rware",
                f"env rware-obs N={ENV_N:,}", "/rware", f"env features N={ENV_N:,}", "/rware "):
        table.add_column(col, justify="left" if col == "task" else "right")
    runs = len(TASKS) * (2 + len(SIZES_N) + 2 + int(args.mappo))
    mappo_rows = []
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("measuring", total=runs)
        for task in TASKS:
            r = bench_rware(task, rsteps, args.seed)
            bar.advance(job)
            f = bench_floor(task, rsteps, args.seed)
            bar.advance(job)
            b = []
            for n in SIZES_N:
                b.append(bench_batched(task, n, _iters(n, args.quick, device), device, args.seed))
                bar.advance(job)
            e_r = bench_env(task, ENV_N, _iters(ENV_N, args.quick, device), device, args.seed, "rware")
            bar.advance(job)
            e_f = bench_env(task, ENV_N, max(10, _iters(ENV_N, args.quick, device) // 2), device, args.seed, "features")
            bar.advance(job)
            table.add_row(task, f"{r:,.0f}", f"{f:,.0f}", f"{f / r:.1f}x", *(f"{x:,.0f}" for x in b),
                          f"{max(b) / r:,.0f}x", f"{e_r:,.0f}", f"{e_r / r:,.0f}x", f"{e_f:,.0f}", f"{e_f / r:,.0f}x")
            if args.mappo:
                mappo_rows.append((task, *bench_mappo(task, device, args.quick)))
                bar.advance(job)
    console.print(table)
    if mappo_rows:
        mt = Table(title=f"MAPPO end to end (rollout + update), env-steps/s, feature observations; {MAPPO_BATCHED}")
        for col in ("task", f"batched N={ENV_N:,} on {device}", "simulated floors x8 (today)", "ratio"):
            mt.add_column(col, justify="left" if col == "task" else "right")
        for task, b, p in mappo_rows:
            mt.add_row(task, f"{b:,.0f}", f"{p:,.0f}", f"{b / p:.1f}x")
        console.print(mt)
    console.print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
                  f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)"
                  + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
