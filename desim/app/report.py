"""``desim report SWEEP_ID``: a sweep's findings as Markdown with PNG plots.

What a capacity planner reads first: each headline metric against the swept
parameter with its confidence interval across replications, the saturation
point (the knee), where the others blow up, the paired differences against the
first point (common random numbers make them tight), and where robots' time goes
at each point, so the bottleneck is named.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from desim.analysis import paired_diff_ci  # noqa: E402
from desim.app.study_report import write_study_report  # noqa: E402
from desim.app.sweep import SWEEP_POINTS, rows_of, summarise  # noqa: E402
from desim.models.warehouse.robot_time import STATES, WAITING  # noqa: E402

TIME_STATES = STATES  # the warehouse's list: what robot_time_share.<state> metrics are named by


def _load(store, run_id: str) -> tuple[dict, list[dict]]:
    run = store.get_run(run_id)
    if run.get("kind") != "sweep":
        raise ValueError(f"run {run_id} is a {run.get('kind')} run, not a sweep")
    cfg = dict(run.get("config") or {})
    cfg["name"] = run.get("scenario") or cfg.get("name", "")
    tbl = store.table(SWEEP_POINTS, run_id)
    results = tbl.to_pylist() if tbl is not None else []
    if not results:
        raise ValueError(f"sweep {run_id} has no finished runs yet")
    return {**cfg, "status": run.get("status")}, results


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def write_report(store, run_id: str, out: str | Path | None = None) -> Path:
    """Write ``OUT/report.md`` and its plots for sweep (or study) ``run_id``; return the Markdown file's path."""
    if store.get_run(run_id).get("kind") == "study":
        return write_study_report(store, run_id, out)
    cfg, results = _load(store, run_id)
    rep = summarise(cfg, run_id, results)
    out = Path(out or Path("reports") / run_id)
    if out.exists() and not out.is_dir():
        raise ValueError(f"report folder {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    rows = rows_of(results)
    paths, metrics = rep["paths"], rep["metrics"]
    varied = rep["varied"] or paths[:1]
    x = varied[0]
    numeric = all(isinstance(pt["params"][x], (int, float)) for pt in rep["points"])
    lines = [f"# Sweep {run_id}: {rep['name']}", "",
             f"{rep['runs']} runs: {len(rep['points'])} points x {rep['replications']} replications "
             f"(common random numbers: replication r has seed {cfg.get('seed', 0)} + r at every point), "
             f"{cfg.get('until', '?')} simulated seconds each; status {cfg.get('status')}. "
             f"Intervals are {int(rep['level'] * 100)}% Student-t intervals across replications.", ""]
    if rep["findings"]:
        lines += ["## Findings", ""] + [f"- {f}" for f in rep["findings"]] + [""]
    # -- each metric against the swept parameter
    lines += ["## Metrics", ""]
    for m in metrics:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        order = sorted(rep["points"], key=lambda pt: pt["params"][x] if numeric else pt["point"])
        groups = {}
        others = varied[1:]
        for pt in order:
            key = tuple(pt["params"][p] for p in others)
            groups.setdefault(key, []).append(pt)
        for key, pts in groups.items():
            xs = [pt["params"][x] if numeric else str(pt["params"][x]) for pt in pts]
            ys = [pt["metrics"][m]["mean"] for pt in pts]
            err = [[(pt["metrics"][m]["mean"] or 0) - (pt["metrics"][m]["low"] or pt["metrics"][m]["mean"] or 0) for pt in pts],
                   [(pt["metrics"][m]["high"] or pt["metrics"][m]["mean"] or 0) - (pt["metrics"][m]["mean"] or 0) for pt in pts]]
            label = ", ".join(f"{p}={v}" for p, v in zip(others, key)) or None
            ax.errorbar(xs, [y if y is not None else math.nan for y in ys], yerr=err, marker="o", capsize=3, label=label)
        if rep.get("knee") and rep["knee"]["metric"] == m:
            ax.axvline(rep["knee"]["x"], color="tab:red", ls="--", lw=1, label=f"knee {x}={rep['knee']['x']:g}")
        if m in rep.get("blowups", {}):
            ax.axvline(rep["blowups"][m], color="tab:orange", ls=":", lw=1, label=f"blow-up {x}={rep['blowups'][m]:g}")
        ax.set_xlabel(x)
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        png = out / f"{m.replace('.', '_')}.png"
        fig.savefig(png)
        plt.close(fig)
        lines += [f"### {m}", "", f"![{m}]({png.name})", "",
                  "| " + " | ".join(paths) + f" | {m} mean | {int(rep['level'] * 100)}% interval | n |",
                  "|" + "---|" * (len(paths) + 3)]
        for pt in order:
            c = pt["metrics"][m]
            lines.append("| " + " | ".join(_fmt(pt["params"][p]) for p in paths)
                         + f" | {_fmt(c['mean'])} | {_fmt(c['low'])} .. {_fmt(c['high'])} | {c['n']} |")
        lines.append("")
    # -- paired differences against the first point
    first = rep["points"][0]
    lines += ["## Differences against the first point (paired by replication)", "",
              f"Baseline: {', '.join(p + '=' + str(first['params'][p]) for p in paths)}. With common random numbers, "
              "each replication of a point is paired with the baseline's replication of the same seed; the paired "
              "interval is shown beside the unpaired (Welch) half-width it replaces.", "",
              "| point | metric | difference | interval | unpaired half-width | significant |", "|---|---|---|---|---|---|"]
    base_rows = {r["rep"]: r for r in rows if r["point"] == first["point"]}
    for pt in rep["points"][1:]:
        mine = {r["rep"]: r for r in rows if r["point"] == pt["point"]}
        reps = sorted(set(base_rows) & set(mine))
        for m in metrics:
            a = [base_rows[k].get(m) for k in reps]
            b = [mine[k].get(m) for k in reps]
            if len(reps) < 2 or any(v is None for v in a + b):
                continue
            d = paired_diff_ci(a, b)
            label = ", ".join(f"{p}={pt['params'][p]}" for p in varied)
            lines.append(f"| {label} | {m} | {_fmt(d.mean)} | {_fmt(d.low)} .. {_fmt(d.high)} | "
                         f"{_fmt(d.unpaired_half_width)} | {'yes' if d.significant else 'no (could be noise)'} |")
    lines.append("")
    # -- where time goes
    share_keys = [f"robot_time_share.{s}" for s in TIME_STATES]
    if any(k in rows[0] for k in share_keys):
        order = sorted(rep["points"], key=lambda pt: pt["params"][x] if numeric else pt["point"])
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        bottom = [0.0] * len(order)
        labels = [str(pt["params"][x]) for pt in order]
        table = []
        for s, k in zip(TIME_STATES, share_keys):
            vals = []
            for pt in order:
                v = [r.get(k) for r in rows if r["point"] == pt["point"] and r.get(k) is not None]
                vals.append(sum(v) / len(v) if v else 0.0)
            ax.bar(labels, vals, bottom=bottom, label=s)
            bottom = [b + v for b, v in zip(bottom, vals)]
            table.append((s, vals))
        ax.set_xlabel(x)
        ax.set_ylabel("share of robot time")
        ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        fig.tight_layout()
        fig.savefig(out / "robot_time.png")
        plt.close(fig)
        lines += ["## Where robots' time goes", "", "![robot time](robot_time.png)", "",
                  "| state | " + " | ".join(f"{x}={lab}" for lab in labels) + " |", "|---|" + "---|" * len(labels)]
        for s, vals in table:
            lines.append(f"| {s} | " + " | ".join(f"{v:.1%}" for v in vals) + " |")
        bott = []
        for i, pt in enumerate(order):
            waits = {s: vals[i] for s, vals in table if s in WAITING}
            bott.append(f"{x}={labels[i]}: {max(waits, key=waits.get)}")
        lines += ["", "Bottleneck (the largest non-working state) per point: " + "; ".join(bott) + ".", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n")
    return md
