"""Faults: a failure suite's results (``desim eval SCENARIO --suite faults``): the table of cases against
the clean baseline, guard on against guard off side by side, and the guard's decisions over time in one
case (blocked calls, retries, rejections, the breaker's state, the kill switch), its fault window shaded."""
from __future__ import annotations

import json

import altair as alt
import pandas as pd
import streamlit as st

from desim.app.eval import EVAL_CASES, EVAL_GUARD, EVAL_WINDOWS
from desim.dashboards import common as C
from desim.dashboards import data as D

BIN_S = 30.0  # seconds per bar in the decisions-over-time charts
SHOWN = {  # decision -> what the chart calls it (the routine allowed/pass rows are not stored)
    "blocked": "blocked", "quarantine": "kill switch", "quarantined": "refused (quarantined)", "retry": "retry",
    "reject": "rejected payload", "error": "failed attempt", "short_circuit": "breaker refused", "give_up": "gave up",
    "fallback": "safe default", "direct": "failed call (guard off)"}
BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}
FAULT = "#d62728"


def _pct(v, base) -> str:
    if v is None or pd.isna(v):
        return "–"
    if base is None or pd.isna(base) or base == 0:
        return C.fmt(float(v), 1)
    return f"{v:,.1f} ({(v - base) / base:+.0%})"


def _safeguards(text) -> str:
    try:
        items = json.loads(text or "[]")
    except (TypeError, ValueError):
        return ""
    return ", ".join(f"{s['name']} {'✓' if s['ok'] else '✗'}" for s in items)


def suite_table(cases: pd.DataFrame) -> pd.DataFrame:
    """The suite's table as the CLI prints it: one row per case and arm."""
    rows = []
    for r in cases.itertuples(index=False):
        harm = ", ".join(f"{n} {int(getattr(r, k))}" for k, n in (("unauthorized_executed", "unauthorized executed"),
                                                                  ("mispriced", "mispriced"))
                         if pd.notna(getattr(r, k)) and getattr(r, k)) or "–"
        rows.append({"case": r.case, "arm": r.arm, "passed": bool(r.passed),
                     "throughput/h (vs base)": _pct(r.throughput, r.base_throughput),
                     "latency p50 s (vs base)": _pct(r.latency_p50, r.base_latency_p50),
                     "retries": int(r.retries), "retry bound": int(r.retry_bound), "deadlocks": int(r.deadlocks),
                     "done/failed/pending": f"{int(r.completed)}/{int(r.failed)}/{int(r.pending)}", "lost": int(r.lost),
                     "harm": harm, "safeguards": _safeguards(r.safeguards), "why not passed": r.failures or ""})
    return pd.DataFrame(rows)


