"""Runs: every run in the store with its headline figures; filter, and pick runs to compare."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import browse as B
from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import overtime as O

st.title("Runs")
rs = C.runs()
if not rs:
    C.empty("No runs in this store yet.",
            "Record one with `desim run scenarios/warehouse-small-event.toml --until 600`, "
            "or start the dashboard on another store with `desim dash --store PATH`.")
    st.stop()

df = D.runs_frame(rs)
f1, f2, f3 = st.columns(3)
kinds = f1.multiselect("Kind", sorted(df["kind"].dropna().unique()), key="runs_kind", placeholder="all kinds")
scen = f2.multiselect("Scenario", sorted(df["scenario"].dropna().unique()), key="runs_scenario",
                      placeholder="all scenarios")
stat = f3.multiselect("Status", sorted(df["status"].dropna().unique()), key="runs_status", placeholder="all statuses")
shown = df
if kinds:
    shown = shown[shown["kind"].isin(kinds)]
if scen:
    shown = shown[shown["scenario"].isin(scen)]
if stat:
    shown = shown[shown["status"].isin(stat)]

m1, m2, m3, m4 = st.columns(4)
m1.metric("Runs shown", f"{len(shown)} of {len(df)}")
m2.metric("Complete", int((shown["status"] == "complete").sum()))
m3.metric("Running", int((shown["status"] == "running").sum()))
m4.metric("Failed / crashed / interrupted", int(shown["status"].isin(["failed", "crashed", "interrupted"]).sum()))

FORMATS = {
    "started_at": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "duration_s": st.column_config.NumberColumn("wall s", format="%.1f"),
    "throughput_per_hour": st.column_config.NumberColumn("throughput/h", format="%.1f"),
    "latency_p50": st.column_config.NumberColumn("lat p50 s", format="%.1f"),
    "latency_p95": st.column_config.NumberColumn("lat p95 s", format="%.1f"),
    "latency_p99": st.column_config.NumberColumn("lat p99 s", format="%.1f"),
    "final_return": st.column_config.NumberColumn("final return", format="%.2f"),
    "env_steps_per_s": st.column_config.NumberColumn("env steps/s", format="%.0f"),
}
TITLES = {"run": "Simulation runs", "train": "Training runs", "sweep": "Sweeps"}
# one table per kind, each with its own columns: a training run has no deliveries, a simulation no return
for kind in [k for k in D.RUN_KINDS if k in set(shown["kind"])] + sorted(set(shown["kind"].dropna()) - set(D.RUN_KINDS)):
    part = shown[shown["kind"] == kind]
    cols = [c for c in D.RUN_COLUMNS.get(kind, list(part.columns)) if c != "kind"]
    part = part[cols]
    part = part.drop(columns=[c for c in part.columns if part[c].isna().all() and c not in ("run_id", "brain")])
    st.markdown(f"**{TITLES.get(kind, kind)}** ({len(part)})")
    st.dataframe(part, hide_index=True, width="stretch", key=f"runs_table_{kind}", column_config=FORMATS)

st.subheader("Compare")
ids = list(shown["run_id"])
current = [r for r in C.selected() if r in set(df["run_id"])]
options = ids + [r for r in current if r not in ids]  # a picked run stays picked while filtered out
labels = {r["run_id"]: D.run_label(r) for r in rs}
st.session_state["runs_compare"] = current  # the widget shows the shared selection, whatever page set it


def _changed() -> None:
    C.set_selected(st.session_state["runs_compare"])


st.multiselect("Runs to compare (shared with the other pages)", options, key="runs_compare",
               format_func=lambda i: labels.get(i, i), on_change=_changed,
               placeholder="pick runs; the single-run pages open the first one")
picked = df[df["run_id"].isin(C.selected())]
if picked.empty:
    st.caption("Pick runs above to compare their figures.")
else:
    by_id = {r["run_id"]: r for r in rs}
    names = O.run_labels([by_id[i] for i in picked["run_id"]], always=("scenario",))
    # every numeric figure of the picked runs' summaries, whatever their model (dotted keys: response_time.p50)
    figs = B.figures_frame([by_id[i] for i in picked["run_id"]])
    keys = B.figure_keys(figs)
    if "runs_figures" in st.session_state:
        st.session_state["runs_figures"] = [k for k in st.session_state["runs_figures"] if k in keys]
    figures = st.multiselect("Figures", keys, default=B.default_figures(keys), key="runs_figures",
                             help="every numeric figure in the picked runs' summaries, by dotted key",
                             placeholder="pick figures to compare")
    picked = picked[["run_id", "status", "scenario", "seed", "brain"]].merge(figs[["run_id"] + figures], on="run_id",
                                                                             how="left")
    picked = picked.assign(label=[names[i] for i in picked["run_id"]])
    st.dataframe(picked[["run_id", "label", "status"] + figures], hide_index=True,
                 width="stretch", key="runs_compare_table")
    for metric in figures:  # full width: a label says what differs (scenario, brain, seed, changed values)
        st.altair_chart(K.runs_bars(picked, metric), width="stretch")

with st.expander("Run details"):
    rid = st.selectbox("Run", list(df["run_id"]), format_func=lambda i: labels.get(i, i), key="runs_detail")
    run = C.run_by_id(rs, rid)
    if run is not None:
        a, b = st.columns(2)
        a.markdown("**summary**")
        a.json(run.get("summary") or {}, expanded=False)
        b.markdown("**config**")
        b.json(run.get("config") or {}, expanded=False)
        tabs = B.run_tables(D.run_tables(D.store_path(), run))
        st.markdown(f"**tables** ({len(tabs)})")
        if tabs.empty:
            st.caption("This run stored no tables" + (" yet." if run.get("status") == "running" else "."))
        else:
            st.dataframe(tabs, hide_index=True, key="runs_detail_tables",
                         column_config={"rows": st.column_config.NumberColumn("rows", format="%d")})
            st.page_link("views/tables.py", label="Preview, filter and download them on Tables",
                         icon=":material/table:", query_params={"run": rid})
        if run.get("reason"):
            st.error(run["reason"])
        if run.get("scenario_text"):
            st.code(run["scenario_text"], language="toml")
