"""``desim report SWEEP_ID``: a sweep's findings as Markdown with PNG plots.

What a capacity planner reads first: what the answer assumes (the base scenario's brain, tempo,
network and faults), each headline metric against the swept parameter with its unit and its
confidence interval across replications (one curve per brain, or per value of any other varied
parameter), the saturation point of each curve (the knee), where the other metrics blow up or rise
from 0, latency figures flagged where they cover too few of the orders (survivorship), the paired
differences (common random numbers make them tight: between brains at each point, or against the
first point), and where robots' time goes at each point, so the bottleneck is named.
"""
from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from desim.analysis import paired_diff_ci  # noqa: E402
from desim.app.study_report import write_study_report  # noqa: E402
from desim.app.sweep import SURVIVORSHIP_MIN_SHARE, SWEEP_POINTS, rows_of, summarise, unit_of  # noqa: E402
from desim.models.warehouse.robot_time import STATES, WAITING  # noqa: E402
from desim.scenario import validate  # noqa: E402 -- its sections are registered: desim.app.sweep imports the runner

TIME_STATES = STATES  # the warehouse's list: what robot_time_share.<state> metrics are named by


def _load(store, run_id: str) -> tuple[dict, list[dict]]:
    run = store.get_run(run_id)
    if run.get("kind") != "sweep":
        raise ValueError(f"run {run_id} is a {run.get('kind')} run, not a sweep")
    cfg = dict(run.get("config") or {})
    cfg["name"] = run.get("scenario") or cfg.get("name", "")
    if not isinstance(cfg.get("points"), list) or not isinstance(cfg.get("paths"), list) or not cfg.get("metrics"):
        raise ValueError(f"sweep {run_id} has no points, paths or metrics in its config: not a sweep desim wrote")
    tbl = store.table(SWEEP_POINTS, run_id)
    results = tbl.to_pylist() if tbl is not None else []
    if not results:
        raise ValueError(f"sweep {run_id} has no finished runs yet")
    try:
        rows_of(results)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"sweep {run_id}: a stored result row is unreadable ({type(e).__name__}: {e})") from None
    return {**cfg, "status": run.get("status"), "scenario_text": run.get("scenario_text")}, results


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _with_unit(key: str, units: dict[str, str]) -> str:
    """``key (unit)``, or the key alone when its unit is not known."""
    unit = units.get(key, "")
    return f"{key} ({unit})" if unit else key


# -- what the answer assumes ------------------------------------------------------------------------
def _at(data: Any, path: str) -> Any:
    """The value at a dotted path with indexes (``faults[0].duration``) in plain data; None when absent."""
    cur = data
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            i = int(part[1:-1])
            cur = cur[i] if isinstance(cur, list) and i < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def _base_scenario(cfg: dict) -> tuple[dict | None, dict | None, str]:
    """The base scenario as written (TOML) and as validated (every default filled in, or None when
    it does not validate here), and a problem to state (empty when there is none)."""
    text = cfg.get("scenario_text")
    if not text:
        return None, None, "the sweep run stores no base scenario text"
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        return None, None, f"its stored base scenario is not readable TOML ({e})"
    try:
        base = Path(str(cfg.get("base") or "."))
        full = validate(raw, str(base), base.parent).model_dump(mode="json")
    except Exception:  # noqa: BLE001 -- a base that no longer validates here (a moved map): what it says is still shown
        full = None
    return raw, full, ""


