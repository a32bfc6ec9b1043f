"""``desim report STUDY_ID``: a study's findings as Markdown with PNG plots.

Credit and nonstationarity studies: the table of arms (measured beside the
qualitative ratings for the credit study; each switch beside its control for
the nonstationarity study), held-out learning curves per arm (mean and range
across seeds), final returns per seed (stability), assigned credit against the
true contribution (traceability), deliveries per hour in both tempos (the
production gap). Pipeline studies: each agent's true contribution beside its
global and local credit.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from desim.analysis import paired_diff_ci  # noqa: E402
from desim.app.study_tables import STUDY_ARMS, STUDY_CREDIT, STUDY_CURVES, STUDY_SEEDS  # noqa: E402

PIPELINE_TABLE = "pipeline_credit"


def _f(v, nd: int = 2, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if pct:
        return f"{v:+.0%}"
    return f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}"


def _pc(v) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.0%}"


def _paired(per: dict, on: str, off: str, col: str) -> str:
    """``on - off`` over the seeds both arms ran (the same seed: the same initial weights and floors), with
    its 95% paired Student-t interval."""
    common = sorted(set(per.get(on, {})) & set(per.get(off, {})))
    if len(common) < 2:
        return "–"
    d = paired_diff_ci([per[off][k][col] for k in common], [per[on][k][col] for k in common])
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _tr(v) -> str:
    return "undefined" if v is None or not math.isfinite(v) else f"{v:+.2f}"


def write_study_report(store, run_id: str, out: str | Path | None = None) -> Path:
    """Write ``OUT/report.md`` and its plots for study ``run_id``; return the Markdown file's path."""
    run = store.get_run(run_id)
    if run.get("kind") != "study":
        raise ValueError(f"run {run_id} is a {run.get('kind')} run, not a study")
    cfg = dict(run.get("config") or {})
    out = Path(out or Path("reports") / run_id)
    if out.exists() and not out.is_dir():
        raise ValueError(f"report folder {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("study") == "pipeline":
        lines = _pipeline(store, run_id, cfg, out)
    else:
        lines = _trained(store, run_id, cfg, run, out)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _trained(store, run_id: str, cfg: dict, run: dict, out: Path) -> list[str]:
    arms = store.table(STUDY_ARMS.name, run_id, as_dicts=True)
    if not arms:
        raise ValueError(f"study {run_id} has no results yet (status {run.get('status')})")
    seeds = store.table(STUDY_SEEDS.name, run_id, as_dicts=True)
    curves = store.table(STUDY_CURVES.name, run_id, as_dicts=True)
    credit = store.table(STUDY_CREDIT.name, run_id, as_dicts=True)
    kind = cfg.get("study", "credit")
    names = [a["arm"] for a in arms]
    crit = cfg.get("criterion") or {}
    lines = [f"# Study {run_id}: {kind} on {run.get('scenario')}", "",
             f"{cfg.get('seeds')} seeds x {cfg.get('steps'):,} env steps per arm ({', '.join(cfg.get('algos') or [])}); "
             f"traceability over {cfg.get('episodes')} episodes per seed; deployments {cfg.get('until')} simulated "
             f"seconds (event tempo: {cfg.get('event')}). Status {run.get('status')}.",
             "",
             f"Converged: the last two held-out evaluations both reach {crit.get('converge_frac', 0.5):g} x the "
             f"study's best held-out return (or the given target) and are within {crit.get('plateau', 0.25):.0%} of "
             "their mean. Final return: the mean held-out return over the last fifth of training. Traceability: "
             "Pearson r between the credit an arm assigns each robot over an episode and its true contribution "
             "(re-simulated with the robot on NOOP), per-episode means removed (undefined when the credit does not "
             "differ between robots).", ""]
    if kind == "credit":
        lines += ["| method | arm | return (sd) | converged | steps to converge | traceability | train s / 10k steps "
                  "| params | config lines | deliveries/h tick | deliveries/h event | gap | rated complexity / "
                  "stability / traceability |", "|---" * 13 + "|"]
        for a in arms:
            lines.append(f"| {a['method']} | {a['arm']} | {_f(a['return_mean'])} ({_f(a['return_std'])}) | "
                         f"{_pc(a['converged_frac'])} | "
                         f"{_f(a['steps_to_converge_mean'], 0)} | {_tr(a['traceability_mean'])} | "
                         f"{_f(a['train_s_per_10k'])} | {a['params']:,} | {a['config_lines']} | "
                         f"{_f(a['dph_tick_mean'], 1)} | {_f(a['dph_event_mean'], 1)} | "
                         f"{_f(a['production_gap_mean'], pct=True)} | {a['rated_complexity']} / "
                         f"{a['rated_stability']} / {a['rated_traceability']} |")
    else:
        by = {a["arm"]: a for a in arms}
        ctl = {x["name"]: x.get("control", "") for x in cfg.get("arms") or []}
        per = {}
        for r in seeds:
            per.setdefault(r["arm"], {})[r["seed"]] = r
        lines += ["| switch | off: return (sd) | on: return (sd) | on - off return (95% paired) | off / on converged "
                  "| off / on steps to converge | off / on deliveries/h event | on - off event (95% paired) "
                  "| off / on gap |", "|---" * 9 + "|"]
        for a in arms:
            c = by.get(ctl.get(a["arm"], ""))
            if not a["switch"] or c is None:
                continue
            lines.append(f"| {a['switch']} (vs {c['arm']}) | {_f(c['return_mean'])} ({_f(c['return_std'])}) | "
                         f"{_f(a['return_mean'])} ({_f(a['return_std'])}) | "
                         f"{_paired(per, a['arm'], c['arm'], 'final_return')} | {_pc(c['converged_frac'])} / "
                         f"{_pc(a['converged_frac'])} | {_f(c['steps_to_converge_mean'], 0)} / "
                         f"{_f(a['steps_to_converge_mean'], 0)} | {_f(c['dph_event_mean'], 1)} / "
                         f"{_f(a['dph_event_mean'], 1)} | {_paired(per, a['arm'], c['arm'], 'dph_event')} | "
                         f"{_f(c['production_gap_mean'], pct=True)} / {_f(a['production_gap_mean'], pct=True)} |")
    lines += ["", "## Learning curves", "", "![curves](curves.png)", "",
              "## Stability: final return per seed", "", "![finals](finals.png)", "",
              "## Traceability: assigned credit against true contribution", "", "![credit](credit.png)", "",
              "## Performance: deliveries per hour, tick and event tempo", "", "![deploy](deploy.png)", ""]
    _plot_curves(curves, names, out / "curves.png")
    _plot_finals(seeds, names, out / "finals.png")
    _plot_credit(credit, arms, out / "credit.png")
    _plot_deploy(arms, out / "deploy.png")
    lines += ["## Per seed", "", "| arm | seed | final return | converged | traceability | deliveries/h tick | "
              "deliveries/h event | train run |", "|---" * 8 + "|"]
    for s in seeds:
        lines.append(f"| {s['arm']} | {s['seed']} | {_f(s['final_return'])} | {'yes' if s['converged'] else 'no'} | "
                     f"{_tr(s['traceability'])} | {_f(s['dph_tick'], 1)} | {_f(s['dph_event'], 1)} | {s['train_run']} |")
    return lines


def _plot_curves(curves: list[dict], names: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    for name in names:
        rows = [c for c in curves if c["arm"] == name]
        steps = sorted({c["step"] for c in rows})
        if not steps:
            continue
        vals = [[c["eval_return"] for c in rows if c["step"] == s] for s in steps]
        mean = [float(np.mean(v)) for v in vals]
        ax.plot(steps, mean, label=name)
        ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], alpha=0.15)
    ax.set_xlabel("env steps")
    ax.set_ylabel("held-out return (team deliveries / episode)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_finals(seeds: list[dict], names: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    for i, name in enumerate(names):
        ys = [s["final_return"] for s in seeds if s["arm"] == name]
        ax.scatter([i] * len(ys), ys, s=18)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("final held-out return")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_credit(credit: list[dict], arms: list[dict], path: Path) -> None:
    n = max(len(arms), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), dpi=110, squeeze=False)
    for ax, a in zip(axes[0], arms):
        rows = [c for c in credit if c["arm"] == a["arm"]]
        ax.scatter([c["true"] for c in rows], [c["assigned"] for c in rows], s=4, alpha=0.4)
        ax.set_title(f"{a['arm']}\nr = {_tr(a['traceability_mean'])}", fontsize=8)
        ax.set_xlabel("true contribution", fontsize=7)
    axes[0][0].set_ylabel("assigned credit", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_deploy(arms: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    x = np.arange(len(arms))
    ax.bar(x - 0.2, [a["dph_tick_mean"] for a in arms], 0.4, label="tick tempo")
    ax.bar(x + 0.2, [a["dph_event_mean"] for a in arms], 0.4, label="event tempo + network")
    ax.set_xticks(x, [a["arm"] for a in arms], rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("deliveries per hour")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pipeline(store, run_id: str, cfg: dict, out: Path) -> list[str]:
    rows = store.table(PIPELINE_TABLE, run_id, as_dicts=True)
    if not rows:
        raise ValueError(f"pipeline study {run_id} has no results yet")
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    lines = [f"# Pipeline study {run_id}", "",
             f"{cfg.get('seeds')} seeds of {cfg.get('file')}, {cfg.get('until')} simulated seconds each. An agent's "
             "true contribution to an order: completed in the real run (1/0) minus completed with that agent on its "
             "default decisions (same seed: common random numbers).", "",
             "| agent | true contribution | orders it made | orders it cost | global credit | local credit |",
             "|---|---|---|---|---|---|"]
    for a in agents:
        mine = [r for r in rows if r["agent"] == a]
        lines.append(f"| {a} | {sum(r['true'] for r in mine):g} | {sum(r['true'] > 0 for r in mine)} | "
                     f"{sum(r['true'] < 0 for r in mine)} | {sum(r['assigned_global'] for r in mine):g} | "
                     f"{sum(r['assigned_local'] for r in mine):g} |")
    fig, ax = plt.subplots(figsize=(6, 3), dpi=110)
    x = np.arange(len(agents))
    for k, (col, lab) in enumerate((("true", "true"), ("assigned_global", "global"), ("assigned_local", "local"))):
        ax.bar(x + (k - 1) * 0.27, [sum(r[col] for r in rows if r["agent"] == a) for a in agents], 0.27, label=lab)
    ax.set_xticks(x, agents)
    ax.set_ylabel("orders")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "agents.png")
    plt.close(fig)
    return lines + ["", "![agents](agents.png)"]
