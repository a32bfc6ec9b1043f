"""Credit: a study's results (``desim study credit|nonstationarity|pipeline``). For a credit study, the
arms (allocation methods) with their measured figures beside the qualitative ratings they test, the
convergence curves, the final return per seed, credit against true contribution (traceability) and
deliveries per hour in the tick and the event tempo; for a nonstationarity study, each switch on
against off; for a pipeline study, each agent's true contribution against the credit it was assigned."""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from desim.app.study_tables import STUDY_ARMS, STUDY_CREDIT, STUDY_CURVES, STUDY_SEEDS
from desim.dashboards import common as C
from desim.dashboards import data as D

PIPELINE = "pipeline_credit"  # written by `desim study pipeline` (may be undeclared: read_table gives empty)
MAX_POINTS = 4000  # traceability points drawn per arm (a random sample beyond that; r is over all of them)
ARMS = alt.Scale(scheme="tableau10")
ON_OFF = alt.Scale(domain=["off", "on"], range=["#9e9e9e", "#1f77b4"])
NO_SPREAD = 1e-12  # relative spread below which a vector counts as constant (r undefined, as traceability())


# --------------------------------------------------------------------------- figures


def pearson(a, b) -> float:
    """Pearson's r in float64; NaN (undefined, never 0) when either side has no spread."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = math.sqrt((dx * dx).sum()), math.sqrt((dy * dy).sum())
    scale_x, scale_y = max(1.0, float(np.abs(x).max())), max(1.0, float(np.abs(y).max()))
    if sx <= NO_SPREAD * scale_x * math.sqrt(len(x)) or sy <= NO_SPREAD * scale_y * math.sqrt(len(y)):
        return math.nan
    return float(np.clip((dx * dy).sum() / (sx * sy), -1.0, 1.0))


def r_text(r, digits: int = 2) -> str:
    return "undefined" if r is None or pd.isna(r) else f"{float(r):.{digits}f}"


def _num(v, digits: int = 2, pct: bool = False) -> str:
    if v is None or pd.isna(v):
        return "–"
    return f"{float(v):+.1%}" if pct else f"{float(v):,.{digits}f}"


def study_label(run: dict) -> str:
    cfg = run.get("config") or {}
    steps, until = cfg.get("steps"), cfg.get("until")
    length = (f"{int(steps):,} steps" if steps else f"{float(until):,.0f} simulated s" if until and
              cfg.get("study") == "pipeline" else "? steps")
    status = "" if run.get("status") == "complete" else f" · {run.get('status')}"
    return (f"{run.get('scenario') or cfg.get('file') or '?'} · {cfg.get('study', '?')} study · "
            f"{cfg.get('seeds', '?')} seed{'' if cfg.get('seeds') == 1 else 's'} · {length} · {run['run_id']}{status}")


def arms_table(arms: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: the measured figures, each quality's rating beside what measures it."""
    rows = []
    for a in arms.itertuples(index=False):
        trace = r_text(a.traceability_mean)
        if pd.notna(a.traceability_mean) and pd.notna(a.traceability_defined) and a.traceability_defined < a.seeds:
            trace += f" ({int(a.traceability_defined)} of {int(a.seeds)} seeds defined)"
        rows.append({
            "arm": a.arm, "method": a.method, "algo": a.algo, "seeds": int(a.seeds),
            "return (mean)": _num(a.return_mean), "return std": _num(a.return_std),
            "converged": "–" if pd.isna(a.converged_frac) else f"{a.converged_frac:.0%}",
            "steps to converge": "never" if pd.isna(a.steps_to_converge_mean) else f"{a.steps_to_converge_mean:,.0f}",
            "stability (rated)": a.rated_stability or "",
            "traceability r": trace, "pooled r": r_text(a.traceability_pooled_mean),
            "traceability (rated)": a.rated_traceability or "",
            "train s / 10k steps": _num(getattr(a, "train_s_per_10k", None), 2), "params": "–" if pd.isna(a.params) else f"{int(a.params):,}",
            "config lines": "–" if pd.isna(a.config_lines) else str(int(a.config_lines)),
            "complexity (rated)": a.rated_complexity or "",
            "deliveries/h tick": _num(a.dph_tick_mean, 1), "deliveries/h event": _num(a.dph_event_mean, 1),
            "production gap": _num(a.production_gap_mean, pct=True)})
    out = pd.DataFrame(rows)
    if not out.empty and (out["method"] == out["arm"]).all():  # columns that would only repeat: left out
        out = out.drop(columns="method")
    if not out.empty and out["algo"].nunique() == 1:
        out = out.drop(columns="algo")
    return out