def _assumptions(cfg: dict, rep: dict) -> list[str]:
    """Markdown bullets: the brain, tempo, network and faults the sweep's answer assumes."""
    raw, full, problem = _base_scenario(cfg)
    if raw is None:
        return [f"- Base scenario `{cfg.get('base', '?')}`: {problem}; brain, tempo and network unknown."]
    paths, varied, points = rep["paths"], rep["varied"], rep["points"]

    def value(path: str) -> tuple[Any, str]:
        """The value a path has in the sweep's runs and where it comes from."""
        if path in varied:
            vals = list(dict.fromkeys(json.dumps(pt["params"].get(path)) for pt in points))
            unit = unit_of(path)
            return None, "swept: " + ", ".join(str(json.loads(v)) for v in vals) + (f" {unit}" if unit else "")
        if path in paths and points:
            return points[0]["params"].get(path), "set by the sweep"
        v = _at(raw, path)
        if v is not None:
            return v, ""
        v = _at(full, path) if full is not None else None
        return (v, "the default") if v is not None else (None, "")

    def show(path: str, fmt=str) -> str | None:
        v, where = value(path)
        if v is None:
            return where or None
        return fmt(v) + (f" ({where})" if where else "")

    out = [f"Base scenario `{Path(str(cfg.get('base', '?'))).name}`"
           + (f" ({raw.get('description')})" if raw.get("description") else "") + ":"]
    if raw.get("warehouse") is not None or any(p.startswith("warehouse.") for p in paths):
        out.append(f"- **brain**: {show('warehouse.brain') or 'not set (the model default)'}; "
                   f"**tempo**: {show('warehouse.tempo') or 'not set (the model default)'}; "
                   f"robots: {show('warehouse.robots') or '?'}; "
                   "orders: " + (show("warehouse.orders.rate_per_hour", lambda v: f"{v:g} per hour")
                                 or "no [warehouse.orders] stream") + ".")
    net = []
    links_given = raw.get("links") is not None or any(p.startswith("links.") for p in paths)
    for name in ("default", "wireless"):
        pre = f"links.{name}"
        if not links_given or (_at(raw, pre) is None and not any(p.startswith(pre + ".") for p in paths)):
            if name == "wireless" and links_given:
                net.append("`links.wireless`: none (wireless links use `links.default`)")
            continue
        dist = show(f"{pre}.delay.dist") or "constant"
        mean = show(f"{pre}.delay.mean", lambda v: f"{v * 1000:g} ms") or "0 ms"
        jitter = show(f"{pre}.delay.jitter", lambda v: f"{v * 1000:g} ms")
        model = show(f"{pre}.loss.model") or "none"
        if model.startswith("none") and not any(p.startswith(pre + ".loss.") for p in paths):
            loss = "no loss"
        elif model.startswith("bernoulli"):
            loss = f"loss with probability p = {show(pre + '.loss.p')}"
        else:
            loss = f"bursty loss ({model}: p = {show(pre + '.loss.p')}, r = {show(pre + '.loss.r')})"
        net.append(f"`{pre}`: {dist} delay, mean {mean}" + (f", jitter {jitter}" if jitter else "") + f", {loss}")
    if not links_given:
        net.append("no `[links]`: every link has the defaults (no delay, no loss)")
    overrides = _at(raw, "links.override") or []
    if overrides:
        net.append(f"{len(overrides)} per-link override(s) (`links.override`)")
    out.append("- **network**: " + "; ".join(net) + ".")
    faults = raw.get("faults") or []
    until = cfg.get("until") if cfg.get("until") is not None else _at(raw, "until")
    if faults:
        descr = []
        for i, f in enumerate(faults):
            if not isinstance(f, dict):
                continue
            what = f.get("nodes") or f.get("links") or f.get("between") or f.get("groups") or ""
            what = ", ".join(map(str, what)) if isinstance(what, list) else str(what)
            at = show(f"faults[{i}].at", lambda v: f"{v:g} s") or "?"
            dur = show(f"faults[{i}].duration", lambda v: f"{v:g} s")
            descr.append(f"{f.get('kind', '?')} {what} at {at}" + (f" for {dur}" if dur else ""))
            t0 = value(f"faults[{i}].at")[0]
            if isinstance(t0, (int, float)) and isinstance(until, (int, float)) and t0 >= until:
                descr[-1] += f" (not within the runs, which end at {until:g} s: it never fires)"
        out.append("- **faults**: " + "; ".join(descr) + ".")
    else:
        out.append("- **faults**: none.")
    if full is None:
        out.append("- (the base scenario does not validate here, so unset fields are shown as not set)")
    return out