def side_by_side(cases: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Per case, the headline figures of each arm in adjacent columns."""
    out = []
    for case, grp in cases.groupby("case", sort=False):
        row: dict = {"case": case}
        for arm in arms:
            a = grp[grp["arm"] == arm]
            if a.empty:
                continue
            a = a.iloc[0]
            row[f"throughput/h · {arm}"] = None if pd.isna(a["throughput"]) else round(float(a["throughput"]), 1)
            row[f"failed orders · {arm}"] = int(a["failed"])
            row[f"lost · {arm}"] = int(a["lost"])
            row[f"unauthorized executed · {arm}"] = int(a["unauthorized_executed"])
            row[f"passed · {arm}"] = bool(a["passed"])
        out.append(row)
    return pd.DataFrame(out)


def decision_bins(rows: pd.DataFrame, t_end: float) -> pd.DataFrame:
    """Decisions per ``BIN_S`` seconds (guard off: only the calls that failed)."""
    d = rows[rows["decision"].isin(list(SHOWN))]
    d = d[(d["decision"] != "direct") | (d["reason"].fillna("") != "")]
    if d.empty:
        return pd.DataFrame(columns=["t", "what", "count"])
    d = d.assign(t=(d["t"] // BIN_S) * BIN_S, what=d["decision"].map(SHOWN))
    return d.groupby(["t", "what"]).size().reset_index(name="count")


def breaker_steps(rows: pd.DataFrame, t_end: float) -> pd.DataFrame:
    """Each tool's breaker state over time (closed 0, half-open 1, open 2), as steps from 0 to ``t_end``."""
    moves = rows[rows["decision"].str.startswith("breaker_")].sort_values("t", kind="stable")
    out = []
    for tool, grp in moves.groupby("tool"):
        out.append({"tool": tool, "t": 0.0, "state": "closed", "level": 0})
        for r in grp.itertuples(index=False):
            state = r.decision.removeprefix("breaker_")
            out.append({"tool": tool, "t": float(r.t), "state": state, "level": BREAKER_LEVEL.get(state, 0)})
        out.append({**out[-1], "t": t_end})
    return pd.DataFrame(out, columns=["tool", "t", "state", "level"])


def _height(plot: int, legend_rows: int) -> int:
    """Streamlit fits a chart, legend included, into its height: add the legend's rows to keep the plot's."""
    return plot + 70 + 20 * legend_rows


def _window_layer(window: pd.DataFrame, t_end: float) -> list:
    if window.empty:
        return []
    w = window.assign(end=window["end"].clip(upper=t_end))
    return [alt.Chart(w).mark_rect(opacity=0.13, color=FAULT).encode(
        x="start:Q", x2="end:Q", tooltip=["case:N", "kind:N", "start:Q", "end:Q"])]


def decisions_chart(bins: pd.DataFrame, window: pd.DataFrame, t_end: float, title: str) -> alt.Chart:
    x = alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end], nice=False))
    bars = alt.Chart(bins).mark_bar(size=6).encode(
        x=x, y=alt.Y("count:Q", title=f"decisions per {BIN_S:g} s", stack=True),
        color=alt.Color("what:N", scale=alt.Scale(scheme="tableau10"), legend=alt.Legend(title=None, orient="bottom", columns=2)),
        tooltip=["what:N", alt.Tooltip("t:Q", format=".0f"), "count:Q"])
    rows = -(-bins["what"].nunique() // 2) if not bins.empty else 0
    return alt.layer(*_window_layer(window, t_end), bars).properties(height=_height(180, rows), title=title)


def breaker_chart(steps: pd.DataFrame, quarantines: pd.DataFrame, window: pd.DataFrame, t_end: float,
                  title: str) -> alt.Chart:
    x = alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end], nice=False))
    layers = _window_layer(window, t_end)
    if not steps.empty:
        layers.append(alt.Chart(steps).mark_line(interpolate="step-after", strokeWidth=2).encode(
            x=x, y=alt.Y("level:Q", title="breaker", scale=alt.Scale(domain=[0, 2]),
                         axis=alt.Axis(values=[0, 1, 2], labelExpr="['closed', 'half-open', 'open'][datum.value]")),
            color=alt.Color("tool:N", legend=alt.Legend(title=None, orient="bottom", columns=1)),
            tooltip=["tool:N", "state:N", alt.Tooltip("t:Q", format=".1f")]))
    if not quarantines.empty:
        layers.append(alt.Chart(quarantines).mark_rule(color="black", strokeDash=[4, 3]).encode(
            x=x, tooltip=["agent:N", alt.Tooltip("t:Q", format=".1f"), "reason:N"]))
    if not layers:
        layers = [alt.Chart(pd.DataFrame({"t": [0.0]})).mark_point(opacity=0).encode(x=x)]
    tools = steps["tool"].nunique() if not steps.empty else 0
    return alt.layer(*layers).properties(height=_height(150, tools), title=title)


# --------------------------------------------------------------------------- the page

st.title("Faults")
rs = C.runs()
evals = [r for r in rs if r.get("kind") == "eval"]
if not evals:
    C.empty(f"No failure suites in this store yet: run `desim eval scenarios/warehouse-pipeline.toml --guard both "
            f"--store {D.store_path()}`.",
            "The suite runs a dozen tool, data and network faults against the clean baseline with the same seed, "
            "with the tool guard on and off, and checks that no order is lost and every safeguard fires.")
    st.stop()

