"""Network: latency, traffic and drops over time (several runs overlaid), topology with link latency and
partitions, delay histograms, jitter buffer, conservation. A run that sent no message says so."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import overtime as O

st.title("Network")
run, rs = C.page_run(D.is_network, "network_run", "No runs with network data in this store yet.",
                     "Record one with `desim run scenarios/network-partition.toml` "
                     "(or any warehouse scenario in the event tempo).", needs="network data")
rid = run["run_id"]
ver = C.version(rs)
s = run.get("summary") or {}
links = C.table("net_links", [rid], ver)
if not O.used_network(run, links):  # a tick-tempo run: a topology exists on paper, no message crossed it
    C.empty(f"Run `{rid}` used no network: it sent no messages"
            + (" (the tick tempo: robots observe and act in lockstep, with no messages)." if s.get("tempo") == "tick"
               else "."),
            "Pick an event-tempo run or a network scenario to see latency, drops and partitions.")
    st.stop()
events = C.table("events", [rid], ver)
t_end = float(s.get("sim_time") or (run.get("config") or {}).get("until") or 1.0)
windows = D.fault_windows(events, s.get("faults"), end=t_end)

st.subheader("Over time")
others = [r for r in rs if r["run_id"] != rid and D.is_network(r) and O.used_network(r)]
o1, o2, o3 = st.columns([2, 2, 3])
window = o1.select_slider("Window (simulated s)", [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
                          value=min([1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0], key=lambda w: abs(w - t_end / 60)),
                          key="network_window")
by_role = o2.toggle("per role pair", value=False, key="network_by_role",
                    help="split by the roles of sender and receiver (robot → controller, ...), for this run only")
compare = o3.multiselect("Overlay other runs", [r["run_id"] for r in others],
                         default=[i for i in C.selected() if i in {r["run_id"] for r in others}][:3],
                         key="network_compare", format_func=lambda i: D.run_label(C.run_by_id(rs, i) or {"run_id": i}),
                         disabled=by_role, max_selections=5)
shown = [run] + ([C.run_by_id(rs, i) for i in compare] if not by_role else [])
names = O.run_labels(shown)
flow = C.table("net_flow", [r["run_id"] for r in shown], ver)
lat = C.table("net_latency", [r["run_id"] for r in shown], ver)
if flow.empty:
    st.caption("This run was recorded before desim kept its traffic over time.")
else:
    counts, lats, spans = [], [], []
    for r in shown:
        end = float((r.get("summary") or {}).get("sim_time") or t_end)
        f = O.network_counts(flow[flow["run_id"] == r["run_id"]], window, end, by_role)
        la = O.network_latency(lat[lat["run_id"] == r["run_id"]] if not lat.empty else lat, window, end, by_role)
        line = (lambda d: d["pair"]) if by_role else (lambda d, n=names[r["run_id"]]: n)
        counts.append(f.assign(run=line(f) if len(f) else []))
        lats.append(la.assign(run=line(la) if len(la) else []))
        fw = windows if r is run else D.fault_windows(C.table("events", [r["run_id"]], ver), None, end=end)
        if not fw.empty:
            spans.append(fw.assign(run=names[r["run_id"]]))
    cnt = pd.concat(counts, ignore_index=True)
    la = pd.concat(lats, ignore_index=True)
    fw = pd.concat(spans, ignore_index=True) if spans else None
    a, b = st.columns(2)
    latency = la.melt(id_vars=["t", "run"], value_vars=["p50", "p95", "p99"], var_name="q", value_name="latency")
    a.altair_chart(K.latency_over_time(latency, fw, f"end-to-end latency per {window:g} s (by send time)", unit="ms"),
                   width="stretch")
    sd = cnt.melt(id_vars=["t", "run"], value_vars=["sent", "delivered"], var_name="q", value_name="latency")
    b.altair_chart(K.latency_over_time(sd, fw, f"messages sent (solid) and delivered (dashed) per {window:g} s",
                                       dashes=("sent", "delivered"), dash_title=None, y_title="messages"),
                   width="stretch")
    drops = [c for c in cnt.columns if str(c).startswith("drop:")]
    a, b = st.columns(2)
    if drops:
        dl = cnt.melt(id_vars=["t", "run"], value_vars=drops, var_name="reason", value_name="count")
        dl["reason"] = dl["reason"].str.removeprefix("drop:")
        a.altair_chart(K.drops_over_time(dl[dl["count"] > 0], fw, t_end, f"drops by reason per {window:g} s"),
                       width="stretch")
        late = cnt.assign(late=cnt["drop:late"] if "drop:late" in cnt else 0)
        b.altair_chart(K.over_time(late, "late", "late drops", fw, f"jitter-buffer late drops per {window:g} s"),
                       width="stretch")
    else:
        a.caption("No message was dropped in these runs.")
    st.altair_chart(K.over_time(cnt.dropna(subset=["loss"]), "loss", "dropped / sent", fw,
                                f"loss: dropped over sent, per {window:g} s"), width="stretch")


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
        per_link = O.link_delay_over_time(d, st.session_state.get("network_window", 10.0), t_end)
        if not per_link.empty:
            pl = per_link.rename(columns={"link": "run"}).melt(id_vars=["t", "run"], value_vars=["p50", "p95", "p99"],
                                                               var_name="q", value_name="latency")
            st.altair_chart(K.latency_over_time(pl, windows, "one-way delay per link over time (by send time)",
                                                unit="ms"), width="stretch")
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
