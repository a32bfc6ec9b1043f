"""CLI start-up: wall time of `desim --help`, `desim validate` and a small `desim run`, now and before.

Each command runs as a fresh process, `repeats` times; the table shows the median (and the fastest).
"before" is another commit of this repository (default: the last one before the lazy imports),
checked out into a temporary git worktree and run with the same interpreter and venv, its tree
first on sys.path, so both sides import the same third-party packages. Peers in the same run:
the interpreter alone, and the interpreter importing typer + rich (the floor a typer CLI pays).

Usage: python bench/startup.py [--before REF] [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "cbcfc98"  # main before issue 25's start-up work


def timed(argv: list[str], cwd: Path, env: dict, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} in {cwd}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return statistics.median(times), min(times)


def cases(tree: Path) -> list[tuple[str, list[str], Path, dict]]:
    desim = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); from desim.app.cli import main; main()"]
    tut = tree / "docs" / "tutorial"
    plugin = {"DESIM_PLUGINS": "clientserver"}
    return [
        ("desim --help", desim + ["--help"], tree, {}),
        ("desim validate clientserver.toml (tutorial)", desim + ["validate", "clientserver.toml"], tut, plugin),
        ("desim run clientserver.toml --no-store", desim + ["run", "clientserver.toml", "--no-store"], tut, plugin),
        ("desim validate warehouse-small.toml", desim + ["validate", "scenarios/warehouse-small.toml"], tree, {}),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE, help="the commit to compare against")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.before], check=True)
        try:
            floor = {
                "python -c pass": timed([sys.executable, "-c", "pass"], ROOT, env, args.repeats),
                "python -c 'import typer, rich.console'": timed([sys.executable, "-c", "import typer, rich.console, rich.table"],
                                                                ROOT, env, args.repeats),
            }
            rows = []
            for (label, argv_now, cwd_now, e_now), (_, argv_old, cwd_old, e_old) in zip(cases(ROOT), cases(old)):
                timed(argv_old, cwd_old, env | e_old, 1)  # warm: byte-compile the worktree once
                b, n = [], []
                for _ in range(args.repeats):  # alternating, so a load on the machine falls on both sides
                    b.append(timed(argv_old, cwd_old, env | e_old, 1)[0])
                    n.append(timed(argv_now, cwd_now, env | e_now, 1)[0])
                rows.append((label, (statistics.median(b), min(b)), (statistics.median(n), min(n))))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    t = Table(title=f"CLI start-up, median of {args.repeats} fresh processes (fastest in brackets); before = {args.before}")
    for c in ("command", "before s", "now s", "now / before"):
        t.add_column(c, justify="left" if c == "command" else "right")
    for label, (mb, fb), (mn, fn) in rows:
        t.add_row(label, f"{mb:.2f} ({fb:.2f})", f"{mn:.2f} ({fn:.2f})", f"{mn / mb:.2f}x")
    for label, (m, f) in floor.items():
        t.add_row(label + " (floor)", "", f"{m:.2f} ({f:.2f})", "")
    console.print(t)


if __name__ == "__main__":
    main()
