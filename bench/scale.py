"""Scale: a 500-robot floor for one simulated hour in the event tempo.

Prints wall time, peak memory (max RSS), events, robot decisions per second
of wall time, deliveries and message figures.

Usage: python bench/scale.py [--scenario scenarios/warehouse-xl-500-event.toml] [--until 3600] [--seed 1]
"""
from __future__ import annotations

import argparse
import platform
import resource
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from desim.app.runner import run
from desim.app.scenario import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="scenarios/warehouse-xl-500-event.toml")
    ap.add_argument("--until", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sc = load(args.scenario)
    console = Console()
    t0 = time.perf_counter()
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("sim", total=args.until)
        result = run(sc, args.seed, args.until, file=args.scenario, progress=lambda now: bar.update(task, completed=now))
    wall = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    m = result.model
    t = Table(title=f"{sc.name}: {s['robots']} robots, {args.until:.0f} simulated s, event tempo", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    rows = [
        ("wall time", f"{wall:,.1f} s"),
        ("peak memory (max RSS)", f"{rss_mib:,.0f} MiB"),
        ("simulated / wall", f"{args.until / wall:,.1f}x real time"),
        ("kernel events", f"{s['events']:,}"),
        ("robot decisions", f"{m.decisions:,} ({m.decisions / wall:,.0f}/s wall)"),
        ("messages sent / delivered", f"{s['messages']['sent']:,} / {s['messages']['delivered']:,}"),
        ("deliveries", f"{s['deliveries']:,} ({s['throughput_per_hour']:,.0f}/h)"),
        ("orders created / completed / pending", f"{s['orders']['created']:,} / {s['orders']['completed']:,} / {s['orders']['pending']:,}"),
        ("collisions / deadlocks", f"{s['collisions']:,} / {s['deadlocks']:,}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    console.print(f"python {platform.python_version()}, {platform.machine()}, {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
