"""What difference rewards cost on batched floors: env-steps/s of ``BatchedWarehouseEnv.step`` by ``credit``.

One env step = one step of one floor (all its robots act, every robot's
observation built). ``credit = "difference"`` adds one step of a scratch
batch of ``floors * robots`` floors per step (the counterfactuals, no
observations); ``"global"`` only sums. Uniform random joint actions, drawn
before the clock starts; the first 50 steps are a warm-up.

Usage: python bench/credit_cost.py [--task tiny-2ag] [--floors 256] [--steps 2000] [--obs rware|features]
                                   [--device cpu] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from desim.models.warehouse.layout import rware_task
from desim.models.warehouse.vector_env import CREDITS, BatchedWarehouseEnv


def bench(task: str, floors: int, steps: int, obs: str, credit: str, device: str) -> float:
    layout, kw = rware_task(task)
    env = BatchedWarehouseEnv(layout=layout, robots=kw["n_agents"], request_queue=kw["request_queue_size"],
                              max_steps=500, n_envs=floors, obs=obs, device=device, credit=credit, seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    acts = torch.randint(0, 5, (steps + 50, floors, kw["n_agents"]), generator=gen).to(device)
    for t in range(50):
        env.step(acts[t])
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(50, steps + 50):
        env.step(acts[t])
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * floors / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="tiny-2ag")
    ap.add_argument("--floors", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--obs", default="rware", choices=("rware", "features"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = None
    for credit in CREDITS:
        sps = bench(args.task, args.floors, args.steps, args.obs, credit, args.device)
        base = base or sps
        print(f"{args.task} N={args.floors} obs={args.obs} credit={credit:<10} {sps:>12,.0f} env-steps/s  "
              f"({sps / base:.2f}x individual)")


if __name__ == "__main__":
    main()
