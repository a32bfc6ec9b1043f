"""Credit in the order pipeline: each agent's true contribution beside its assigned credit, over seeds.

For seeds 1..N, :func:`desim.app.pipeline_study.pipeline_credit` runs the scenario as written and once
more per agent with that agent's decisions on its default (4 runs a seed); the figures are summed over
the seeds (per agent: the true contribution, global and local assigned credit, and the orders whose
outcome the agent's replacement flipped, +1 and -1) and the traceability of each scheme is pooled over
every (seed, order, agent) point (``undefined``: no spread on a side). The figures go into
``docs/credit-pipeline.md``.

Usage: python bench/pipeline_credit.py [--scenario scenarios/warehouse-pipeline.toml] [--seeds 5] [--until S]
"""
from __future__ import annotations

import argparse
import math
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from desim.app.pipeline_study import pipeline_credit
from desim.app.scenario import load
from desim.models.warehouse.contribution import traceability


def fmt(r: float) -> str:
    return "undefined" if math.isnan(r) else f"{r:+.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="scenarios/warehouse-pipeline.toml")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 1..N")
    ap.add_argument("--until", type=float, default=None, help="simulated seconds (default: the scenario's)")
    args = ap.parse_args()
    sc = load(args.scenario)
    results = []
    t0 = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task(f"{sc.name}: {args.seeds} seeds x 4 runs", total=args.seeds)
        for seed in range(1, args.seeds + 1):
            results.append(pipeline_credit(sc, seed, until=args.until, file=args.scenario))
            bar.advance(task)
    wall = time.perf_counter() - t0
    con = Console(width=120)
    agents = results[0].agents
    until = results[0].until
    created = sum(r.created for r in results)
    con.print(f"{args.scenario}, seeds 1..{args.seeds}, until {until:g} s: {created} orders, "
              f"{sum(r.completed for r in results)} completed, {sum(r.failed for r in results)} failed, "
              f"{sum(r.pending for r in results)} pending; {wall:.1f} s wall")
    t = Table("agent", "default", "true", "+1 flips", "-1 flips", "global", "local", "local on +1", "completed without")
    defaults = {"orders": "always proceed", "procurement": "never restock", "floor": "robots NOOP"}
    for a in agents:
        pts = [p for r in results for p in r.orders if p.agent == a]
        t.add_row(a, defaults.get(a, ""), f"{sum(p.true for p in pts):g}", str(sum(p.true > 0 for p in pts)),
                  str(sum(p.true < 0 for p in pts)), f"{sum(p.assigned_global for p in pts):g}",
                  f"{sum(p.assigned_local for p in pts):g}", str(sum(p.assigned_local > 0 for p in pts if p.true > 0)),
                  str(sum(r.without[a]["completed"] for r in results)))
    con.print(t)
    pts = [p for r in results for p in r.orders]
    truth = [p.true for p in pts]
    t2 = Table("scheme", "traceability (pooled)", "per seed")
    for s in ("global", "local"):
        pooled = traceability([getattr(p, f"assigned_{s}") for p in pts], truth)
        t2.add_row(s, fmt(pooled), " ".join(fmt(r.traceability[s]) for r in results))
    con.print(t2)


if __name__ == "__main__":
    main()
