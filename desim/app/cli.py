"""The ``desim`` command line."""
from __future__ import annotations

import enum
import importlib.util
import json
import math
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from desim import registry


def _lazy(name: str) -> Any:
    """Module ``name``, executed on its first attribute access (``importlib.util.LazyLoader``), so ``desim
    --help`` and the light commands skip the runner, the store (DuckDB, Arrow) and the suites they don't use."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# the wiring layer and the store, loaded by the commands that use them (desim.app.* and desim.store: below the CLI)
E = _lazy("desim.app.eval")
recording = _lazy("desim.app.recording")
runner = _lazy("desim.app.runner")
scenarios = _lazy("desim.app.scenario")
brains = _lazy("desim.policies")  # its spec module: brain specs and learner names
rules = _lazy("desim.app.rules")
stores = _lazy("desim.store")
KINDS = ("run", "train", "sweep", "eval", "study")  # desim.store.KINDS (tests/test_cli_inputs.py checks they agree)

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
# User values (scenario names, brain specs, paths, run ids) are printed as they are: no rich markup,
# no emoji codes, no highlighting, on every console this CLI prints through.
# Lines are never folded (soft_wrap): a path or an id stays whole for the next command to read.
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)

Kind = enum.Enum("Kind", {k: k for k in KINDS}, type=str)  # run, train, sweep: an enumerated flag is a Choice
ExportFormat = enum.Enum("ExportFormat", {"parquet": "parquet", "csv": "csv"}, type=str)
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, non-zero exit: the only way bad input leaves desim."""
    err_console.print(f"desim: error: {' '.join(str(message).split())}", soft_wrap=True)
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
    """The runner's rows, then the model's (its spec's ``printout``, or every model figure: desim.app.rules)."""
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
    if s.get("model"):
        spec = registry.models.get(s["model"]) if s["model"] in registry.models else None
        rows = rules.printout_of(spec, s)
        if rows:
            t.add_section()
            for label, text in rows:
                t.add_row(label, text)
        t.add_section()
    t.add_row("trace hash", s["trace_hash"][:16] + "…")
    console.print(t)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario TOML file")) -> None:
    """Check a scenario file; exit 0 if it can run, 2 with one line naming the problem."""
    try:
        sc = scenarios.load(scenario)
    except scenarios.ScenarioError as e:
        fail(str(e))
    console.print(f"{scenario}: ok ({sc.name})")


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
        sc = scenarios.load(scenario)
    except scenarios.ScenarioError as e:
        fail(str(e))
    if brain is not None:
        if runner.prepare(sc).brain_spec is None:
            fail(f"--brain: scenario {scenario} has no agents with brains (no model section with a brain)")
        try:
            brains.check_brain(brain)  # the spec only: the brain itself is built once, by the run
        except ValueError as e:
            fail(f"--brain: {e}")
    if not no_store:
        _store(store, must_exist=False)  # a path that is not a store: one line now, before anything runs or is written
    progress = _LazyProgress(until or sc.until, enabled=not json_out and sys.stderr.isatty())
    try:
        if not no_store:
            summary = recording.record_run(sc, scenario, store, seed=seed, until=until, progress=progress, brain=brain)
        else:
            summary = runner.run(sc, seed, until, file=str(scenario), progress=progress, brain=brain).summary
    except (scenarios.ScenarioError, stores.StoreError) as e:
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
    host: str = typer.Option("127.0.0.1", help="address to listen on; the default serves this machine only. "
                             "0.0.0.0 opens it to the network: anyone who reaches it can read the store and start simulations"),
    headless: bool = typer.Option(True, help="do not open a browser window"),
) -> None:
    """Start the Streamlit dashboard on a results store (on this machine only, unless --host says otherwise)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("desim.dashboards.app")
    app_path = Path(spec.origin) if spec is not None and spec.origin else Path("desim/dashboards/app.py")
    if not app_path.exists():
        fail(f"dashboard app not found at {app_path}")
    if store is not None and Path(store).exists():
        _store(store)  # a file that is not a store: say so here, not on every page
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError) as e:
        fail(f"--host: cannot listen on {host!r} ({e})")
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # Streamlit would fail after our banner
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
                fail(f"--port: port {port} is in use on {host} (is a dashboard already running? pass another --port)")
            fail(f"--host: cannot listen on {host}:{port} ({e.strerror or e})")
    local = host in ("127.0.0.1", "localhost", "::1")
    if not local:  # as Jupyter does: say it, once, before serving
        err_console.print(f"desim: warning: the dashboard listens on {host}:{port} without authentication: anyone who "
                          "can reach it can read the store and start simulations on this machine")
    env = dict(os.environ, DESIM_STORE=str(Path(store or stores.DEFAULT_STORE).resolve()))
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.address", host, "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]  # minimal: no Deploy button
    shown = "localhost" if local else host
    console.print(f"desim dashboard on http://{shown}:{port} (store {env['DESIM_STORE']}); Ctrl-C to stop")
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # become Streamlit: signals reach the server itself


Observations = enum.Enum("Observations", {"features": "features", "rware": "rware"}, type=str)


def _learning():
    """The learning stack (training and studies: desim.app.study, which holds ``train`` too), imported on use."""
    from desim.app import study  # lazy: torch and the learners cost ~1.5 s that the other commands skip

    return study


@app.command()
def train(
    scenario: Path = typer.Argument(..., help="scenario TOML file with a warehouse section (and optionally a train section)"),
    algo: str = typer.Option(..., help="learner: ippo, mappo, vdn, qmix or coma"),
    steps: int = typer.Option(..., help="environment steps to train for (summed over env copies)"),
    device: str = typer.Option("auto", help="torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:N"),
    seed: int = typer.Option(0, help="training seed (held-out evaluation seeds are disjoint from it)"),
    out: Optional[Path] = typer.Option(None, help="checkpoint folder (default runs/checkpoints/<run_id>)"),
    store: Optional[Path] = typer.Option(None, help="results store (DuckDB file); default runs/desim.duckdb"),
    envs: Optional[int] = typer.Option(None, min=1, max=65_536, help="train on this many batched floors (torch tensors on --device; mappo, ippo); default: the scenario's [train]"),
    obs: Optional[Observations] = typer.Option(None, help="observations: features (what brains see) or rware (rware's own vector; batched floors)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train a learner on a scenario: curves to the store, versioned checkpoints, rollback."""
    if algo not in brains.learner_names():
        fail(f"--algo: unknown algo {algo!r} (expected one of {', '.join(brains.learner_names())})")
    if not DEVICE.match(device):
        fail(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if steps <= 0:
        fail(f"--steps: must be positive, got {steps}")
    if seed < 0:
        fail(f"--seed: must be non-negative, got {seed}")
    try:
        sc = scenarios.load(scenario)
        _store(store, must_exist=False)  # before training: a bad store path costs nothing (a new one is not created here)
        train_cfg = ({"floors": "batched", "n_envs": envs} if envs is not None else {}) | ({"observations": obs.value} if obs else {})
        result = _learning().train(sc, algo, steps, scenario_text=Path(scenario).read_text(), file=str(scenario), device=device, seed=seed, out_dir=out, store_path=store,
                              progress=not json_out, train_cfg=train_cfg)
    except (scenarios.ScenarioError, stores.StoreError, ValueError) as e:
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


Backend = enum.Enum("Backend", {"local": "local", "ray": "ray"}, type=str)


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., metavar="SWEEP", help="sweep TOML file (see docs/capacity.md)"),
    backend: Backend = typer.Option(Backend.local, help="where runs go: a local process pool, or Ray"),
    address: Optional[str] = typer.Option(None, help="ray: the cluster to join (auto, or ray://HOST:10001); none starts a local Ray"),
    workers: Optional[int] = typer.Option(None, min=1, max=1024, help="worker processes (default: this machine's CPUs)"),
    store: Optional[Path] = typer.Option(None, help="results store (DuckDB file); default runs/desim.duckdb"),
    fresh: bool = typer.Option(False, help="start a new sweep run instead of resuming this sweep's last one (e.g. after changing desim)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Run a sweep: every point x replication (common random numbers), results to the store as they finish.

    Running the same sweep again resumes it: finished runs are not run again."""
    from desim.app import sweep as S  # lazy: the sweep machinery, its backends and SciPy (~0.6 s), only for this command

    if address and backend is not Backend.ray:
        fail("--address: only for --backend ray")
    try:
        sw = S.load_sweep(sweep_file)
    except scenarios.ScenarioError as e:
        fail(str(e))
    st = _store(store, must_exist=False)
    try:
        be = S.backend(backend.value, workers=workers, address=address)
    except (RuntimeError, ValueError) as e:
        fail(str(e))
    except Exception as e:  # Ray could not start or join: its message, on one line
        fail(f"--backend ray: cannot start or join Ray ({type(e).__name__}: {e})")
    bar = _SweepBar(enabled=not json_out and sys.stderr.isatty())
    try:
        rid, results = S.execute(sw, st, be, progress=bar.update, on_start=bar.start, fresh=fresh)
    except KeyboardInterrupt:
        bar.close()
        fail("interrupted: finished runs are kept; run the same command again to resume", 130)
    except (scenarios.ScenarioError, stores.StoreError) as e:
        bar.close()
        fail(str(e))
    finally:
        bar.close()
        if hasattr(be, "close"):
            be.close()
    report = S.summarise(sw, rid, results)
    if json_out:
        sys.stdout.write(json.dumps(report, default=float) + "\n")
        return
    _print_sweep(report)


class _SweepBar:
    """A progress bar over a sweep's runs (resumed runs count from where they were), with an ETA."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.task = enabled, None, None

    def start(self, run_id: str, already: int, total: int) -> None:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                TextColumn("runs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=err_console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task(f"sweep {run_id}", total=total, completed=already)

    def update(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _print_sweep(report: dict) -> None:
    metrics = report["metrics"]
    t = Table(title=f"sweep {report['sweep_id']} — {report['name']}: {report['runs']} runs, "
                    f"{report['replications']} replications per point (95% intervals)")
    shown = report["varied"] or report["paths"]
    fixed = [p for p in report["paths"] if p not in shown]
    for p in shown:
        t.add_column(p, no_wrap=True)
    for m in metrics:
        t.add_column(m, justify="right")
    for pt in report["points"]:
        cells = [_fmt(pt["params"][p]) for p in shown]
        for m in metrics:
            c = pt["metrics"].get(m)
            cells.append("-" if c is None or c["mean"] is None else
                         f"{_fmt(c['mean'])} ± {_fmt(c['half_width'])}" if c["n"] > 1 and math.isfinite(c["half_width"]) else _fmt(c["mean"]))
        t.add_row(*cells)
    _print_table(t)
    if fixed:
        first = report["points"][0]["params"]
        console.print("at every point: " + ", ".join(f"{p} = {json.dumps(first[p])}" for p in fixed))
    for line in report.get("findings", []):
        console.print(line)


Suite = enum.Enum("Suite", {"faults": "faults"}, type=str)
GuardArm = enum.Enum("GuardArm", {"on": "on", "off": "off", "both": "both"}, type=str)


@app.command("eval")
def eval_(
    scenario: Path = typer.Argument(..., help="scenario TOML file with the order pipeline (e.g. scenarios/warehouse-pipeline.toml)"),
    suite: Suite = typer.Option(Suite.faults, help="the suite of cases to run"),
    guard: GuardArm = typer.Option(GuardArm.on, help="run the cases with the guard on, off (for comparison) or both"),
    case: Optional[list[str]] = typer.Option(None, "--case", help="run only this case (repeatable)"),
    seed: Optional[int] = typer.Option(None, min=0, max=2**63 - 1, help="seed of every arm (default: the scenario's)"),
    until: Optional[float] = typer.Option(None, min=1.0, max=1e7, help="simulated seconds per run (default: the scenario's)"),
    store: Optional[Path] = typer.Option(None, help="results store (DuckDB file); default runs/desim.duckdb"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record the results in the store"),
    json_out: bool = typer.Option(False, "--json", help="print the results as a JSON list of objects (each with passed)"),
) -> None:
    """Run a failure suite against the clean baseline (same seed: common random numbers).

    Exit code 1 when a case fails (an order lost, unbounded retries, a run that did not end, or a
    safeguard that did not fire as expected)."""
    if until is not None and not math.isfinite(until):
        fail("--until: must be a finite number")
    st = None if no_store else _store(store, must_exist=False)
    bar = _EvalBar(enabled=not json_out and sys.stderr.isatty())
    try:
        results, _rows, _windows, sc, run_id = E.run_suite(scenario, suite=suite.value, guard=guard.value, seed=seed,
                                                           until=until, cases=case, progress=bar.update, store=st)
    except scenarios.ScenarioError as e:
        bar.close()
        fail(str(e))
    except stores.StoreError as e:
        bar.close()
        fail(str(e))
    except KeyboardInterrupt:
        bar.close()
        fail("interrupted" + (": the suite's run is marked interrupted in the store" if st is not None else ""), 130)
    bar.close()
    if json_out:
        sys.stdout.write(json.dumps(results, default=float) + "\n")
    else:
        _print_eval(results, sc.name, run_id)
    if not all(r["passed"] for r in results):
        raise typer.Exit(1)


class _EvalBar:
    """A progress bar over the suite's runs (case x arm), naming the one running."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.task = enabled, None, None

    def update(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                TextColumn("runs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=err_console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)
        self.bar.update(self.task, completed=done, total=total, description=label)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _vs(v: Any, base: Any) -> str:
    """``v (+x%)`` against a baseline figure."""
    if v is None:
        return "-"
    if base in (None, 0):
        return _fmt(round(v, 1))
    return f"{_fmt(round(v, 1))} ({(v - base) / base:+.0%})"


def _print_eval(results: list[dict], name: str, run_id: Optional[str]) -> None:
    passed = sum(r["passed"] for r in results)
    t = Table(title=f"failure suite on {name}: {passed}/{len(results)} passed" + (f" (run {run_id})" if run_id else ""))
    for col, just in (("case", "left"), ("arm", "left"), ("throughput/h (vs base)", "right"),
                      ("latency p50 s (vs base)", "right"), ("retries (bound)", "right"), ("deadlocks", "right"),
                      ("done/failed/pending", "right"), ("lost", "right"), ("harm", "left"), ("safeguards", "left"),
                      ("passed", "left")):
        t.add_column(col, justify=just, no_wrap=col in ("case", "arm"))
    for r in results:
        harm = ", ".join(f"{k.replace('_', ' ')} {r[k]}" for k in ("unauthorized_executed", "mispriced") if r[k]) or "-"
        guards = ", ".join(f"{s['name']} {'✓' if s['ok'] else '✗'}" for s in r["safeguards"]) or "-"
        t.add_row(r["case"], r["arm"], _vs(r["throughput"], r["base_throughput"]), _vs(r["latency_p50"], r["base_latency_p50"]),
                  f"{r['retries']} ({r['retry_bound']})", str(r["deadlocks"]), f"{r['completed']}/{r['failed']}/{r['pending']}",
                  str(r["lost"]), harm, guards, "yes" if r["passed"] else f"NO: {r['failures']}")
    _print_table(t)


study_app = typer.Typer(no_args_is_help=True, help="Credit assignment and nonstationarity, measured (docs/credit.md).")
app.add_typer(study_app, name="study")


def _study_common(scenario: Path, seeds: int, steps: int, workers: int, store: Optional[Path]) -> Store:
    if seeds < 1:
        fail(f"--seeds: must be at least 1, got {seeds}")
    if steps < 1:
        fail(f"--steps: must be positive, got {steps}")
    if workers < 1:
        fail(f"--workers: must be at least 1, got {workers}")
    try:
        scenarios.load(scenario)
        return _store(store, must_exist=False)
    except (scenarios.ScenarioError, stores.StoreError, ValueError) as e:
        fail(str(e))


def _run_study(kind: str, scenario: Path, algos: list[str], seeds: int, steps: int, envs: int, episodes: int,
               until: float, event: Optional[Path], workers: int, store: Optional[Path], target: Optional[float],
               json_out: bool, evaluations: int, eval_episodes: int) -> None:
    S = _learning()
    st = _study_common(scenario, seeds, steps, workers, store)
    for a in algos:
        if a not in brains.learner_names():
            fail(f"--algos: unknown algo {a!r} (expected some of {', '.join(brains.learner_names())})")
    bar = _EvalBar(not json_out)
    try:
        rep = S.run_study(kind, scenario, algos=algos, seeds=seeds, steps=steps, envs=envs, episodes=episodes,
                          until=until, event=event, workers=workers, store_path=st.path, target=target,
                          evaluations=evaluations, eval_episodes=eval_episodes, progress=bar.update)
    except (scenarios.ScenarioError, stores.StoreError, ValueError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    finally:
        bar.close()
    if json_out:
        sys.stdout.write(json.dumps({k: v for k, v in rep.items() if k != "credit"}, default=float) + "\n")
        return
    _print_study(rep, kind, seeds, steps)


def _print_study(rep: dict, kind: str, seeds: int, steps: int) -> None:
    t = Table(title=f"study {rep['run_id']}: {kind}, {seeds} seeds x {steps:,} env steps "
                    f"(converged: last two held-out returns >= {rep['target']:.2f}, within 25%)")
    cols = ["arm", "return (sd)", "converged", "steps to conv.", "traceability", "s/10k steps", "params",
            "config lines", "deliv./h tick", "deliv./h event", "gap"]
    if kind == "credit":
        cols += ["rated (cx/st/tr)"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("arm", "rated (cx/st/tr)") else "right")
    for a in rep["arms"]:
        tr = "undefined" if not math.isfinite(a["traceability_mean"]) else f"{a['traceability_mean']:+.2f}"
        row = [a["arm"] + (f" [{a['setting']}]" if a["setting"] else ""),
               f"{a['return_mean']:.2f} ({_fmt(a['return_std'])})", f"{a['converged_frac']:.0%}",
               _fmt(a["steps_to_converge_mean"]), tr, f"{a['train_s_per_10k']:.2f}", f"{a['params']:,}",
               str(a["config_lines"]), f"{a['dph_tick_mean']:.1f}", f"{a['dph_event_mean']:.1f}",
               "-" if not math.isfinite(a["production_gap_mean"]) else f"{a['production_gap_mean']:+.0%}"]
        if kind == "credit":
            row.append(f"{a['rated_complexity']} / {a['rated_stability']} / {a['rated_traceability']}")
        t.add_row(*row)
    console.print(t)
    console.print(f"store: {rep['store']} (run {rep['run_id']}); `desim report {rep['run_id']}` writes the report")


@study_app.command("credit")
def study_credit(
    scenario: Path = typer.Argument(..., help="a tick-tempo warehouse scenario to train on (e.g. scenarios/train-tiny.toml)"),
    algos: str = typer.Option("mappo,vdn", help="learners, comma-separated: mappo/ippo train global, difference and shaped rewards; vdn/qmix are value decomposition"),
    seeds: int = typer.Option(5, help="training seeds per arm (0..N-1)"),
    steps: int = typer.Option(500_000, help="env steps per training run"),
    envs: int = typer.Option(256, min=1, max=65_536, help="batched floors per training run"),
    episodes: int = typer.Option(64, min=1, max=65_536, help="episodes played to measure traceability"),
    until: float = typer.Option(3600.0, min=1.0, help="simulated seconds of each deployment run (tick and event tempo)"),
    event: Optional[Path] = typer.Option(None, help="the event-tempo scenario to deploy on (default: the scenario in the event tempo with a wireless network)"),
    workers: int = typer.Option(1, help="training runs at once (local processes)"),
    target: Optional[float] = typer.Option(None, help="the held-out return a seed must hold to count as converged (default: half the study's best)"),
    evaluations: int = typer.Option(10, min=1, max=10_000, help="held-out evaluations per training run (every steps/N env steps)"),
    eval_episodes: int = typer.Option(8, min=1, max=10_000, help="held-out episodes per evaluation"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train each reward allocation (global, difference, value decomposition, shaped) over N seeds and measure
    stability, traceability, complexity and performance."""
    _run_study("credit", scenario, [a.strip() for a in algos.split(",") if a.strip()], seeds, steps, envs, episodes,
               until, event, workers, store, target, json_out, evaluations, eval_episodes)


@study_app.command("nonstationarity")
def study_nonstationarity(
    scenario: Path = typer.Argument(..., help="a tick-tempo warehouse scenario to train on (simulated floors)"),
    algo: str = typer.Option("mappo", help="the learner (mappo, ippo, vdn, qmix, coma)"),
    seeds: int = typer.Option(5, help="training seeds per arm (0..N-1)"),
    steps: int = typer.Option(100_000, help="env steps per training run"),
    episodes: int = typer.Option(64, min=1, max=65_536, help="episodes played to measure traceability"),
    until: float = typer.Option(3600.0, min=1.0, help="simulated seconds of each deployment run"),
    event: Optional[Path] = typer.Option(None, help="the event-tempo scenario to deploy on (default: derived)"),
    workers: int = typer.Option(1, help="training runs at once (local processes)"),
    target: Optional[float] = typer.Option(None, help="the held-out return a seed must hold to count as converged"),
    evaluations: int = typer.Option(10, min=1, max=10_000, help="held-out evaluations per training run (every steps/N env steps)"),
    eval_episodes: int = typer.Option(8, min=1, max=10_000, help="held-out episodes per evaluation"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train with each nonstationarity switch off and on (reward normalisation, role rotation, asynchronous
    adoption, the staleness filter, the jitter buffer) and measure the effects."""
    _run_study("nonstationarity", scenario, [algo], seeds, steps, 8, episodes, until, event, workers, store, target,
               json_out, evaluations, eval_episodes)


@study_app.command("pipeline")
def study_pipeline(
    scenario: Path = typer.Argument(..., help="a scenario with the order pipeline (e.g. scenarios/warehouse-pipeline.toml)"),
    seeds: int = typer.Option(5, help="seeds (1..N)"),
    until: Optional[float] = typer.Option(None, min=1.0, help="simulated seconds (default: the scenario's)"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Which pipeline agent's decisions made each order: counterfactual re-runs beside assigned credit."""
    S = _learning()
    st = _study_common(scenario, seeds, 1, 1, store)
    bar = _EvalBar(not json_out)
    try:
        rep = S.run_pipeline_study(scenario, seeds=seeds, until=until, store_path=st.path, progress=bar.update)
    except (scenarios.ScenarioError, stores.StoreError, ValueError) as e:
        fail(str(e))
    finally:
        bar.close()
    if json_out:
        sys.stdout.write(json.dumps(rep, default=float) + "\n")
        return
    t = Table(title=f"pipeline study {rep['run_id']}: {seeds} seeds, {rep['orders']} orders "
                    f"({rep['completed']} completed, {rep['failed']} failed, {rep['pending']} pending)")
    for c in ("agent", "true contribution", "global credit", "local credit"):
        t.add_column(c, justify="left" if c == "agent" else "right")
    for a in rep["agents"]:
        t.add_row(a["agent"], _fmt(a["true"]), _fmt(a["assigned_global"]), _fmt(a["assigned_local"]))
    console.print(t)
    console.print("traceability: " + ", ".join(f"{k} {'undefined' if not math.isfinite(v) else f'{v:+.2f}'}"
                                                for k, v in rep["traceability"].items()))


@app.command()
def report(
    sweep_id: str = typer.Argument(..., help="a sweep's or a study's run id (or unique prefix/suffix, or `latest`: the latest sweep)"),
    out: Optional[Path] = typer.Option(None, help="folder for report.md and its PNG plots (default reports/SWEEP_ID)"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
) -> None:
    """Write a sweep's or a study's report: Markdown with PNG plots (a sweep: intervals, the saturation point,
    where time goes; a study: its table, learning curves, stability, traceability, deliveries per hour)."""
    from desim.app.report import write_report  # lazy: matplotlib, only for this command

    st = _store(store)
    if sweep_id == "latest":
        sweeps = st.list_runs(kind="sweep", limit=1)
        if not sweeps:
            fail(f"no sweeps in {st.path}: run `desim sweep SWEEP.toml --store {st.path}` first")
        rid = sweeps[0]["run_id"]
    else:
        rid = _resolve(st, sweep_id)
    try:
        path = write_report(st, rid, out)
    except (ValueError, stores.StoreError, OSError) as e:
        fail(str(e))
    console.print(str(path))


runs_app = typer.Typer(no_args_is_help=True, help="List, show and export recorded runs.")
app.add_typer(runs_app, name="runs")


def _store(path: Optional[Path], *, must_exist: bool = True) -> Store:
    """The results store at ``path`` (default runs/desim.duckdb); one line and exit 2 when it is not one."""
    p = Path(path or stores.DEFAULT_STORE)
    if must_exist and not p.exists():
        fail(f"no store at {p} (run `desim run SCENARIO --store {p}` first, or pass --store)")
    try:
        return stores.Store(p)
    except stores.StoreError as e:
        fail(str(e))


def _resolve(st: Store, ref: str) -> str:
    try:
        return st.resolve(ref)
    except KeyError as e:
        fail(str(e.args[0] if e.args else e))
    except stores.StoreError as e:
        fail(str(e))


def _print_table(t: Table) -> None:
    """A table on stdout; piped, it keeps its natural width (up to 300 columns) instead of folding to 80."""
    if sys.stdout.isatty():
        console.print(t)
    else:
        Console(file=sys.stdout, width=300, markup=False, emoji=False, highlight=False).print(t)


def _fmt(v: Any) -> str:
    return rules.fmt(v)


def _flatten(d: dict) -> list:
    return rules.flatten(d)


@runs_app.command("list")
def runs_list(
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    kind: Optional[Kind] = typer.Option(None, help="only runs of this kind"),
    limit: int = typer.Option(20, min=1, help="newest N runs"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The newest runs in the store (ids are never cut: copy one into `desim runs show`)."""
    st = _store(store)
    try:
        rows = st.list_runs(kind=kind.value if kind else None, limit=limit)
    except stores.StoreError as e:
        fail(str(e))
    if json_out:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    if not rows:
        what = f"no {kind.value} runs" if kind else "no runs yet"
        console.print(f"{what} in {st.path}: run `desim run SCENARIO --store {st.path}`")
        return
    t = Table(title=f"runs in {st.path} ({len(rows)} newest)")
    t.add_column("run_id", no_wrap=True, min_width=max(len(r["run_id"]) for r in rows))
    for col in ("kind", "scenario", "seed", "brain", "status", "started (UTC)", "headline"):
        t.add_column(col, no_wrap=col in ("kind", "status", "seed"))
    for r in rows:
        sm = r.get("summary") or {}
        headline = _headline(r["kind"], sm)
        t.add_row(r["run_id"], r["kind"], str(r.get("scenario") or ""), _fmt(r.get("seed")), str(r.get("brain") or ""),
                  r["status"], str(r.get("started_at"))[:19], headline)
    _print_table(t)  # ids are never cut: piped, rows keep their width; in a terminal the other columns wrap


def _headline(kind: str, sm: dict) -> str:
    """A run's few words in `runs list`: its model's stored headline, else what its kind always has."""
    def n(key: str) -> str | None:
        v = sm.get(key)
        return _fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    msgs = sm.get("messages")
    if isinstance(sm.get("headline"), str):
        return sm["headline"]
    if kind == "run" and isinstance(msgs, dict) and isinstance(msgs.get("sent"), int):
        return f"{_fmt(msgs.get('delivered'))}/{_fmt(msgs['sent'])} msgs"
    if kind == "train" and n("steps"):
        return f"{n('steps')} env steps"
    if kind == "eval" and n("passed") and n("arms"):
        return f"{n('passed')}/{n('arms')} arms passed"
    if kind == "sweep" and n("runs") and n("points"):
        return f"{n('runs')} runs, {n('points')} points"
    return ""


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="run id, a unique prefix or suffix of one, or `latest`"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
    json_out: bool = typer.Option(False, "--json", help="print the run as one JSON object (for machines)"),
) -> None:
    """One run: what ran, its status and its headline figures, rounded for reading."""
    st = _store(store)
    rid = _resolve(st, run_id)
    try:
        r = st.get_run(rid)
    except (KeyError, stores.StoreError) as e:
        fail(str(e.args[0] if isinstance(e, KeyError) and e.args else e))
    if json_out:
        sys.stdout.write(json.dumps(r, default=str) + "\n")
        return
    t = Table(title=f"run {r['run_id']}", show_header=False, title_justify="left")
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    shown = {"run_id"}
    for key in ("kind", "scenario", "seed", "brain", "status", "reason", "started_at", "finished_at", "code_version"):
        if r.get(key) is not None:
            t.add_row(key.replace("_", " "), _fmt(r[key]) if key == "seed" else str(r[key])[:19] if key.endswith("_at") else str(r[key]))
            shown.add(key)
    summary = r.get("summary") or {}
    skip = shown | {"faults", "trace_hash"}
    rows = [(k, v) for k, v in _flatten({k: v for k, v in summary.items() if k not in skip})]
    if rows:
        t.add_section()
        for k, v in rows:
            t.add_row(k.replace("_", " "), _fmt(v))
    if summary.get("trace_hash"):
        t.add_row("trace hash", str(summary["trace_hash"]))
    if summary.get("faults"):
        t.add_row("faults", f"{len(summary['faults'])} events")
    tables = r.get("tables") or {}
    if tables:
        t.add_section()
        for name, info in tables.items():
            n = info.get("rows") if isinstance(info, dict) else info
            t.add_row(f"table {name}", f"{_fmt(n)} row{'' if n == 1 else 's'}" if isinstance(n, (int, float)) else str(info))
    _print_table(t)


@runs_app.command("export")
def runs_export(
    run_id: str = typer.Argument(..., help="run id, a unique prefix or suffix of one, or `latest`"),
    out: Path = typer.Option(Path("export"), help="folder to export into; each run gets its own folder OUT/RUN_ID"),
    fmt: ExportFormat = typer.Option(ExportFormat.parquet, "--format", help="file format of the tables"),
    overwrite: bool = typer.Option(False, help="replace an earlier export of the same run"),
    store: Optional[Path] = typer.Option(None, help="results store (default runs/desim.duckdb)"),
) -> None:
    """Export a run (run.json) and its tables (Parquet, or CSV on request) into OUT/RUN_ID/."""
    st = _store(store)
    rid = _resolve(st, run_id)
    try:
        paths = st.export(rid, out, fmt=fmt.value, overwrite=overwrite)
    except (stores.StoreError, OSError) as e:
        msg = str(e) if isinstance(e, stores.StoreError) else f"cannot export into {out}: {e.strerror or e}"
        fail(msg + (" (pass --overwrite to replace it)" if "not overwriting" in msg else ""))
    for p in paths:
        console.print(str(p))


def main() -> None:
    """Console entry point: usage errors become one line and exit 2."""
    try:
        rv = app(standalone_mode=False)
    except _UsageErrors as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `desim`: the help was the answer
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        where = f" ({ctx.command_path})" if ctx is not None else ""
        err_console.print(f"desim: error{where}: {' '.join(e.format_message().replace('Value error, ', '').split())}", soft_wrap=True)
        sys.exit(2)
    except registry.PluginError as e:  # a plugin that does not import, wherever a registry first loaded it
        err_console.print(f"desim: error: {' '.join(str(e).split())}", soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
