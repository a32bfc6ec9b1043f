"""The traffic brain beside greedy: same scenario, robot count, tempo and seeds, in one run.

    python bench/traffic.py                                             # small floor, event tempo, 900 s
    python bench/traffic.py scenarios/warehouse-xl-500-event.toml --robots 500 --until 3600 --seeds 1 --rate 6000

Prints, per robot count and brain: deliveries per hour (mean over seeds), collisions per
delivery, deadlocks, the longest deadlock held (s), the longest a robot with work stood in one
cell (s, turning in place included), and wall seconds per simulated hour
(the decision cost), then traffic / greedy ratios.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from desim.app.runner import run
from desim.scenario import parse

ROOT = Path(__file__).resolve().parents[1]

BRAINS = ("greedy", "traffic")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "warehouse-small-event.toml"))
    ap.add_argument("--robots", default="4,16,32,64", help="comma-separated robot counts")
    ap.add_argument("--until", type=float, default=900.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=3000.0, help="orders per hour (when the scenario has an order source)")
    a = ap.parse_args()
    path = Path(a.scenario)
    base = parse(path.read_text(), str(path), path.parent)
    console = Console()
    table = Table(title=f"{path.name}, {a.until:g} simulated s, seeds 1..{a.seeds}")
    for col in ("robots", "brain", "deliveries/h", "collisions/delivery", "deadlocks", "longest held (s)", "longest stand (s)",
                "wall s per sim h"):
        table.add_column(col, justify="right")
    ratios = []
    jobs = [(n, b, s) for n in (int(x) for x in a.robots.split(",")) for b in BRAINS for s in range(1, a.seeds + 1)]
    res: dict = {}
    for n, b, seed in track(jobs, description="runs", console=console):
        upd = {"robots": n, "brain": b}
        if base.warehouse.orders is not None:
            upd["orders"] = base.warehouse.orders.model_copy(update={"rate_per_hour": a.rate})
        sc = base.model_copy(update={"warehouse": base.warehouse.model_copy(update=upd)})
        t0 = time.perf_counter()
        s = run(sc, seed, a.until).summary
        res.setdefault((n, b), []).append((s, time.perf_counter() - t0))
    for n in sorted({k[0] for k in res}):
        row = {}
        for b in BRAINS:
            rs = res[(n, b)]
            dph = sum(s["throughput_per_hour"] for s, _ in rs) / len(rs)
            deliv = sum(s["deliveries"] for s, _ in rs)
            coll = sum(s["collisions"] for s, _ in rs)
            dead = sum(s["deadlocks"] for s, _ in rs) / len(rs)
            held = max(s["longest_stuck_s"] for s, _ in rs)
            stand = max(s["longest_still_s"] for s, _ in rs)
            wall = sum(w for _, w in rs) / len(rs) * 3600.0 / a.until
            row[b] = (dph, coll / max(deliv, 1), wall)
            table.add_row(str(n), b, f"{dph:,.0f}", f"{coll / max(deliv, 1):,.2f}", f"{dead:,.1f}", f"{held:,.0f}", f"{stand:,.0f}",
                          f"{wall:,.1f}")
        g, t = row["greedy"], row["traffic"]
        ratios.append((n, t[0] / g[0] if g[0] else float("inf"), t[2] / g[2] if g[2] else float("inf")))
    console.print(table)
    for n, dr, wr in ratios:
        console.print(f"{n} robots: traffic / greedy deliveries {dr:.2f}x, wall time {wr:.2f}x")


if __name__ == "__main__":
    main()
