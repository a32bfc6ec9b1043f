"""Sweep throughput: runs per minute with 1 and 2 local workers, and Ray's per-run overhead against the pool.

    python bench/sweep_scaling.py [--runs 16] [--until 600] [--repeats 2]

Every configuration runs the same sweep (warehouse-tiny-event, robots 1..4, replications to make
``--runs`` runs) into a fresh store, coordinator and store writes included. Printed: runs per
minute, the speed-up of 2 workers over 1 (goal: at least 1.7x on a 2-core machine), and the
start-up and per-run overhead of each backend, from near-empty runs (``until`` = 1 s: the
simulation costs nothing, what is left is dispatch, transfer and the store write): two such sweeps
of 4 and 20 runs give the marginal cost of a run (the slope) and the start-up (the intercept).
Figures and the command go to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(folder: Path, runs: int, until: float) -> Path:
    reps = max(1, runs // 4)
    f = folder / f"bench-{runs}-{until:g}.toml"
    f.write_text(f'name = "bench"\nbase = "{ROOT / "scenarios" / "warehouse-tiny-event.toml"}"\nuntil = {until}\n'
                 f'replications = {reps}\nseed = 1\n[grid]\n"warehouse.robots" = [1, 2, 3, 4]\n')
    return f


def timed(backend_name: str, workers: int, f: Path, folder: Path) -> tuple[float, int]:
    from desim.app.sweep import execute, load_sweep
    from desim.app.sweep_backends import backend
    from desim.store import Store

    sw = load_sweep(f)
    store = Store(folder / f"{backend_name}-{workers}-{time.perf_counter_ns()}.duckdb")
    t0 = time.perf_counter()
    be = backend(backend_name, workers=workers)
    try:
        _, rows = execute(sw, store, be)
    finally:
        if hasattr(be, "close"):
            be.close()
    return time.perf_counter() - t0, len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--until", type=float, default=600.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args()
    try:
        from rich.progress import track
    except ImportError:  # pragma: no cover
        def track(x, description=""):
            return x
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        work = sweep_file(folder, a.runs, a.until)
        small, large = sweep_file(folder, 4, 1.0), sweep_file(folder, 20, 1.0)  # near-empty runs: 4 and 20 of them
        configs = [("local", 1), ("local", 2)] + ([] if a.no_ray else [("ray", 2)])
        best: dict[tuple, float] = {}
        overhead: dict[tuple, float] = {}
        startup: dict[tuple, float] = {}
        jobs = [(c, r) for r in range(a.repeats) for c in configs]  # interleaved: the machine's noise hits all alike
        for (name, w), _ in track(jobs, description="sweeps"):
            t, n = timed(name, w, work, folder)
            best[(name, w)] = min(best.get((name, w), float("inf")), t)
            t4, _ = timed(name, w, small, folder)
            t20, _ = timed(name, w, large, folder)
            per_run = (t20 - t4) / 16  # the marginal cost of one more (empty) run
            overhead[(name, w)] = min(overhead.get((name, w), float("inf")), per_run)
            startup[(name, w)] = min(startup.get((name, w), float("inf")), t4 - 4 * per_run)
        print(f"\nsweep of {n} runs of warehouse-tiny-event ({a.until:g} simulated s each), best of {a.repeats}:")
        print(f"{'backend':>8} {'workers':>7} {'wall s':>8} {'runs/min':>9} {'start-up s':>11} {'per-run overhead s':>19}")
        for (name, w) in configs:
            print(f"{name:>8} {w:>7} {best[(name, w)]:>8.2f} {60 * n / best[(name, w)]:>9.1f} "
                  f"{startup[(name, w)]:>11.2f} {overhead[(name, w)]:>19.3f}")
        print(f"speed-up, 2 local workers over 1: {best[('local', 1)] / best[('local', 2)]:.2f}x (goal >= 1.7x)")
        if not a.no_ray:
            print(f"ray (2 workers) over local (2 workers): {best[('ray', 2)] / best[('local', 2)]:.2f}x the wall time; "
                  f"start-up {startup[('ray', 2)] - startup[('local', 2)]:+.2f} s and per-run overhead "
                  f"{overhead[('ray', 2)] - overhead[('local', 2)]:+.3f} s against the pool")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
