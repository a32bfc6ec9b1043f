"""Capacity: a sweep's metrics against the swept parameter with their intervals, the saturation point,
where robots' time goes, paired differences against a baseline point, and the Markdown report."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from desim.dashboards import capacity as P
from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D

st.title("Capacity")
rs = C.runs()
sweeps = [r for r in rs if r.get("kind") == "sweep"]
if not sweeps:
    C.empty(f"No sweeps in this store yet: run `desim sweep scenarios/sweeps/robots-small.toml --store {D.store_path()}`.",
            "A sweep runs a base scenario at several parameter values, each several times with the same seeds "
            "(common random numbers); this page shows where the output saturates and whether differences are real.")
    st.stop()

run = C.pick_run("Sweep", sweeps, key="capacity_sweep")
rid = run["run_id"]
if st.session_state.get("capacity_for") != rid:  # another sweep: its own metrics, axes and baseline
    for key in ("capacity_metrics", "capacity_x", "capacity_group", "capacity_base"):
        st.session_state.pop(key, None)
    st.session_state["capacity_for"] = rid
cfg = P.config_of(run)
results = P.results_rows(C.table(P.SWEEP_POINTS, [rid]))
total = len(cfg["points"]) * int(cfg.get("replications") or 1)
if not results:
    C.empty(f"Sweep `{rid}` has no finished runs yet ({run.get('status')}).",
            "Runs land in the store as they finish; this page picks them up by itself.")
    st.stop()

paths = list(cfg["paths"])
varied = P.varied_paths(cfg) or paths[:1]
fixed = {p: cfg["points"][0].get(p) for p in paths if p not in varied} if cfg["points"] else {}
st.caption(f"`{cfg.get('file', '')}` on `{Path(str(cfg.get('base', ''))).name}`: "
           f"{len(cfg['points'])} points × {cfg.get('replications')} replications "
           f"(seeds {cfg.get('seed')}..{int(cfg.get('seed') or 0) + int(cfg.get('replications') or 1) - 1} at every "
           f"point: common random numbers), {C.fmt(cfg.get('until'), 0)} simulated s each"
           + ("; fixed: " + ", ".join(f"{p} = {v}" for p, v in fixed.items()) if fixed else "") + ".")

all_metrics = P.metric_keys(results, cfg)
shown = st.multiselect("Metrics", all_metrics, default=[m for m in cfg["metrics"] if m in all_metrics],
                       key="capacity_metrics", help="the sweep's headline metrics first; every figure the runs recorded")
rep = P.summary(cfg, rid, results, shown or cfg["metrics"][:1])
metrics = list(rep["metrics"])

knee = rep.get("knee")
c = st.columns(4)
c[0].metric("Points", f"{len(cfg['points'])}")
c[1].metric("Runs finished", f"{len(results)} of {total}")
c[2].metric("Replications", f"{cfg.get('replications')}")
c[3].metric("Saturation point", f"{P.short(knee['path'])} = {knee['x']:g}" if knee else "none found",
            help="where adding more stops adding output (the knee of the first metric's curve)")
if run.get("status") != "complete":
    st.warning(f"This sweep is {run.get('status')}: {len(results)} of {total} runs finished so far"
               + (f" ({run.get('reason')})" if run.get("reason") else "") + ".", icon=":material/hourglass:")

if rep["findings"]:
    st.success("**Findings**\n\n" + "\n".join(f"- {f}" for f in rep["findings"]), icon=":material/insights:")
elif len(varied) == 1:
    st.info("No saturation point in this range: the first metric keeps growing (or never grows) across it, "
            "and nothing blows up.", icon=":material/info:")
else:
    st.info("The knee is found on one-parameter sweeps; this one varies " + ", ".join(f"`{p}`" for p in varied) + ".",
            icon=":material/info:")

# --------------------------------------------------------------------------- metrics against the parameter

st.subheader("Metrics against the swept parameter")
a, b = st.columns(2)
x = a.selectbox("x axis", varied, key="capacity_x") if len(varied) > 1 else varied[0]
others = [p for p in varied if p != x]
if cfg.get("design") == "lhs":  # a Latin hypercube: every point has its own values, no lines to group by
    group = None
    st.caption("A Latin hypercube: each point against one parameter at a time, the others varying with it.")
else:
    group = (b.selectbox("One line per", others, key="capacity_group") if len(others) > 1
             else (others[0] if others else None))
numeric_x = all(isinstance(pt["params"].get(x), (int, float)) and not isinstance(pt["params"].get(x), bool)
                for pt in rep["points"])
frame = P.metric_frame(rep, x, group)
level = int(rep["level"] * 100)
st.caption(f"Mean over replications, the bars its {level}% interval (Student t)."
           + (" The red dashed rule marks the saturation point." if knee else ""))
cols = st.columns(2)
for i, m in enumerate(metrics):
    k = knee["x"] if knee and knee["metric"] == m and knee["path"] == x else None
    bx = (rep.get("blowups") or {}).get(m) if len(varied) == 1 else None
    cols[i % 2].altair_chart(K.capacity_metric(frame, m, x, numeric_x, knee=k, blowup=bx, lines_title=group),
                             width="stretch")

st.subheader("Per point")
table = P.points_table(rep, paths)
st.dataframe(table, hide_index=True, width="stretch", key="capacity_points",
             column_config={col: st.column_config.NumberColumn(format="%.4g")
                            for col in table.columns if col not in ("point", "runs", *paths)})

# --------------------------------------------------------------------------- where time goes

shares = P.time_shares(results, cfg, varied)
if not shares.empty:
    st.subheader("Where robots' time goes")
    bn = P.bottlenecks(shares)
    a, b = st.columns([3, 2])
    a.altair_chart(K.time_share_bars(shares, ", ".join(P.short(p) for p in varied)), width="stretch")
    last = bn.iloc[-1]
    at_knee = None
    if knee is not None and len(varied) == 1:
        hit = [pt["point"] for pt in rep["points"] if pt["params"].get(knee["path"]) == knee["x"]]
        at_knee = bn[bn["point"].isin(hit)]
    row = at_knee.iloc[0] if at_knee is not None and not at_knee.empty else last
    where = "at the saturation point" if at_knee is not None and not at_knee.empty else "at the last point"
    b.markdown(f"**Bottleneck {where} ({row['label']}): {row['bottleneck']}**, "
               f"{row['share']:.0%} of robot time (working: {row['working']:.0%}).")
    b.dataframe(bn.drop(columns=["point"]).rename(columns={"label": "point", "share": "its share",
                                                           "working": "working"}),
                hide_index=True, width="stretch", key="capacity_bottlenecks",
                column_config={c_: st.column_config.NumberColumn(format="percent") for c_ in ("its share", "working")})
    b.caption("The bottleneck is the largest of the states that are not work: blocked, waiting for an "
              "observation, waiting for a command, idle.")

# --------------------------------------------------------------------------- paired differences

st.subheader("Differences against a baseline point")
labels = {pt["point"]: P.point_label(pt["params"], varied) for pt in rep["points"]}
base_point = st.selectbox("Baseline point", list(labels), format_func=lambda i: labels[i], key="capacity_base")
paired = P.paired_table(results, cfg, base_point, metrics, varied, rep["level"])
st.caption(f"Each point minus the baseline, replication by replication: replication r ran with seed "
           f"{cfg.get('seed')} + r at every point (common random numbers), so the paired {level}% interval "
           "is usually much tighter than the unpaired one (shown as *unpaired ±*). A difference whose interval "
           "contains 0 is **not significant**: it could be noise.")
if paired.empty:
    C.empty("No other point has replications paired with this one yet.")
else:
    st.dataframe(paired.drop(columns=["significant"]), hide_index=True, width="stretch", key="capacity_paired",
                 column_config={c_: st.column_config.NumberColumn(format="%.4g")
                                for c_ in ("baseline", "value", "difference", "low", "high", "unpaired ±")}
                 | {"relative": st.column_config.NumberColumn(format="percent")})
    ns = paired[paired["significant"] == False]  # noqa: E712 (None: no interval)
    if not ns.empty:
        st.caption("Not significant: " + "; ".join(f"{r.metric} at {r.label}" for r in ns.itertuples()) + ".")

# --------------------------------------------------------------------------- report

st.subheader("Report")
out = Path(D.store_path()).parent / "reports" / rid
st.caption(f"`desim report {rid}` writes this sweep's findings as Markdown with PNG plots; here into `{out}`.")
if st.button("Write the Markdown report", key="capacity_report", icon=":material/description:"):
    from desim.app.report import write_report
    from desim.store import Store

    try:
        md = write_report(Store(D.store_path()), rid, out)
    except (ValueError, OSError) as e:
        st.error(f"The report could not be written: {e}")
    else:
        st.session_state["capacity_report_file"] = str(md)
md_file = st.session_state.get("capacity_report_file")
if md_file and Path(md_file).parent == out and Path(md_file).is_file():
    st.success(f"Report written to `{md_file}`.", icon=":material/check_circle:")
    st.download_button("Download report.md", Path(md_file).read_text(), file_name=f"{rid}-report.md",
                       key="capacity_report_download")

with st.expander("Every run of the sweep"):
    raw = pd.DataFrame([{"point": r["point"], "rep": r["rep"], "seed": r["seed"],
                         **{p: v for p, v in json.loads(r["params"]).items()},
                         "trace_hash": r.get("trace_hash"), "wall_s": r.get("wall_s")} for r in results])
    st.dataframe(raw, hide_index=True, width="stretch", key="capacity_runs")
