"""Network: topology with link latency, partitions over time, delay histograms, jitter buffer, conservation."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D

st.title("Network")
run, rs = C.page_run(D.is_network, "network_run", "No runs with network data in this store yet.",
                     "Record one with `desim run scenarios/network-partition.toml` "
                     "(or any warehouse scenario in the event tempo).")
rid = run["run_id"]
ver = C.version(rs)
s = run.get("summary") or {}
links = C.table("net_links", [rid], ver)
events = C.table("events", [rid], ver)
t_end = float(s.get("sim_time") or (run.get("config") or {}).get("until") or 1.0)
windows = D.fault_windows(events, s.get("faults"), end=t_end)


nodes = C.table("net_nodes", [rid], ver)


@st.cache_data(show_spinner=False, max_entries=32)
def _graph(run_id: str, ver: tuple, links: pd.DataFrame, nodes: pd.DataFrame):
    g = D.topology(links, nodes)
    return g, D.layout(g)


g, pos = _graph(rid, ver, links, nodes)

st.subheader("Topology")
if nodes.empty:
    st.caption("This run was recorded before desim stored its network: the topology is drawn from its "
               "links, without node roles.")
left, right = st.columns([3, 1])
with right:
    default_t = float(windows["start"].iloc[0]) + 1e-6 if not windows.empty else 0.0
    t = st.slider("Time (s)", 0.0, t_end, min(default_t, t_end), step=max(0.1, round(t_end / 300, 1)),
                  key="network_t", help="edges cut by a fault at this moment are red and dashed")
    active = D.active_faults(windows, t)
    states = D.edge_states(g, active)
    n_cut = sum(v == "cut" for v in states.values())
    n_deg = sum(v == "degraded" for v in states.values())
    st.metric("Links cut at this time", n_cut)
    st.metric("Links degraded", n_deg)
    if windows.empty:
        st.caption("No faults in this run.")
    else:
        st.markdown("**Faults**")
        shown = windows.assign(active=[(a <= t < b) for a, b in zip(windows["start"], windows["end"])])
        st.dataframe(shown, hide_index=True, width="stretch", key="network_faults")
with left:
    nodes_df, edges_df = D.topology_frames(g, pos, states)
    caption = f"{run['scenario']} at t = {t:.1f} s" + (
        " — " + "; ".join(f"{f} {tg}" for f, tg in zip(active["fault"], active["target"])) if not active.empty else "")
    st.altair_chart(K.topology(nodes_df, edges_df, caption), width="stretch")

st.subheader("Delays per link")
delays = C.table("net_delays", [rid], ver)
if delays.empty:
    st.caption("This run recorded no message delays.")
else:
    delays = delays.assign(link=delays["src"] + " → " + delays["dst"])
    counts = delays.groupby("link").size().sort_values(ascending=False)
    busiest = list(counts.index)
    chosen = st.multiselect("Links", busiest, default=busiest[:1], key="network_links",
                            format_func=lambda name: f"{name} ({counts[name]:,} samples)")
    if chosen:
        d = delays[delays["link"].isin(chosen)]
        a, b = st.columns([3, 2])
        a.altair_chart(K.delay_histogram(d, "one-way delay (sampled per message)"), width="stretch")
        stats = (d.groupby("link")["delay"].describe(percentiles=[0.5, 0.95, 0.99]) * 1e3).drop(columns="count")
        stats.insert(0, "samples", d.groupby("link").size())
        b.markdown("**delay (ms)**")
        b.dataframe(stats.round(2), width="stretch", key="network_delay_stats")
    else:
        st.caption("Pick one or more links.")
with st.expander("All links"):
    st.dataframe(links.drop(columns=["run_id"], errors="ignore"), hide_index=True, width="stretch")

st.subheader("Jitter buffer")
jb = s.get("jitter_buffer") or {}
j = st.columns(4)
j[0].metric("Released in order", f"{int(jb.get('released') or 0):,}")
j[1].metric("Late drops", f"{int(jb.get('late') or 0):,}")
j[2].metric("Mean added delay", C.fmt((jb.get("mean_added_delay") or 0.0) * 1e3, 2, " ms"))
j[3].metric("Streams", f"{int(jb.get('streams') or 0):,}")
if not jb.get("streams"):
    st.caption("The jitter buffer was off in this run (`[jitter_buffer] enabled = true` turns it on).")

st.subheader("Message conservation")
cons = D.conservation(s)
if cons is None:
    st.caption("This run has no message figures yet" + (" (still running)." if run.get("status") == "running" else "."))
else:
    ok = D.conservation_ok(cons)
    lhs = int(cons.loc[cons.side == "in", "count"].sum())
    rhs = int(cons.loc[cons.side == "out", "count"].sum())
    (st.success if ok else st.error)(
        f"sent + duplicated = {lhs:,} {'=' if ok else '≠'} {rhs:,} = delivered + dropped + in flight",
        icon=":material/check_circle:" if ok else ":material/error:",
    )
    a, b = st.columns([2, 3])
    a.dataframe(cons, hide_index=True, width="stretch", key="network_conservation")
    b.altair_chart(K.conservation_bar(cons), width="stretch")
