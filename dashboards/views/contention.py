"""Contention: the warehouse floor as a heatmap, robots' paths, deadlocks and faults on a timeline."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D

st.title("Contention")
run, rs = C.warehouse_run("contention_run", needs="warehouse floor (it is not a warehouse run)")
rid = run["run_id"]
ver = C.version(rs)
s = run.get("summary") or {}
floor = D.floor_frame(C.table("contention", [rid], ver))
if floor.empty:
    C.empty(f"Run `{rid}` has no floor data yet" + (" (still running)." if run.get("status") == "running" else "."))
    st.stop()

m = st.columns(6)
m[0].metric("Deliveries", C.fmt(s.get("deliveries")))
m[1].metric("Throughput / h", C.fmt(s.get("throughput_per_hour")))
m[2].metric("Blocked moves", f"{int(floor['blocked'].sum()):,}")
m[3].metric("Collisions", f"{int(floor['collisions'].sum()):,}")
m[4].metric("Deadlocks", C.fmt(s.get("deadlocks")))
m[5].metric("Order latency p95", C.fmt((s.get("order_latency") or {}).get("p95"), 1, " s"))

paths = C.table("paths", [rid], ver)
t_end = float(s.get("sim_time") or (paths["t"].max() if not paths.empty else 0) or 1.0)
left, right = st.columns([3, 2])
with right:
    metric = st.radio("Colour cells by", ["blocked", "collisions", "both"], horizontal=True, key="contention_metric",
                      format_func={"blocked": "blocked moves", "collisions": "collisions", "both": "both"}.get)
    show_paths = st.toggle("Robots' paths", value=True, key="contention_paths")
    if show_paths and not paths.empty:
        robots = sorted(int(r) for r in paths["robot"].unique())
        chosen = st.multiselect("Robots", robots, default=robots, key="contention_robots")
        window = st.slider("Path time window (s)", 0.0, t_end, (0.0, min(t_end, 120.0)), step=max(1.0, t_end / 200),
                           key="contention_window")
        p = D.path_frame(paths, window[0], window[1], chosen)
        st.caption(f"{len(p):,} moves of {len(chosen)} robots between {window[0]:.0f} s and {window[1]:.0f} s "
                   "(paths are recorded for robots 0–7).")
    else:
        p = None
        if show_paths:
            st.caption("This run recorded no paths.")
    fl = s.get("floor") or {}
    if fl:
        st.caption(f"Floor `{fl.get('name')}`: {fl.get('width')}×{fl.get('height')} cells, {fl.get('shelves')} shelves "
                   f"(outlined), {fl.get('goals')} goals (G); {s.get('robots', '?')} robots, "
                   f"brain `{s.get('brain', run.get('brain'))}`, tempo `{s.get('tempo', '?')}`.")
with left:
    st.altair_chart(K.floor_heatmap(floor, metric, p))

events = C.table("events", [rid], ver)
deadlocks = D.deadlock_frame(events)
faults = D.fault_windows(events, s.get("faults"), end=t_end)
st.subheader("Deadlocks and faults over time")
if deadlocks.empty and faults.empty:
    st.caption("No deadlocks and no faults in this run.")
else:
    st.altair_chart(K.deadlock_timeline(deadlocks, faults, t_end), width="stretch")
    if not deadlocks.empty:
        by = deadlocks.groupby("type").size()
        st.caption("Deadlocks: " + ", ".join(f"{n} {k.replace('_', '-')}" for k, n in by.items())
                   + ". A wait-for cycle is robots waiting on each other; 'stuck' is a robot with work that has not moved.")

st.caption("Throughput, backlog and latency over time: the **Over time** page; where robots' time goes: "
           "**Utilisation**; the run played back: **Floor**.")