def curve_bands(curves: pd.DataFrame) -> pd.DataFrame:
    """Per arm and step: the mean across seeds, the min–max and the ± std band, and how many seeds."""
    if curves.empty:
        return pd.DataFrame(columns=["arm", "step", "mean", "lo", "hi", "std_lo", "std_hi", "n"])
    g = curves.groupby(["arm", "step"], sort=True)["eval_return"]
    out = g.agg(mean="mean", lo="min", hi="max", std="std", n="count").reset_index()
    sd = out["std"].fillna(0.0)
    return out.assign(std_lo=out["mean"] - sd, std_hi=out["mean"] + sd).drop(columns="std")


def curves_chart(bands: pd.DataFrame, order: list[str], band: str, title: str) -> alt.Chart:
    lo, hi = ("lo", "hi") if band == "min–max" else ("std_lo", "std_hi")
    colour = alt.Color("arm:N", scale=ARMS, sort=order, legend=alt.Legend(title=None, orient="bottom"))
    x = alt.X("step:Q", title="environment steps")
    area = alt.Chart(bands).mark_area(opacity=0.18).encode(x=x, y=alt.Y(f"{lo}:Q", title="held-out return"),
                                                           y2=f"{hi}:Q", color=colour)
    line = alt.Chart(bands).mark_line(point=True, strokeWidth=2).encode(
        x=x, y="mean:Q", color=colour,
        tooltip=["arm:N", "step:Q", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip(f"{lo}:Q", format=".3f"),
                 alt.Tooltip(f"{hi}:Q", format=".3f"), "n:Q"])
    return alt.layer(area, line).properties(height=300, title=title)


def seeds_chart(seeds: pd.DataFrame, order: list[str], title: str) -> alt.Chart:
    y = alt.Y("arm:N", title=None, sort=order)
    x = alt.X("final_return:Q", title="final held-out return")
    box = alt.Chart(seeds).mark_boxplot(opacity=0.35, size=18, extent="min-max").encode(
        x=x, y=y, color=alt.Color("arm:N", scale=ARMS, sort=order, legend=None))
    pts = alt.Chart(seeds).mark_circle(size=70, opacity=0.9).encode(
        x=x, y=y, color=alt.Color("arm:N", scale=ARMS, sort=order, legend=None),
        tooltip=["arm:N", "seed:Q", alt.Tooltip("final_return:Q", format=".3f"), "converged:N"])
    return alt.layer(box, pts).properties(height=alt.Step(34), title=title)


def trace_chart(points: pd.DataFrame, title: str) -> alt.Chart:
    pts = points if len(points) <= MAX_POINTS else points.sample(MAX_POINTS, random_state=0)
    base = alt.Chart(pts)
    dots = base.mark_circle(size=28, opacity=0.55).encode(
        x=alt.X("true:Q", title="true contribution (re-simulated)"),
        y=alt.Y("assigned:Q", title="credit assigned"),
        color=alt.Color("seed:N", scale=ARMS, legend=alt.Legend(title="seed", orient="bottom")),
        tooltip=["seed:Q", "episode:Q", "robot:Q", alt.Tooltip("true:Q", format=".3f"),
                 alt.Tooltip("assigned:Q", format=".3f")])
    return dots.properties(height=320, title=title)  # the plot and its legend below


