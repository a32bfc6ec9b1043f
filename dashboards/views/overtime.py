"""Over time: rolling throughput, cumulative deliveries, order backlog and latency percentiles of one
or several warehouse runs, with fault and partition windows shaded; labels say what differs."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import overtime as O

st.title("Over time")
rs = C.runs()
wh = [r for r in rs if D.is_warehouse(r)]
if not wh:
    C.no_warehouse_runs(rs)
ids = [r["run_id"] for r in wh]
picked = [i for i in C.selected() if i in ids]
if C.selected() and not picked:
    first = C.run_by_id(rs, C.selected()[0])
    if D.other_model(first):
        st.warning(D.warehouse_only(first) + " Or pick warehouse runs below.", icon=":material/warning:")
    else:
        st.warning("None of the runs picked on the Runs page is a warehouse run (they have no orders to show): "
                   "pick warehouse runs below.", icon=":material/warning:")
labels_all = {r["run_id"]: D.run_label(r) for r in wh}
if "overtime_runs" in st.session_state:
    st.session_state["overtime_runs"] = [i for i in st.session_state["overtime_runs"] if i in ids]
chosen = st.multiselect("Runs (overlaid)", ids, default=picked[:4] or ids[:1], key="overtime_runs",
                        format_func=lambda i: labels_all.get(i, i), max_selections=8)
if not chosen:
    C.empty("Pick one or more warehouse runs.")
    st.stop()
runs = [C.run_by_id(wh, i) for i in chosen]
labels = O.run_labels(runs)
ends = {r["run_id"]: float((r.get("summary") or {}).get("sim_time") or (r.get("config") or {}).get("until") or 0.0)
        for r in runs}
longest = max(ends.values()) or 1.0
default_w = float(min(O.DEFAULT_WINDOW, max(10.0, round(longest / 4))))
window = st.select_slider("Rolling window (simulated s)", options=sorted({30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
                                                                         1800.0, default_w}),
                          value=default_w, key="overtime_window",
                          help="throughput and latency at each instant count the orders delivered in this window before it")
ver = C.version(rs)
orders = C.table("orders", chosen, ver)
events = C.table("events", chosen, ver)
frames, faults = [], []
for r in runs:
    rid = r["run_id"]
    o = orders[orders["run_id"] == rid] if not orders.empty else orders
    f = O.orders_over_time(o, ends[rid], window)
    frames.append(f.assign(run=labels[rid]))
    ev = events[events["run_id"] == rid] if not events.empty else events
    fw = D.fault_windows(ev, (r.get("summary") or {}).get("faults"), end=ends[rid])
    if not fw.empty:
        faults.append(fw.assign(run=labels[rid]))
data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
fw = pd.concat(faults, ignore_index=True) if faults else pd.DataFrame(columns=["fault", "target", "start", "end", "run"])
if data.empty:
    C.empty("These runs recorded no orders.")
    st.stop()
m = st.columns(len(runs) if len(runs) <= 4 else 4)
for i, r in enumerate(runs[:4]):
    s = r.get("summary") or {}
    m[i].metric(labels[r["run_id"]], C.fmt(s.get("throughput_per_hour")) + " /h",
                help=f"{r['run_id']}: whole-run throughput; {s.get('deliveries', 0)} deliveries in {ends[r['run_id']]:g} s")
a, b = st.columns(2)
a.altair_chart(K.over_time(data, "throughput", "deliveries per hour", fw, f"throughput over the last {window:g} s"),
               width="stretch")
b.altair_chart(K.over_time(data, "deliveries", "deliveries", fw, "cumulative deliveries"), width="stretch")
a, b = st.columns(2)
a.altair_chart(K.over_time(data, "backlog", "orders waiting", fw, "order backlog (created, not yet delivered or failed)"),
               width="stretch")
lat = data.melt(id_vars=["t", "run"], value_vars=["p50", "p95", "p99"], var_name="q", value_name="latency")
b.altair_chart(K.latency_over_time(lat, fw, f"order latency of deliveries in the last {window:g} s"), width="stretch")
st.caption("Every line ends at its run's end. " + ("Shaded: fault and partition windows "
           + "; ".join(f"{f} {t} {a_:.0f}–{b_:.0f} s ({r_})" for f, t, a_, b_, r_ in
                       zip(fw["fault"], fw["target"], fw["start"], fw["end"], fw["run"]))[:600] + "."
           if not fw.empty else "No faults in these runs."))