# -- the report ---------------------------------------------------------------------------------------
def _point_label(pt: dict, paths: list[str]) -> str:
    return ", ".join(f"{p}={pt['params'].get(p)}" for p in paths)


def _survivorship_note(pt: dict) -> str:
    s = pt.get("survivorship")
    if not s or not s["flagged"]:
        return ""
    backlog = f"; backlog {s['pending']:,.0f} pending" if s.get("pending") is not None else ""
    failed = f", {s['failed']:,.0f} failed" if s.get("failed") else ""
    return f"survivorship-biased: computed over the {s['completed_share']:.0%} of orders completed{backlog}{failed}"


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
    paths, metrics, units = rep["paths"], rep["metrics"], rep["units"]
    varied = rep["varied"] or paths[:1]
    numeric_paths = [p for p in varied if all(isinstance(pt["params"].get(p), (int, float))
                                              and not isinstance(pt["params"].get(p), bool) for pt in rep["points"])]
    x = rep["x"] or (numeric_paths or varied)[0]
    numeric = x in numeric_paths
    curves = rep["curves"]
    if not curves and cfg.get("design") == "lhs":  # a many-path Latin hypercube: every point against the first path
        curves = [{"label": "", "points": [pt["point"] for pt in sorted(rep["points"], key=lambda pt: pt["params"][x])]
                   if numeric else [pt["point"] for pt in rep["points"]], "knee": None, "blowups": {}, "rises": {}}]
    if not curves:  # no numeric axis: the points in their order, one line per value of the other varied paths
        groups: dict[str, list[int]] = {}
        for pt in rep["points"]:
            groups.setdefault(json.dumps([pt["params"].get(p) for p in varied[1:]]), []).append(pt["point"])
        curves = [{"label": ", ".join(f"{p}={v}" for p, v in zip(varied[1:], json.loads(k))), "points": v,
                   "knee": None, "blowups": {}, "rises": {}} for k, v in groups.items()]
    by_point = {pt["point"]: pt for pt in rep["points"]}
    level = int(rep["level"] * 100)
    latency = [m for m in metrics if m.startswith("order_latency.")]
    clipped = [m for m in metrics if rep["intervals"][m] != "student-t"]
    plain = [m for m in metrics if m not in clipped]
    lines = [f"# Sweep {run_id}: {rep['name']}", "",
             f"{rep['runs']} runs: {len(rep['points'])} points x {rep['replications']} replications "
             f"(common random numbers: replication r has seed {cfg.get('seed', 0)} + r at every point), "
             f"{cfg.get('until', '?')} simulated seconds each; status {cfg.get('status')}.", "",
             "## What this answer assumes", ""] + _assumptions(cfg, rep) + [""]
    lines += ["Intervals: " + "; ".join(
        ([f"{level}% Student-t across replications, clipped at 0 (every value is >= 0, so a negative mean is "
          f"impossible; clipping never lowers coverage) for {', '.join(clipped)}"] if clipped else [])
        + ([f"{level}% Student-t across replications for {', '.join(plain)}"] if plain else []))
        + ". Differences use the paired Student-t interval (not clipped)."]
    if latency:
        lines += ["", f"Latency percentiles cover completed orders only. A point where fewer than "
                      f"{SURVIVORSHIP_MIN_SHARE:.0%} of the orders created (all replications pooled) were completed "
                      "is flagged as survivorship-biased: the orders still pending (or failed) are left out, so under "
                      "a backlog its percentiles understate latency."]
    lines.append("")
    if rep["findings"] or rep["cautions"]:
        lines += ["## Findings", ""] + [f"- {f}" for f in rep["findings"]] + [f"- **{c}**" for c in rep["cautions"]] + [""]
    # -- each metric against the swept parameter, one curve per combination of the other varied paths
    lines += ["## Metrics", ""]
    for m in metrics:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        flagged_drawn = False
        for c in curves:
            pts = [by_point[i] for i in c["points"]]
            xs = [pt["params"][x] if numeric else str(pt["params"].get(x)) for pt in pts]
            ys = [pt["metrics"][m]["mean"] for pt in pts]
            lo, hi = [], []
            for pt in pts:
                f = pt["metrics"][m]
                mean = f["mean"]
                lo.append(0.0 if mean is None or f["low"] is None else mean - f["low"])
                hi.append(0.0 if mean is None or f["high"] is None else f["high"] - mean)
            eb = ax.errorbar(xs, [y if y is not None else math.nan for y in ys], yerr=[lo, hi], marker="o", capsize=3,
                             label=c["label"] or None)
            colour = eb[0].get_color()
            k = c.get("knee")
            if k and k["metric"] == m:
                ax.axvline(k["x"], color=colour if len(curves) > 1 else "tab:red", ls="--", lw=1,
                           label=f"knee {x}={k['x']:g}" + (f" ({c['label']})" if c["label"] else ""))
            if m in c.get("blowups", {}):
                b = c["blowups"][m]
                ax.axvline(b, color=colour if len(curves) > 1 else "tab:orange", ls=":", lw=1,
                           label=f"blow-up {x}={b:g}" + (f" ({c['label']})" if c["label"] else ""))
            if m in latency:
                bad = [(xv, y) for xv, y, pt in zip(xs, ys, pts) if y is not None and _survivorship_note(pt)]
                if bad:
                    ax.scatter([b[0] for b in bad], [b[1] for b in bad], s=140, facecolors="none", edgecolors="tab:red",
                               zorder=5, label=None if flagged_drawn else
                               f"survivorship-biased (< {SURVIVORSHIP_MIN_SHARE:.0%} of orders completed)")
                    flagged_drawn = True
        ax.set_xlabel(_with_unit(x, units))
        ax.set_ylabel(_with_unit(m, units))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        png = out / f"{m.replace('.', '_')}.png"
        fig.savefig(png)
        plt.close(fig)
        extra = m in latency
        lines += [f"### {m}", "", f"![{m}]({png.name})", "",
                  "| " + " | ".join(_with_unit(p, units) for p in paths) + f" | {_with_unit(m, units)} mean | "
                  f"{level}% interval | n |" + (" orders completed | backlog (pending per run) | note |" if extra else ""),
                  "|" + "---|" * (len(paths) + 3 + (3 if extra else 0))]
        for c in curves:
            for i in c["points"]:
                pt = by_point[i]
                f = pt["metrics"][m]
                row = ("| " + " | ".join(_fmt(pt["params"].get(p)) for p in paths)
                       + f" | {_fmt(f['mean'])} | {_fmt(f['low'])} .. {_fmt(f['high'])} | {f['n']} |")
                if extra:
                    s = pt.get("survivorship")
                    row += (f" {s['completed_share']:.0%} | {_fmt(s['pending'])} | {_survivorship_note(pt)} |" if s
                            else " - | - | no order counts |")
                lines.append(row)
        lines.append("")
    # -- paired differences
    if rep["paired"]:
        base_label = curves[0]["label"]
        lines += ["## Paired difference per point", "",
                  f"At each {x}, each curve minus the baseline `{base_label}` (the first in the sweep), replication r "
                  f"paired with the baseline's replication r (the same seed: common random numbers), {level}% paired "
                  "Student-t interval beside the unpaired (Welch) half-width it replaces.", "",
                  f"| {_with_unit(x, units)} | arm | metric | baseline mean | arm mean | difference (arm - baseline) | "
                  "interval | unpaired half-width | n | significant |", "|---|---|---|---|---|---|---|---|---|---|"]
        for d in rep["paired"]:
            lines.append(f"| {_fmt(d['x'])} | {d['label']} | {_with_unit(d['metric'], units)} | {_fmt(d['mean_a'])} | "
                         f"{_fmt(d['mean_b'])} | {_fmt(d['mean'])} | {_fmt(d['low'])} .. {_fmt(d['high'])} | "
                         f"{_fmt(d['unpaired_half_width'])} | {d['n']} | "
                         f"{'yes' if d['significant'] else 'no (could be noise)'} |")
        lines.append("")
    elif len(rep["curves"]) > 1:
        lines += ["## Paired difference per point", "",
                  "No pairs: each point needs at least 2 replications with every metric recorded.", ""]
    else:
        lines += _against_first(rep, rows, paths, varied, units)
    # -- where time goes
    lines += _robot_time(rep, rows, curves, by_point, x, out)
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def _against_first(rep: dict, rows: list[dict], paths: list[str], varied: list[str], units: dict) -> list[str]:
    """The section "Differences against the first point": every other point minus point 0, paired by replication."""
    first = rep["points"][0]
    lines = ["## Differences against the first point (paired by replication)", "",
             f"Baseline: {', '.join(p + '=' + str(first['params'].get(p)) for p in paths)}. With common random numbers, "
             "each replication of a point is paired with the baseline's replication of the same seed; the paired "
             "interval is shown beside the unpaired (Welch) half-width it replaces.", "",
             "| point | metric | difference | interval | unpaired half-width | significant |", "|---|---|---|---|---|---|"]
    base_rows = {r["rep"]: r for r in rows if r["point"] == first["point"]}
    for pt in rep["points"][1:]:
        mine = {r["rep"]: r for r in rows if r["point"] == pt["point"]}
        reps = sorted(set(base_rows) & set(mine))
        for m in rep["metrics"]:
            a = [base_rows[k].get(m) for k in reps]
            b = [mine[k].get(m) for k in reps]
            if len(reps) < 2 or any(v is None for v in a + b):
                continue
            d = paired_diff_ci(a, b, rep["level"])
            lines.append(f"| {_point_label(pt, varied)} | {_with_unit(m, units)} | {_fmt(d.mean)} | {_fmt(d.low)} .. "
                         f"{_fmt(d.high)} | {_fmt(d.unpaired_half_width)} | "
                         f"{'yes' if d.significant else 'no (could be noise)'} |")
    return lines + [""]


