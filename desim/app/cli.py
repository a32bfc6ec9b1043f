"""The ``desim`` command line."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from desim.app.recording import record_run
from desim.app.runner import prepare as plan_of, run as run_scenario
from desim.app.scenario import ScenarioError, load
from desim.policies.spec import check_brain, learner_names
from desim.store import DEFAULT_STORE, Store

try:  # typer >= 0.20 vendors click; older ones use the real one
    from typer._click.exceptions import UsageError as _VendoredUsageError

    _UsageErrors: tuple = (_VendoredUsageError,)
except ImportError:  # pragma: no cover
    _UsageErrors = ()
try:
    import click as _click

    _UsageErrors += (_click.exceptions.UsageError,)
except ImportError:  # pragma: no cover
    pass

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="desim: a discrete-event test bench for multi-agent RL under production conditions.")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, non-zero exit: the only way bad input leaves desim."""
    err_console.print(f"desim: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _LazyProgress:
    """A progress bar that appears only if the run lasts more than a couple of seconds."""

    def __init__(self, until: float, enabled: bool):
        self.until, self.enabled = until, enabled
        self.t0 = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, now: float) -> None:
        if not self.enabled:
            return
        if self.bar is None and time.perf_counter() - self.t0 > 2.0:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("sim", total=self.until)
        if self.bar is not None:
            self.bar.update(self.task, completed=now)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_summary(s: dict) -> None:
    t = Table(title=f"run {s['run_id']} — {s['scenario']} (seed {s['seed']})", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("simulated time", f"{s['sim_time']:.1f} s")
    t.add_row("wall time", f"{s['wall_s']:.2f} s")
    t.add_row("events", f"{s['events']:,}")
    m = s["messages"]
    t.add_row("messages sent", f"{m['sent']:,}")
    t.add_row("delivered", f"{m['delivered']:,}")
    for reason, n in m["dropped"].items():
        t.add_row(f"dropped: {reason}", f"{n:,}")
    t.add_row("in flight at end", f"{m['in_flight']:,}")
    t.add_row("conservation", "ok" if s["conservation_ok"] else "VIOLATED")
    for key in ("deliveries", "throughput_per_hour", "collisions", "deadlocks"):
        if key in s:
            v = s[key]
            t.add_row(key.replace("_", " "), f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")
    if "order_latency" in s:
        ol = s["order_latency"]
        t.add_row("order latency p50/p95/p99", " / ".join(f"{ol[k]:.1f}" if ol[k] is not None else "-" for k in ("p50", "p95", "p99")) + " s")
    if "orders" in s:
        o = s["orders"]
        t.add_row("orders created/completed/pending", f"{o['created']} / {o['completed']} / {o['pending']}")
        for reason, n in o["failed"].items():
            t.add_row(f"orders failed: {reason}", f"{n:,}")
    t.add_row("trace hash", s["trace_hash"][:16] + "…")
    console.print(t)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario TOML file")) -> None:
    """Check a scenario file; exit 0 if it can run, 2 with one line naming the problem."""
    try:
        sc = load(scenario)
    except ScenarioError as e:
        fail(str(e))
    console.print(f"{scenario}: ok ({sc.name})", markup=False)


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="scenario TOML file"),
    seed: Optional[int] = typer.Option(None, min=0, help="random seed (default: the scenario's)"),
    until: Optional[float] = typer.Option(None, min=0.001, help="simulated seconds (default: the scenario's)"),
    store: Optional[Path] = typer.Option(None, help="results store (DuckDB file); default runs/desim.duckdb"),
    brain: Optional[str] = typer.Option(None, help="agent brain for models that have one: random, greedy, epsilon_greedy, checkpoint:PATH"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record the run in the store"),
) -> None:
    """Run a scenario and print its summary."""
    try:
        sc = load(scenario)
    except ScenarioError as e:
        fail(str(e))
    if brain is not None:
        if plan_of(sc).brain_spec is None:
            fail(f"--brain: scenario {scenario} has no agents with brains (no model section with a brain)")
        try:
            check_brain(brain)  # the spec only: the brain itself is built once, by the run
        except ValueError as e:
            fail(f"--brain: {e}")
    progress = _LazyProgress(until or sc.until, enabled=not json_out and sys.stderr.isatty())
    try:
        if not no_store:
            summary = record_run(sc, scenario, store, seed=seed, until=until, progress=progress, brain=brain)
        else:
            summary = run_scenario(sc, seed, until, file=str(scenario), progress=progress, brain=brain).summary
    except ScenarioError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    finally:
        progress.close()
    if json_out:
        sys.stdout.write(json.dumps(summary, default=float) + "\n")
    else:
        _print_summary(summary)


@app.command()
def dash(
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    port: int = typer.Option(8501, min=1, max=65535, help="port to serve the dashboard on"),
    headless: bool = typer.Option(True, help="do not open a browser window"),
) -> None:
    """Start the Streamlit dashboard on a results store."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("desim.dashboards.app")
    app_path = Path(spec.origin) if spec is not None and spec.origin else Path("desim/dashboards/app.py")
    if not app_path.exists():
        fail(f"dashboard app not found at {app_path}")
    env = dict(os.environ, DESIM_STORE=str(Path(store or DEFAULT_STORE).resolve()))
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false"]
    console.print(f"desim dashboard on http://localhost:{port} (store {env['DESIM_STORE']}); Ctrl-C to stop", markup=False)
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # become Streamlit: signals reach the server itself


@app.command()
def train(
    scenario: Path = typer.Argument(..., help="scenario TOML file with a warehouse section (and optionally a train section)"),
    algo: str = typer.Option(..., help="learner: ippo, mappo, vdn, qmix or coma"),
    steps: int = typer.Option(..., help="environment steps to train for (summed over env copies)"),
    device: str = typer.Option("auto", help="torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:N"),
    seed: int = typer.Option(0, help="training seed (held-out evaluation seeds are disjoint from it)"),
    out: Optional[Path] = typer.Option(None, help="checkpoint folder (default runs/checkpoints/<run_id>)"),
    store: Optional[Path] = typer.Option(None, help="results store (DuckDB file); default runs/desim.duckdb"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train a learner on a scenario: curves to the store, versioned checkpoints, rollback."""
    from desim.policies.train import train as run_training  # lazy: torch and the learners cost ~1.5 s

    if algo not in learner_names():
        fail(f"--algo: unknown algo {algo!r} (expected one of {', '.join(learner_names())})")
    if steps <= 0:
        fail(f"--steps: must be positive, got {steps}")
    if seed < 0:
        fail(f"--seed: must be non-negative, got {seed}")
    try:
        sc = load(scenario)
        result = run_training(sc, algo, steps, scenario_text=Path(scenario).read_text(), file=str(scenario), device=device, seed=seed, out_dir=out, store_path=store,
                              progress=not json_out)
    except (ScenarioError, ValueError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if json_out:
        sys.stdout.write(json.dumps(result, default=float) + "\n")
        return
    t = Table(title=f"train {result['run_id']} — {algo} on {result['scenario']} (seed {seed}, {result['device']})",
              show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("env steps", f"{result['steps']:,}")
    t.add_row("wall time", f"{result['wall_s']:.1f} s (rollout {result['rollout_s']:.1f} s, update {result['update_s']:.1f} s)")
    t.add_row("env steps/s", f"{result['env_steps_per_s']:,.0f}")
    t.add_row("final training return", "-" if result["final_return"] is None else f"{result['final_return']:.2f}")
    t.add_row("incumbent", f"v{result['incumbent_version']} (held-out return {result['incumbent_return']:.2f})")
    rolled = sum(p["decision"] == "rollback" for p in result["promotions"])
    t.add_row("candidates", f"{len(result['promotions'])} ({rolled} rolled back)")
    t.add_row("checkpoint", result["checkpoint"])
    console.print(t)


runs_app = typer.Typer(no_args_is_help=True, help="List, show and export recorded runs.")
app.add_typer(runs_app, name="runs")


def _store(path: Optional[Path]):
    p = path or DEFAULT_STORE
    if not Path(p).exists():
        fail(f"no store at {p} (run `desim run SCENARIO` first, or pass --store)")
    return Store(p)


@runs_app.command("list")
def runs_list(
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    kind: Optional[str] = typer.Option(None, help="run, train or sweep"),
    limit: int = typer.Option(20, min=1, help="newest N runs"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The newest runs in the store."""
    rows = _store(store).list_runs(kind=kind, limit=limit)
    if json_out:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    if not rows:
        console.print("no runs yet: run `desim run SCENARIO`")
        return
    t = Table(title=f"runs ({len(rows)} newest)")
    for col in ("run_id", "kind", "scenario", "seed", "brain", "status", "started", "headline"):
        t.add_column(col)
    for r in rows:
        s = r.get("summary") or {}
        headline = (f"{s['deliveries']} deliveries" if "deliveries" in s else
                    f"{s['messages']['delivered']}/{s['messages']['sent']} msgs" if "messages" in s else "")
        t.add_row(r["run_id"], r["kind"], str(r.get("scenario") or ""), str(r.get("seed")), str(r.get("brain") or ""),
                  r["status"], str(r.get("started_at"))[:19], headline)
    console.print(t)


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="run id, or a unique prefix or suffix of one"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """One run: its status, configuration, headline figures and tables."""
    try:
        r = _store(store).get_run(run_id)
    except KeyError as e:
        fail(str(e.args[0] if e.args else e))
    if json_out:
        sys.stdout.write(json.dumps(r, default=str) + "\n")
        return
    t = Table(title=f"run {r['run_id']}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for key in ("kind", "scenario", "seed", "brain", "status", "code_version", "started_at", "finished_at", "reason"):
        if r.get(key) is not None:
            t.add_row(key, str(r[key]))
    for key, value in (r.get("summary") or {}).items():
        if key not in ("faults", "run_id"):
            t.add_row(key, json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    for name, info in (r.get("tables") or {}).items():
        t.add_row(f"table {name}", json.dumps(info, default=str))
    console.print(t)


@runs_app.command("export")
def runs_export(
    run_id: str = typer.Argument(..., help="run id (or unique prefix)"),
    out: Path = typer.Option(Path("export"), help="output folder for the Parquet files"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
) -> None:
    """Export a run and its tables as Parquet files."""
    st = _store(store)
    try:
        paths = st.export_parquet(st.resolve(run_id), out)
    except KeyError as e:
        fail(str(e.args[0] if e.args else e))
    for p in paths:
        console.print(str(p), markup=False)


def main() -> None:
    """Console entry point: usage errors become one line and exit 2."""
    try:
        rv = app(standalone_mode=False)
    except _UsageErrors as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `desim`: the help was the answer
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        where = f" ({ctx.command_path})" if ctx is not None else ""
        err_console.print(f"desim: error{where}: {e.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
