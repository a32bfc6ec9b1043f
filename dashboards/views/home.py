"""Home (the page at /): what is in the store and where each page is."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import common as C

st.title("desim dashboard")
rs = C.runs()
kinds = {k: sum(r.get("kind") == k for r in rs) for k in ("run", "train", "sweep")}
m = st.columns(4)
m[0].metric("Runs in the store", len(rs))
m[1].metric("Simulation runs", kinds["run"])
m[2].metric("Training runs", kinds["train"])
m[3].metric("Sweeps", kinds["sweep"])
if not rs:
    C.empty("No runs in this store yet.",
            "Record one with `desim run scenarios/warehouse-small-event.toml --until 600`, "
            "or start the dashboard on another store with `desim dash --store PATH`.")

GUIDE = [
    ("views/runs.py", "Runs", "every run with its headline figures; pick runs to compare on the other pages"),
    ("views/tables.py", "Tables", "any stored table of any run, whatever its model: preview, filter, download CSV"),
    ("views/convergence.py", "Convergence", "training curves grouped by scenario, algorithm and settings"),
    ("views/overtime.py", "Over time", "rolling throughput, deliveries, backlog and order latency, faults shaded"),
    ("views/utilisation.py", "Utilisation", "where each robot's time goes, over time: the bottleneck"),
    ("views/floor.py", "Floor", "a run played back: robots, shelves, requests, goals"),
    ("views/contention.py", "Contention", "blocked moves and collisions per cell, robots' paths, deadlocks"),
    ("views/network.py", "Network", "topology, latency and drops over time, jitter buffer, conservation"),
    ("views/whatif.py", "What-if", "change a scenario and compare with paired replications"),
    ("views/capacity.py", "Capacity", "a sweep: where the output saturates, with intervals"),
]
for script, title, what in GUIDE:
    a, b = st.columns([1, 4])
    with a:
        st.page_link(script, label=title)
    b.caption(what)
