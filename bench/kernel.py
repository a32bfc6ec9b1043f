"""Kernel benchmark: bare SimPy vs desim one-hop messages per second.

Both sides model the same thing: a producer emits N messages with Poisson
gaps; each message waits a random propagation delay and lands in the
receiver's queue, which a consumer drains.

- bare SimPy: one process per message (timeout, then Store.put); consumer Store.get.
- desim: Agent.send over a two-node Network with the same delay distribution
  (block-drawn, per-link RNG stream), loss check, routing, trace recording and
  the conservation ledger.

Usage: python bench/kernel.py [--messages N] [--repeats R]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import simpy
from rich.console import Console
from rich.table import Table

from desim import Agent, Simulation
from desim.network import DelayDist, LinkSpec, Network
from desim.network import topology as T

DELAY = DelayDist("lognormal", mean=0.005, jitter=0.002)


def bare_simpy(n: int, seed: int = 0) -> float:
    env = simpy.Environment()
    store = simpy.Store(env)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(0.001, n).tolist()
    delays = DELAY.sample(rng, n).tolist()
    got = [0]

    def carry(msg, d):
        yield env.timeout(d)
        yield store.put(msg)

    def producer():
        for i in range(n):
            yield env.timeout(gaps[i])
            env.process(carry(i, delays[i]))

    def consumer():
        while True:
            yield store.get()
            got[0] += 1

    env.process(producer())
    env.process(consumer())
    t0 = time.perf_counter()
    env.run()
    dt = time.perf_counter() - t0
    assert got[0] == n
    return n / dt


def desim_one_hop(n: int, seed: int = 0) -> float:
    sim = Simulation(seed, keep_trace=False)
    net = Network(sim, T.line(2), LinkSpec(delay=DELAY))
    gaps = np.random.default_rng(seed).exponential(0.001, n).tolist()
    got = [0]

    class Producer(Agent):
        def behaviour(self):
            env = self.sim.env
            for i in range(n):
                yield env.timeout(gaps[i])
                self.send("n1", "m")

    class Consumer(Agent):
        def behaviour(self):
            while True:
                yield self.inbox.get()
                got[0] += 1

    Producer(sim, "n0")
    Consumer(sim, "n1")
    t0 = time.perf_counter()
    sim.env.run()
    dt = time.perf_counter() - t0
    assert got[0] == n and net.conservation()["ok"]
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bare, ours = [], []
    for r in range(args.repeats):  # interleaved so machine noise hits both alike
        bare.append(bare_simpy(args.messages, r))
        ours.append(desim_one_hop(args.messages, r))
    b, d = max(bare), max(ours)
    table = Table(title=f"one-hop messages/s ({args.messages:,} messages, best of {args.repeats})")
    table.add_column("what")
    table.add_column("msgs/s", justify="right")
    table.add_row("bare SimPy (timeout + Store put/get)", f"{b:,.0f}")
    table.add_row("desim one hop (Network, lognormal delay)", f"{d:,.0f}")
    table.add_row("cost ratio bare/desim (goal <= 2.0)", f"{b / d:.2f}")
    Console().print(table)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, simpy {simpy.__version__}")


if __name__ == "__main__":
    main()
