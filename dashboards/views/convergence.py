"""Convergence: training curves grouped as TensorBoard and W&B group them (scenario, algorithm and
settings), mean and a band across each group's seeds, seeds on or off, smoothing, the rollback gate's
decisions on the curve, live while training writes. See dashboards/groups.py for what a group is."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import groups as G

st.title("Convergence")

train = [r for r in C.runs() if r.get("kind") == "train"]
if not train:
    C.empty("No training runs yet: run `desim train …`.",
            "Training runs write their curves (return, loss, entropy, value error, per-agent credit) "
            "to the store's `train_curves` table; this page draws them, live while they train.")

    @st.fragment(run_every=10.0)
    def wait_for_training() -> None:  # the first training run shows up without a reload
        if any(r.get("kind") == "train" for r in C.runs()):
            st.rerun()

    wait_for_training()
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
axis = c1.segmented_control("x axis", ["environment steps", "wall time"], default="environment steps",
                            key="conv_axis") or "environment steps"
band = c2.segmented_control("band across seeds", ["min–max", "± std"], default="min–max", key="conv_band") or "min–max"
weight = c3.slider("smoothing", 0.0, 0.99, 0.6, 0.01, key="conv_smooth",
                   help="an exponential moving average per run, as TensorBoard's (0: the raw curve)")
any_running = any(r.get("status") == "running" for r in train)
live = c4.toggle("live", value=True, key="conv_live",
                 help="re-read the store every 2 s while a run is training (every 10 s otherwise)")
d1, d2 = st.columns(2)
show_seeds = d1.toggle("individual seeds", value=False, key="conv_seeds", help="each run's own curve, thin")
show_left = d2.toggle("unfinished runs (marked, not averaged)", value=True, key="conv_unfinished",
                      help="interrupted, failed and crashed runs never count in a group's mean; shown dashed")


@st.cache_data(show_spinner=False, max_entries=16)
def _shaped(ver: tuple, groups, metrics: tuple, weight: float, x: str, band: str, show_left: bool):
    """The drawn metrics smoothed, each group's mean and band, the seeds' lines and the gate's marks
    (cached: moving a control that changes none of these reruns nothing heavy)."""
    curves = C.table("train_curves", list(groups["run_id"]), ver=ver)
    sm = G.smoothed(curves[curves["metric"].isin(metrics)], weight, x="step")
    bands = G.group_bands(sm, groups, x=x, band="std" if band == "± std" else "minmax")
    lines = G.seed_lines(sm, groups)
    shown = groups if show_left else groups[groups["finished"]]
    if not show_left:
        lines = lines[lines["finished"]]
    marks = G.promotion_marks(C.table("promotions", list(shown["run_id"]), ver=ver), shown, curves, x=x)
    return bands, lines, marks


@st.fragment(run_every=(2.0 if any_running else 10.0) if live else None)
def curves_panel() -> None:
    rs = C.runs()  # re-read: new runs and status changes show up without a page reload
    tr = [r for r in rs if r.get("kind") == "train"]
    if live and any(r.get("status") == "running" for r in tr) != any_running:
        st.rerun()  # a run started or ended: rerun the page so the refresh rate follows
    ver = C.version(rs)
    groups = G.group_runs(tr)
    scenarios = sorted(groups["scenario"].unique())
    chosen_scen = st.multiselect("Scenarios", scenarios, default=scenarios, key="conv_scenarios")
    in_scen = groups[groups["scenario"].isin(chosen_scen)]
    names = sorted(in_scen["group"].unique())
    chosen = st.multiselect("Groups (scenario · algorithm · settings hash, overlaid)", names, default=names,
                            key="conv_groups")
    groups = in_scen[in_scen["group"].isin(chosen)]
    table = G.group_table(groups)
    st.dataframe(table, hide_index=True, width="stretch", key="conv_group_table",
                 column_config={"seeds": st.column_config.NumberColumn("seeds", help="finished or running runs, "
                                                                       "averaged in the curve")})
    curves = C.table("train_curves", list(groups["run_id"]), ver=ver)
    running = [r for r in tr if r.get("status") == "running"]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Training runs", len(tr))
    m2.metric("Running now", len(running))
    m3.metric("Groups", len(table))
    live_ids = {r["run_id"] for r in running}
    last = curves.groupby("run_id")["step"].max() if not curves.empty else {}
    if live_ids and len(last):
        last = last[last.index.isin(live_ids)]  # while training, the newest step of the running runs
    m4.metric("Latest step" + (" (running)" if running else ""), f"{int(max(last.values)) if len(last) else 0:,}")
    if curves.empty:
        C.empty("The chosen training runs have not logged any curves yet.")
        return
    x = "step" if axis == "environment steps" else "wall_s"
    x_title = "environment steps" if x == "step" else "wall time (s)"
    logged = set(curves["metric"])
    metrics = [m for m in D.TRAIN_METRICS + ("eval_return",) if m in logged]
    others = sorted(m for m in logged if m not in metrics and not m.startswith("credit/"))
    extra = st.multiselect("More metrics", others, key="conv_more", placeholder="other logged metrics "
                           "(e.g. policy and value loss, KL)") if others else []
    bands, lines, marks = _shaped(ver, groups, tuple(metrics + extra), weight, x, band, show_left)
    cols = st.columns(2)
    for i, metric in enumerate(metrics + extra):
        with_marks = marks if metric in ("return", "eval_return") else None
        cols[i % 2].altair_chart(K.group_curves(bands, lines, metric, x_title, show_seeds, with_marks), width="stretch")
    credit = D.credit_frame(curves)
    if not credit.empty:
        credit = credit.merge(groups[["run_id", "group", "scenario", "finished"]], on="run_id")
        credit = credit[credit["finished"]]
        parts = list(credit.groupby("scenario"))
        ccols = st.columns(2)
        for i, (scen, part) in enumerate(parts):  # never mixed: one chart per scenario
            ccols[i % 2].altair_chart(K.credit_bars(part, title=f"per-agent credit · {scen}"), width="stretch")
    n_left = int((~groups["finished"]).sum())
    st.caption("Each curve is the mean over a group's finished (or running) seeds after smoothing; the band is "
               + ("the min–max across seeds. " if band == "min–max" else "± one standard deviation. ")
               + (f"{n_left} unfinished run(s) left out of the means" + (", drawn dashed. " if show_left else ". ")
                  if n_left else "")
               + ("Dotted rules on the return curves: the rollback gate's promotions (green) and rollbacks (red). "
                  if not marks.empty else "")
               + (" · updating every 2 s" if live and running else ""))


curves_panel()
