"""Utilisation: where each robot's time goes (moving, turning, loading, blocked, waiting for an
observation or a command, idle), summed and per robot, over the whole run and over time."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import overtime as O

st.title("Utilisation")
run, rs = C.warehouse_run("utilisation_run", needs="robots (it is not a warehouse run)")
rid = run["run_id"]
ver = C.version(rs)
s = run.get("summary") or {}
t_end = float(s.get("sim_time") or (run.get("config") or {}).get("until") or 1.0)
bars, shares, bottleneck = D.robot_time_frame(C.table("robot_time", [rid], ver))
if bars.empty:
    C.empty(f"Run `{rid}` recorded no robot time (runs recorded before desim accounted it).")
    st.stop()
work = sum(shares.get(k, 0.0) for k in ("moving", "turning", "loading"))
m = st.columns(4)
m[0].metric("Working", f"{work:.0%}", help="moving, turning and loading, of all robot time")
m[1].metric("Bottleneck", bottleneck or "none",
            help="the largest of blocked, waiting for an observation, waiting for a command and idle")
m[2].metric("Blocked", f"{shares.get('blocked', 0.0):.0%}")
m[3].metric("Waiting (obs + command)", f"{shares.get('waiting_obs', 0.0) + shares.get('waiting_command', 0.0):.0%}")
if s.get("tempo") == "tick":
    st.caption("A tick-tempo run has no network: its robots never wait for an observation or a command.")

st.subheader("Over time")
series = C.table("robot_time_series", [rid], ver)
if series.empty:
    st.caption("This run recorded no robot time over time (recorded before desim sampled it).")
else:
    every = float(series["t"].drop_duplicates().sort_values().diff().median() or 10.0)
    choices = sorted({every, 30.0, 60.0, 120.0, 300.0, 600.0} | {float(max(every, round(t_end / 20, -1)))})
    choices = [c for c in choices if c >= every and c <= max(t_end, every)]
    default = min(choices, key=lambda c: abs(c - max(every, t_end / 20)))
    a, b, c = st.columns([2, 2, 3])
    window = a.select_slider("Window (simulated s)", choices, value=default, key="utilisation_window",
                             help=f"robot time is sampled every {every:g} s")
    view = b.segmented_control("Show", ["all robots (summed)", "per robot"], default="all robots (summed)",
                               key="utilisation_view") or "all robots (summed)"
    robots = sorted(int(x) for x in series["robot"].unique())
    chosen = c.multiselect("Robots", robots, default=robots, key="utilisation_robots",
                           placeholder="all robots")
    per_robot = view == "per robot"
    frame = O.utilisation(series, window, chosen or None, per_robot=per_robot)
    events = C.table("events", [rid], ver)
    faults = D.fault_windows(events, s.get("faults"), end=t_end)
    if per_robot:
        for robot in (chosen or robots)[:16]:
            part = frame[frame["robot"] == robot]
            st.altair_chart(K.utilisation_area(part, faults, t_end, f"robot {robot}", height=140), width="stretch")
        if len(chosen or robots) > 16:
            st.caption("The first 16 robots; pick fewer robots to see others.")
    else:
        st.altair_chart(K.utilisation_area(frame, faults, t_end, f"{len(chosen or robots)} robots, summed"),
                        width="stretch")
    st.caption("Each window's share of robot time per state; fault and partition windows are shaded red. "
               "Blocked: held up by traffic; waiting_obs: asked the zone controller, no answer yet; "
               "waiting_command: the answer in flight; idle: nothing to do.")

st.subheader("Whole run")
st.altair_chart(K.time_share_bars(bars, "robot"), width="stretch")
st.caption(f"Working (moving, turning, loading): {work:.0%} of robot time. "
           + (f"Bottleneck: **{bottleneck}** ({shares[bottleneck]:.0%}), the largest of blocked, waiting for an "
              "observation, waiting for a command and idle." if bottleneck else "No time lost to waiting."))
