"""Training on the RWARE-rules floors: MAPPO, IPPO and QMIX, return vs env steps.

Tasks (the rware names): ``tiny-2ag`` (tiny floor, 2 robots) and
``small-4ag`` (small floor, 4 robots), tick tempo, individual rewards,
500-step episodes, request queue = robots (rware's default difficulty).
Each (task, algo) is one ``policies.train.train`` run (checkpoints and
rollback included, as ``desim train`` does it); curves come back from the
store. Printed: a table of returns at fixed env-step marks, and per run the
wall time split into rollout (env stepping + acting) and update (learning),
with env-steps/s for each. Figures go into ``docs/benchmarks.md``.

The return is the env's own (unshaped) episode return summed over robots,
i.e. deliveries per 500-step episode: the quantity EPyMARL reports for RWARE.

An algo named ``X-gru`` (e.g. ``mappo-gru``) is learner ``X`` with its
recurrent (GRU) actor (``recurrent = true``). The plot (``returns.png``) needs
matplotlib (``pip install -e '.[bench]'``).

``--envs N`` trains on N batched floors (``[train] floors = "batched"``, MAPPO
and IPPO) with ``--obs features`` (desim's feature vector, the default) or
``--obs rware`` (rware's own observation vector: the like-for-like setting);
their curves are labelled ``ALGO [batched OBS]``. ``--learner`` sets learner
hyperparameters (JSON, e.g. ``'{"rollout": 64, "epochs": 4}'``).

Usage:
    python bench/train_rware.py [--tasks tiny-2ag,small-4ag] [--algos mappo,ippo,qmix,mappo-gru]
                                [--steps 200000] [--seed 0] [--shaping 0.5] [--out runs/bench/train_rware]
                                [--envs N] [--obs features|rware] [--learner JSON] [--checkpoint-every N]
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

TASKS = {
    "tiny-2ag": dict(size="tiny", robots=2, zones=1),
    "small-4ag": dict(size="small", robots=4, zones=2),
}


def curve_of(store_path: Path, run_id: str, metric: str) -> list[tuple[int, float]]:
    from desim.store import Store

    rows = Store(store_path).query(
        "SELECT step, value FROM train_curves WHERE run_id = ? AND metric = ? ORDER BY step", [run_id, metric])
    return [(int(r["step"]), float(r["value"])) for r in rows]


def at_mark(curve: list[tuple[int, float]], mark: int, window: int = 3) -> float | None:
    """Mean of the last ``window`` logged returns at or before ``mark`` env steps."""
    vals = [v for s, v in curve if s <= mark]
    return float(np.mean(vals[-window:])) if vals else None


def heuristic_deliveries(task: str, brain: str = "greedy", seeds=(1, 2, 3, 4, 5)) -> float:
    """Mean deliveries of a heuristic brain in one 500-step episode of ``task`` (tick tempo)."""
    from desim.app.runner import run
    from desim.models.warehouse.env import scenario_for

    sc = scenario_for(**TASKS[task], tempo="tick", max_steps=500)
    return float(np.mean([run(sc, seed=s, brain=brain).summary["deliveries"] for s in seeds]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="tiny-2ag,small-4ag")
    ap.add_argument("--algos", default="mappo,ippo,qmix")
    ap.add_argument("--steps", type=int, default=200_000, help="env steps per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shaping", type=float, default=0.5, help="potential-based shaping weight (0: rware's reward only)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/train_rware"))
    ap.add_argument("--also", type=Path, action="append", default=[], metavar="DIR",
                    help="include an earlier run's results (DIR/results.json, DIR/curves.csv) in the tables and plot; "
                         "with --algos '' nothing new is trained")
    ap.add_argument("--envs", type=int, default=None, help="train on this many batched floors (mappo, ippo)")
    ap.add_argument("--obs", choices=("features", "rware"), default="features",
                    help="observations (rware: rware's own vector; batched floors only)")
    ap.add_argument("--learner", default="{}", help="learner hyperparameters as JSON")
    ap.add_argument("--checkpoint-every", type=int, default=50_000, help="env steps between candidate checkpoints")
    args = ap.parse_args()
    try:
        learner_cfg = json.loads(args.learner)
        assert isinstance(learner_cfg, dict)
    except (ValueError, AssertionError):
        ap.error(f"--learner: expected a JSON object, got {args.learner!r}")
    if args.envs is not None and args.envs < 1:
        ap.error(f"--envs must be at least 1, got {args.envs}")
    if args.obs == "rware" and args.envs is None:
        ap.error("--obs rware needs batched floors (--envs N)")
    floors = {} if args.envs is None else {"floors": "batched", "n_envs": args.envs, "observations": args.obs}
    tasks = [t for t in args.tasks.split(",") if t]
    algos = [a for a in args.algos.split(",") if a]
    for d in args.also:
        if not (d / "results.json").is_file() or not (d / "curves.csv").is_file():
            ap.error(f"--also {d}: no results.json and curves.csv there")
    for task in tasks:
        if task not in TASKS:
            ap.error(f"--tasks: unknown task {task!r} (expected {', '.join(TASKS)})")
    if args.steps <= 0:
        ap.error(f"--steps must be positive, got {args.steps}")

    from desim.policies.train import train

    console = Console(width=160)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "bench.duckdb"
    marks = [m for m in (25_000, 50_000, 100_000, 200_000, 500_000, 1_000_000) if m <= args.steps] + [args.steps]
    marks = sorted(set(marks))
    results, curves = [], []
    for d in args.also:  # earlier runs, shown beside this one's
        for r in json.loads((d / "results.json").read_text()):
            r["returns"] = {int(k): v for k, v in r["returns"].items()}
            results.append(r)
        with open(d / "curves.csv", newline="") as f:
            curves += [{**c, "step": int(c["step"]), "return": float(c["return"])} for c in csv.DictReader(f)]
    marks = sorted((set(marks) if algos else set()) | {m for r in results for m in r["returns"]})
    for task in (tasks if algos else []):
        for algo in algos:
            env = {**TASKS[task], "tempo": "tick", "reward": "individual"}
            learner, cfg = (algo[: -len("-gru")], {"recurrent": True}) if algo.endswith("-gru") else (algo, {})
            cfg = {**cfg, **learner_cfg}
            t0 = time.perf_counter()
            try:
                r = train(env, learner, args.steps, device=args.device, seed=args.seed, cfg=cfg,
                          out_dir=Path(tempfile.mkdtemp(prefix=f"{task}-{algo}-", dir=args.out)), store_path=store,
                          progress=True, train_cfg={"shaping": args.shaping, "checkpoint_every": args.checkpoint_every,
                                                    **floors})
            except ValueError as e:  # e.g. a learner not importable yet
                console.print(f"[yellow]{task} {algo}: skipped ({e})[/]")
                continue
            if floors:
                algo = f"{algo} [batched {args.obs}]"
            curve = curve_of(store, r["run_id"], "return")
            evals = curve_of(store, r["run_id"], "eval_return")
            for s, v in curve:
                curves.append({"task": task, "algo": algo, "step": s, "return": v})
            results.append({
                "task": task, "algo": algo, "steps": r["steps"], "wall_s": r["wall_s"],
                "rollout_s": r["rollout_s"], "update_s": r["update_s"],
                "rollout_steps_per_s": r["steps"] / r["rollout_s"] if r["rollout_s"] else None,
                "update_steps_per_s": r["steps"] / r["update_s"] if r["update_s"] else None,
                "env_steps_per_s": r["env_steps_per_s"], "device": r["device"],
                "returns": {m: at_mark(curve, m) for m in marks},
                "best_eval": max((v for _s, v in evals), default=None), "incumbent_eval": r["incumbent_return"],
                "rollbacks": sum(p["decision"] == "rollback" for p in r["promotions"]),
                "bench_wall_s": time.perf_counter() - t0,
            })

    t = Table(title="return (deliveries per 500-step episode, summed over robots) vs env steps; "
                    + (f"seed {args.seed}, shaping {args.shaping}" if algos else "earlier runs merged (their own settings)"))
    for col in ["task", "algo"] + [f"{m // 1000}k" for m in marks] + ["held-out (incumbent)", "rollbacks"]:
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(r["task"], r["algo"], *("-" if r["returns"].get(m) is None else f"{r['returns'][m]:.2f}" for m in marks),
                  "-" if r["incumbent_eval"] is None else f"{r['incumbent_eval']:.2f}", str(r["rollbacks"]))
    console.print(t)
    t2 = Table(title=f"time ({platform.processor() or platform.machine()}, {results[0]['device'] if results else '-'})")
    for col in ("task", "algo", "env steps", "wall s", "rollout s", "update s", "rollout steps/s", "update steps/s",
                "overall steps/s"):
        t2.add_column(col, justify="right")
    for r in results:
        t2.add_row(r["task"], r["algo"], f"{r['steps']:,}", f"{r['wall_s']:.0f}", f"{r['rollout_s']:.0f}",
                   f"{r['update_s']:.0f}", f"{r['rollout_steps_per_s']:,.0f}", f"{r['update_steps_per_s']:,.0f}",
                   f"{r['env_steps_per_s']:,.0f}")
    console.print(t2)

    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    with open(args.out / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["task", "algo", "step", "return"])
        w.writeheader()
        w.writerows(curves)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = [t for t in TASKS if any(c["task"] == t for c in curves)]
        refs = {t: heuristic_deliveries(t) for t in shown}
        fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(5 * max(1, len(shown)), 4), squeeze=False)
        for ax, task in zip(axes[0], shown):
            for algo in dict.fromkeys(c["algo"] for c in curves):
                pts = [(c["step"], c["return"]) for c in curves if c["task"] == task and c["algo"] == algo]
                if pts:
                    ax.plot(*zip(*pts), label=algo)
            ax.axhline(refs[task], color="grey", linestyle="--", label="greedy heuristic")
            ax.annotate(f"greedy {refs[task]:.1f}", (0, refs[task]), xytext=(2, 3), textcoords="offset points",
                        fontsize="small", color="grey")
            ax.set(title=task, xlabel="env steps", ylabel="deliveries per 500-step episode")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), bbox_to_anchor=(0.5, -0.11), frameon=False)
        fig.savefig(args.out / "returns.png", dpi=120, bbox_inches="tight")
        console.print(f"plot: {args.out / 'returns.png'}")
    except ImportError:
        console.print("matplotlib is not installed: no PNG plot (curves in curves.csv)")
    console.print(f"results: {args.out / 'results.json'}, curves: {args.out / 'curves.csv'}")


if __name__ == "__main__":
    main()