run = C.pick_run("Suite run", evals, key="faults_run", needs="failure-suite results")
rid = run["run_id"]
cfg = run.get("config") or {}
t_end = float(cfg.get("until") or 1.0)
cases = C.table(EVAL_CASES.name, [rid])
if cases.empty:
    C.empty(f"Suite run `{rid}` has no results ({run.get('status')}).")
    st.stop()
guard_rows = C.table(EVAL_GUARD.name, [rid])
windows = C.table(EVAL_WINDOWS.name, [rid])
arms = list(dict.fromkeys(cases["arm"]))

passed = int(cases["passed"].sum())
m = st.columns(4)
m[0].metric("Cases", f"{cases['case'].nunique() - int('baseline' in set(cases['case']))}")
m[1].metric("Runs (case × arm)", f"{len(cases)}")
m[2].metric("Passed", f"{passed} of {len(cases)}")
m[3].metric("Orders lost", f"{int(cases['lost'].sum())}", help="must be zero: every order completed, failed with a reason, or pending")
st.caption(f"`{run.get('scenario')}`, seed {run.get('seed')}, {C.fmt(t_end, 0)} simulated s per run; every case shares "
           f"its baseline's seed (common random numbers); arms: {', '.join(arms)}.")
if passed < len(cases):
    bad = cases[~cases["passed"]]
    st.error("Failed: " + "; ".join(f"{r.case} ({r.arm}): {r.failures}" for r in bad.itertuples(index=False)),
             icon=":material/error:")

st.subheader("The suite")
st.dataframe(suite_table(cases), hide_index=True, use_container_width=True)

if len(arms) > 1:
    st.subheader("Guard on against guard off" if {"guard on", "guard off"} <= set(arms) else "Arms side by side")
    st.dataframe(side_by_side(cases, arms), hide_index=True, use_container_width=True)
    delta = cases[cases["case"] != "baseline"].assign(
        change=lambda d: (d["throughput"] - d["base_throughput"]) / d["base_throughput"].where(d["base_throughput"] != 0))
    st.altair_chart(alt.Chart(delta).mark_bar().encode(
        y=alt.Y("case:N", title=None, sort=None), yOffset="arm:N",
        x=alt.X("change:Q", title="throughput against its baseline", axis=alt.Axis(format="%")),
        color=alt.Color("arm:N", legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["case:N", "arm:N", alt.Tooltip("change:Q", format="+.1%"), "throughput:Q", "base_throughput:Q"],
    ).properties(title="throughput change per case and arm", height=alt.Step(10)), use_container_width=True)

st.subheader("The guard's decisions over time")
names = [c for c in dict.fromkeys(cases["case"]) if c != "baseline"] or ["baseline"]
case = st.selectbox("Case", names, key="faults_case",
                    format_func=lambda c: f"{c}: {cases[cases['case'] == c]['what'].iloc[0]}")
window = windows[windows["case"] == case] if not windows.empty else windows
case_arms = [a for a in arms if a in set(cases[cases["case"] == case]["arm"])]  # the arms this case ran in
cols = st.columns(len(case_arms))
for col, arm in zip(cols, case_arms):
    rows = guard_rows[(guard_rows["case"] == case) & (guard_rows["arm"] == arm)] if not guard_rows.empty else guard_rows
    with col:
        st.markdown(f"**{arm}**")
        if rows.empty:
            st.caption("no guard decisions besides allowed calls that passed")
            continue
        st.altair_chart(decisions_chart(decision_bins(rows, t_end), window, t_end, f"{case}: decisions ({arm})"),
                        use_container_width=True)
        q = rows[rows["decision"] == "quarantine"][["t", "agent", "reason"]]
        if arm != "guard off":
            st.altair_chart(breaker_chart(breaker_steps(rows, t_end), q, window, t_end,
                                          f"{case}: breakers and kill switch ({arm})"), use_container_width=True)
        counts = rows["decision"].value_counts()
        st.caption(" · ".join(f"{SHOWN.get(k, k)} {v:,}" for k, v in counts.items()))
