"""Convergence: training curves per algorithm, mean and a band across seeds, live while training writes."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D

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

c1, c2, c3 = st.columns([2, 2, 1])
axis = c1.segmented_control("x axis", ["environment steps", "wall time"], default="environment steps",
                            key="conv_axis") or "environment steps"
band = c2.segmented_control("band across seeds", ["min–max", "± std"], default="min–max", key="conv_band") or "min–max"
any_running = any(r.get("status") == "running" for r in train)
live = c3.toggle("live", value=True, key="conv_live",
                 help="re-read the store every 2 s while a run is training (every 10 s otherwise)")


@st.fragment(run_every=(2.0 if any_running else 10.0) if live else None)
def curves_panel() -> None:
    rs = C.runs()  # re-read: new runs and status changes show up without a page reload
    tr = [r for r in rs if r.get("kind") == "train"]
    if live and any(r.get("status") == "running" for r in tr) != any_running:
        st.rerun()  # a run started or ended: rerun the page so the refresh rate follows
    ver = C.version(rs)
    curves = C.table("train_curves", [r["run_id"] for r in tr], ver=ver)
    if curves.empty:
        C.empty("The training runs have not logged any curves yet.")
        return
    if "algo" not in curves:
        curves["algo"] = None
    brains = {r["run_id"]: r.get("brain") for r in tr}
    curves["algo"] = curves["algo"].fillna(curves["run_id"].map(brains)).fillna("?")
    algos = sorted(curves["algo"].unique())
    chosen = st.multiselect("Algorithms", algos, default=algos, key="conv_algos")
    curves = curves[curves["algo"].isin(chosen)]
    running = [r for r in tr if r.get("status") == "running"]
    last = curves.groupby("run_id")["step"].max() if not curves.empty else {}
    live_ids = {r["run_id"] for r in running}
    if live_ids and len(last):
        last = last[last.index.isin(live_ids)]  # while training, the newest step of the running runs
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Training runs", len(tr))
    m2.metric("Running now", len(running))
    m3.metric("Algorithms", len(chosen))
    m4.metric("Latest step" + (" (running)" if running else ""), f"{int(max(last.values)) if len(last) else 0:,}")
    x = "step" if axis == "environment steps" else "wall_s"
    bands = D.curve_bands(curves, x=x, band="std" if band == "± std" else "minmax")
    x_title = "environment steps" if x == "step" else "wall time (s)"
    metrics = [m for m in D.TRAIN_METRICS if m in set(bands["metric"])]
    others = sorted(m for m in set(bands["metric"]) if m not in D.TRAIN_METRICS and not m.startswith("credit/"))
    if not metrics and not others:
        C.empty("No curves for the chosen algorithms.")
        return
    extra = st.multiselect("More metrics", others, key="conv_more", placeholder="other logged metrics "
                           "(e.g. policy and value loss, KL, eval return)") if others else []
    cols = st.columns(2)
    for i, metric in enumerate(metrics + extra):
        cols[i % 2].altair_chart(K.bands(bands, metric, x_title), width="stretch")
    credit = D.credit_frame(curves)
    if not credit.empty:
        st.altair_chart(K.credit_bars(credit), width="stretch")
    seeds = curves.groupby("algo")["run_id"].nunique().rename("seeds (runs)")
    st.caption("Curves are the mean over seeds; the band is "
               + ("the min–max across seeds. " if band == "min–max" else "± one standard deviation. ")
               + "Seeds per algorithm: " + ", ".join(f"{a}: {n}" for a, n in seeds.items())
               + (" · updating every 2 s" if live and running else ""))


curves_panel()