def _robot_time(rep: dict, rows: list[dict], curves: list[dict], by_point: dict, x: str, out: Path) -> list[str]:
    """The section "Where robots' time goes": a stacked bar per point and the bottleneck named."""
    share_keys = [f"robot_time_share.{s}" for s in TIME_STATES]
    if not any(k in rows[0] for k in share_keys):
        return []
    order = [by_point[i] for c in curves for i in c["points"]]
    many = len(curves) > 1
    labels = [f"{pt['params'].get(x)}" + (f" {c['label']}" if many else "") for c in curves
              for pt in (by_point[i] for i in c["points"])]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(order)), 3.6), dpi=110)
    bottom = [0.0] * len(order)
    table = []
    for s, k in zip(TIME_STATES, share_keys):
        vals = []
        for pt in order:
            v = [r.get(k) for r in rows if r["point"] == pt["point"] and r.get(k) is not None]
            vals.append(sum(v) / len(v) if v else 0.0)
        ax.bar(labels, vals, bottom=bottom, label=s)
        bottom = [b + v for b, v in zip(bottom, vals)]
        table.append((s, vals))
    ax.set_xlabel(x + (" and " + ", ".join(curves[0].get("group") or {}) if many and curves[0].get("group") else ""))
    ax.set_ylabel("share of robot time")
    if many:
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25 if many else -0.2))
    fig.tight_layout()
    fig.savefig(out / "robot_time.png")
    plt.close(fig)
    lines = ["## Where robots' time goes", "", "![robot time](robot_time.png)", "",
             "| state | " + " | ".join(f"{x}={lab}" for lab in labels) + " |", "|---|" + "---|" * len(labels)]
    for s, vals in table:
        lines.append(f"| {s} | " + " | ".join(f"{v:.1%}" for v in vals) + " |")
    bott = []
    for i in range(len(order)):
        waits = {s: vals[i] for s, vals in table if s in WAITING}
        bott.append(f"{x}={labels[i]}: {max(waits, key=waits.get)}")
    return lines + ["", "Bottleneck (the largest non-working state) per point: " + "; ".join(bott) + ".", ""]