def production_chart(arms: pd.DataFrame, order: list[str], title: str) -> alt.Chart:
    long = arms.melt(id_vars=["arm", "production_gap_mean"], value_vars=["dph_tick_mean", "dph_event_mean"],
                     var_name="tempo", value_name="deliveries_per_hour")
    long["tempo"] = long["tempo"].map({"dph_tick_mean": "tick", "dph_event_mean": "event (network latency)"})
    long["gap"] = long["production_gap_mean"].map(lambda g: _num(g, pct=True))
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("arm:N", title=None, sort=order), yOffset=alt.YOffset("tempo:N", sort=["tick"]),
        x=alt.X("deliveries_per_hour:Q", title="deliveries per hour"),
        color=alt.Color("tempo:N", scale=alt.Scale(domain=["tick", "event (network latency)"],
                                                   range=["#9e9e9e", "#ff7f0e"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["arm:N", "tempo:N", alt.Tooltip("deliveries_per_hour:Q", format=",.1f"),
                 alt.Tooltip("gap:N", title="production gap")],
    ).properties(height=alt.Step(14), title=title)


def switch_pairs(arms: pd.DataFrame, controls: dict | None = None) -> pd.DataFrame:
    """Per switch, the 'on' arm beside the arm it is compared with: its ``controls`` entry (arm -> control
    arm, from a ``control`` column or the run's config) when known, else the switch's own 'off' arm, else
    the all-off baseline (the 'off' arm that names no switch)."""
    sw = arms.assign(switch=arms["switch"].fillna(""), setting=arms["setting"].fillna(""))
    if controls is None and "control" in sw.columns:
        controls = {a: c for a, c in zip(sw["arm"], sw["control"].fillna("")) if c}
    controls = controls or {}
    baseline = sw[(sw["switch"].isin(["", "none", "baseline"])) & (sw["setting"] != "on")]
    rows = []
    for name in dict.fromkeys(s for s in sw["switch"] if s not in ("", "none", "baseline")):
        mine = sw[sw["switch"] == name]
        on = mine[mine["setting"] == "on"]
        control = controls.get(on["arm"].iloc[0]) if not on.empty else None
        off = sw[sw["arm"] == control] if control else mine[mine["setting"] == "off"]
        if off.empty:
            off = mine[mine["setting"] == "off"]
        if off.empty:
            off = baseline
        row: dict = {"switch": name}
        for setting, part in (("on", on), ("off", off)):
            if part.empty:
                continue
            a = part.iloc[0]
            row[f"arm · {setting}"] = a["arm"]
            row[f"steps to converge · {setting}"] = ("never" if pd.isna(a["steps_to_converge_mean"])
                                                     else f"{a['steps_to_converge_mean']:,.0f}")
            row[f"return · {setting}"] = _num(a["return_mean"])
            row[f"return std · {setting}"] = _num(a["return_std"])
            row[f"converged · {setting}"] = "–" if pd.isna(a["converged_frac"]) else f"{a['converged_frac']:.0%}"
            row[f"production gap · {setting}"] = _num(a["production_gap_mean"], pct=True)
        rows.append(row)
    return pd.DataFrame(rows)


def config_controls(cfg: dict) -> dict | None:
    """arm -> control arm, when the study's config lists its arms with their controls."""
    arms = cfg.get("arms")
    if isinstance(arms, list):
        out = {a.get("name") or a.get("arm"): a.get("control") for a in arms if isinstance(a, dict)}
        return {k: v for k, v in out.items() if k and v} or None
    return cfg.get("controls") if isinstance(cfg.get("controls"), dict) else None


def switch_long(arms: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs' arms, one row per (switch, on|off), with the figures the on/off charts draw."""
    by_arm = arms.set_index("arm")
    out = []
    for p in pairs.to_dict("records"):
        for setting in ("on", "off"):
            arm = p.get(f"arm · {setting}")
            if not isinstance(arm, str) or arm not in by_arm.index:
                continue
            a = by_arm.loc[arm]
            out.append({"switch": p["switch"], "setting": setting, "arm": arm,
                        "steps_to_converge": a["steps_to_converge_mean"], "return_std": a["return_std"],
                        "converged_frac": a["converged_frac"], "production_gap": a["production_gap_mean"]})
    return pd.DataFrame(out)


def on_off_chart(long: pd.DataFrame, field: str, title: str, axis_format: str | None = None) -> alt.Chart:
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("switch:N", title=None), yOffset=alt.YOffset("setting:N", sort=["off", "on"]),
        x=alt.X(f"{field}:Q", title=title, axis=alt.Axis(format=axis_format) if axis_format else alt.Axis()),
        color=alt.Color("setting:N", scale=ON_OFF, legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["switch:N", "setting:N", "arm:N", alt.Tooltip(f"{field}:Q", format=axis_format or ",.3f")],
    ).properties(height=alt.Step(14), title=title)


def pipeline_agents(rows: pd.DataFrame) -> pd.DataFrame:
    """Per agent: orders, true contribution and the credit global and local allocation assigned (means)."""
    g = rows.groupby("agent", sort=True)
    return pd.DataFrame({"orders": g["order"].nunique(), "true (mean)": g["true"].mean(),
                         "assigned global (mean)": g["assigned_global"].mean(),
                         "assigned local (mean)": g["assigned_local"].mean(), "true (sum)": g["true"].sum(),
                         "assigned global (sum)": g["assigned_global"].sum(),
                         "assigned local (sum)": g["assigned_local"].sum()}).reset_index()


# --------------------------------------------------------------------------- the page sections


def credit_study(run: dict, arms: pd.DataFrame, rid: str, ver: tuple) -> None:
    order = list(arms["arm"])
    seeds = C.table(STUDY_SEEDS.name, [rid], ver=ver)
    st.subheader("Arms: measured against rated")
    st.dataframe(arms_table(arms), hide_index=True, width="stretch", key="credit_arms")
    st.caption("Each quality's rating (what the study tests) sits right of the figures that measure it: "
               "stability (return std across seeds, converged fraction, steps to converge), traceability "
               "(Pearson r of assigned credit against true contribution within episodes, mean over the seeds where "
               "it is defined, and pooled over every robot-episode; "
               "'undefined' when credit or contribution has no spread, never 0), complexity (training wall seconds "
               "per 10,000 env steps, parameters, config lines). Production gap: deliveries/h in the event tempo over the tick tempo, − 1.")
    _curves_and_seeds(rid, ver, order, seeds, "credit")

    st.subheader("Traceability: credit assigned against true contribution")
    credit = C.table(STUDY_CREDIT.name, [rid], ver=ver)
    if credit.empty:
        C.empty("This study recorded no per-robot credit (the `study_credit` table is empty).")
    else:
        by_arm = arms.set_index("arm")
        shown = [a for a in order if a in set(credit["arm"])]
        cols = st.columns(min(2, len(shown)) or 1)
        for i, arm in enumerate(shown):
            pts = credit[credit["arm"] == arm]
            if arm in by_arm.index:
                r, pooled = by_arm.loc[arm, "traceability_mean"], by_arm.loc[arm, "traceability_pooled_mean"]
            else:  # an arm without a summary row: r over its points
                r = pooled = pearson(pts["assigned"], pts["true"])
            title = f"{arm}: r = {r_text(r)} · pooled {r_text(pooled)}"
            cols[i % len(cols)].altair_chart(trace_chart(pts, title), width="stretch")
        st.caption("One point per robot and episode. r: the Pearson correlation of assigned credit and true "
                   "contribution within episodes, averaged over the seeds where it is defined; pooled: every robot "
                   "of every episode one point. Undefined (never 0) when the credit or the contribution has no "
                   "spread, e.g. a global reward, which credits every robot of an episode alike.")

    st.subheader("Performance: tick against event tempo")
    st.altair_chart(production_chart(arms, order, "deliveries per hour per arm: tick vs event tempo"),
                    width="stretch")
    st.caption("The production gap (event / tick − 1, negative: deliveries lost to network latency) per arm: "
               + ", ".join(f"{a.arm} {_num(a.production_gap_mean, pct=True)}" for a in arms.itertuples(index=False))
               + ".")


def _curves_and_seeds(rid: str, ver: tuple, order: list[str], seeds: pd.DataFrame, key: str) -> None:
    st.subheader("Convergence")
    band = st.segmented_control("band across seeds", ["min–max", "± std"], default="min–max",
                                key=f"{key}_band") or "min–max"
    curves = C.table(STUDY_CURVES.name, [rid], ver=ver)
    c1, c2 = st.columns([3, 2])
    if curves.empty:
        c1.caption("No learning curves recorded.")
    else:
        c1.altair_chart(curves_chart(curve_bands(curves), order, band,
                                     f"held-out return per arm (mean across seeds, band {band})"), width="stretch")
    if seeds.empty:
        c2.caption("No per-seed results recorded.")
    else:
        c2.altair_chart(seeds_chart(seeds, order, "final return per seed (stability)"), width="stretch")


def nonstationarity_study(run: dict, arms: pd.DataFrame, rid: str, ver: tuple) -> None:
    pairs = switch_pairs(arms, config_controls(run.get("config") or {}))
    st.subheader("Each switch on against off")
    if pairs.empty:
        C.empty("This study's arms name no switch (`switch` and `setting` columns empty).")
    else:
        st.dataframe(pairs, hide_index=True, width="stretch", key="ns_pairs")
        long = switch_long(arms, pairs)
        cols = st.columns(3)
        cols[0].altair_chart(on_off_chart(long, "steps_to_converge", "steps to converge (speed)"), width="stretch")
        cols[1].altair_chart(on_off_chart(long, "return_std", "return std across seeds (stability)"),
                             width="stretch")
        cols[2].altair_chart(on_off_chart(long, "production_gap", "production gap, event vs tick", ".0%"),
                             width="stretch")
        st.caption("Speed: mean steps until the held-out return converged (seeds that never converged are left "
                   "out; 'never' when none did). Stability: the final return's std across seeds and the fraction "
                   "of seeds that converged. Production gap: deliveries/h in the event tempo over the tick tempo, − 1.")
    st.subheader("All arms")
    st.dataframe(arms_table(arms).drop(columns=["stability (rated)", "traceability (rated)", "complexity (rated)"]),
                 hide_index=True, width="stretch", key="ns_arms")
    _curves_and_seeds(rid, ver, list(arms["arm"]), C.table(STUDY_SEEDS.name, [rid], ver=ver), "ns")


def pipeline_study(run: dict, rid: str, ver: tuple) -> None:
    rows = C.table(PIPELINE, [rid], ver=ver)
    if rows.empty:
        C.empty(f"Pipeline study `{rid}` has no `{PIPELINE}` rows ({run.get('status')}).")
        return
    m = st.columns(4)
    m[0].metric("Orders", f"{rows[['seed', 'order']].drop_duplicates().shape[0]:,}")
    m[1].metric("Agents", f"{rows['agent'].nunique()}")
    summary = run.get("summary") or {}  # the study's own figures when it stored them, else r over the rows
    r_g, r_l = (summary[f"traceability_{s}"] if f"traceability_{s}" in summary else
                pearson(rows[f"assigned_{s}"], rows["true"]) for s in ("global", "local"))
    m[2].metric("Traceability r · global", r_text(r_g))
    m[3].metric("Traceability r · local", r_text(r_l))
    if "outcome" in rows.columns:
        counts = rows.drop_duplicates(["seed", "order"])["outcome"].value_counts()
        st.caption("Outcomes: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    st.subheader("Per agent: true contribution against assigned credit")
    agents = pipeline_agents(rows)
    st.dataframe(agents, hide_index=True, width="stretch", key="pipe_agents")
    long = agents.melt(id_vars=["agent"], value_vars=["true (mean)", "assigned global (mean)", "assigned local (mean)"],
                       var_name="what", value_name="value")
    st.altair_chart(alt.Chart(long).mark_bar().encode(
        y=alt.Y("agent:N", title=None), yOffset=alt.YOffset("what:N", sort=["true (mean)"]),
        x=alt.X("value:Q", title="per order (mean)"),
        color=alt.Color("what:N", scale=alt.Scale(domain=["true (mean)", "assigned global (mean)", "assigned local (mean)"],
                                                  range=["#2ca02c", "#9e9e9e", "#1f77b4"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["agent:N", "what:N", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=alt.Step(14), title="per agent: true contribution vs credit (global, local)"), width="stretch")
    st.subheader("Traceability")
    cols = st.columns(2)
    for col, (name, field, r) in zip(cols, (("global", "assigned_global", r_g), ("local", "assigned_local", r_l))):
        pts = rows.rename(columns={field: "assigned"})[["seed", "order", "agent", "true", "assigned"]]
        pts = pts if len(pts) <= MAX_POINTS else pts.sample(MAX_POINTS, random_state=0)
        col.altair_chart(alt.Chart(pts).mark_circle(size=30, opacity=0.55).encode(
            x=alt.X("true:Q", title="true contribution"), y=alt.Y("assigned:Q", title=f"credit assigned ({name})"),
            color=alt.Color("agent:N", scale=ARMS, legend=alt.Legend(title=None, orient="bottom")),
            tooltip=["seed:Q", "order:N", "agent:N", alt.Tooltip("true:Q", format=".3f"),
                     alt.Tooltip("assigned:Q", format=".3f")],
        ).properties(height=260, title=f"{name} allocation: r = {r_text(r)}"), width="stretch")
    st.caption("One point per agent and order. r: Pearson correlation over every point; undefined when the credit "
               "or the contribution has no spread (a global allocation credits every agent alike), never 0.")


# --------------------------------------------------------------------------- the page

st.title("Credit")
rs = C.runs()
studies = [r for r in rs if r.get("kind") == "study"]
if not studies:
    C.empty(f"No studies in this store yet: run `desim study credit scenarios/train-tiny.toml --store "
            f"{D.store_path()}`.",
            "A credit study trains each credit-allocation method (global, difference, VDN, shaped) over several "
            "seeds and measures convergence, stability, traceability and the production gap; "
            "`desim study nonstationarity SCENARIO` measures each nonstationarity switch on and off.")
    st.stop()

ids = [r["run_id"] for r in studies]  # newest first, as the store lists them
labels = {r["run_id"]: study_label(r) for r in studies}
picked = [i for i in C.selected() if i in ids]
if "credit_run" in st.session_state and st.session_state["credit_run"] not in ids:
    del st.session_state["credit_run"]
rid = st.selectbox("Study", ids, index=ids.index(picked[0]) if picked else 0, key="credit_run",
                   format_func=lambda i: labels.get(i, i))
run = C.run_by_id(studies, rid)
cfg = run.get("config") or {}
kind = cfg.get("study") or "?"
ver = C.version(rs)

if kind == "pipeline":
    pipeline_study(run, rid, ver)
    st.stop()

arms = C.table(STUDY_ARMS.name, [rid], ver=ver)
if arms.empty:
    C.empty(f"Study `{rid}` has no results yet ({run.get('status')}).",
            "A study writes its arms when every seed has trained; reload when it has finished.")
    st.stop()
arms = arms.sort_values("arm", key=lambda s: s.map({a: i for i, a in enumerate(dict.fromkeys(arms["arm"]))}))

m = st.columns(4)
m[0].metric("Arms", f"{len(arms)}")
m[1].metric("Seeds per arm", f"{cfg.get('seeds') or int(arms['seeds'].max())}")
m[2].metric("Steps per run", f"{int(cfg['steps']):,}" if cfg.get("steps") else "–")
best = arms.loc[arms["return_mean"].idxmax()] if arms["return_mean"].notna().any() else None
m[3].metric("Best final return", "–" if best is None else f"{best['return_mean']:.2f}",
            help=None if best is None else f"arm {best['arm']}")
algos = cfg.get("algos") or []
algos = algos if isinstance(algos, str) else ", ".join(map(str, algos))
st.caption(f"`{cfg.get('file') or run.get('scenario')}`, algorithms {algos or '?'}; "
           f"{kind} study, {run.get('status')}.")

if kind == "nonstationarity":
    nonstationarity_study(run, arms, rid, ver)
else:
    credit_study(run, arms, rid, ver)
