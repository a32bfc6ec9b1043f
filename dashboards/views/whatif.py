"""What-if: change a warehouse scenario's knobs, run it in the background, compare with a baseline."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import whatif as W

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
JOB = "whatif_job"

st.title("What-if")
bases = sorted(SCENARIOS.glob("warehouse-*-event.toml"))
if not bases:
    C.empty(f"No base scenarios (`warehouse-*-event.toml`) in `{SCENARIOS}`.")
    st.stop()

small = [i for i, p in enumerate(bases) if p.name == "warehouse-small-event.toml"]
base_path = st.selectbox("Base scenario", bases, index=small[0] if small else 0, format_func=lambda p: p.name,
                         key="whatif_base")
try:
    base = W.read_base(base_path)
except ValueError as e:  # a broken base file: one line, not a traceback
    st.error(str(e))
    st.stop()
dflt = W.defaults(base)
st.caption(base.description)

k = f"whatif_{Path(base_path).stem}_"  # widgets per base scenario, so each starts at its own values
c1, c2, c3 = st.columns(3)
with c1:
    st.markdown("**Floor**")
    robots = st.slider("Robots", dflt["zones"], max(16, 2 * dflt["robots"]), dflt["robots"], key=k + "robots")
    order_rate = st.slider("Orders per hour", 10, max(1000, int(2 * dflt["order_rate"])), int(dflt["order_rate"]),
                           step=10, key=k + "orders")
    brain = st.selectbox("Brain", W.BRAINS, index=W.BRAINS.index(dflt["brain"]) if dflt["brain"] in W.BRAINS else 1,
                         key=k + "brain")
with c2:
    st.markdown("**Wireless hop (robot ↔ zone controller)**")
    delay_mean = st.slider("Delay mean (ms)", 0.0, 500.0, round(dflt["delay_mean"] * 1e3, 1), step=0.5,
                           key=k + "delay_mean", help="links.wireless.delay.mean")
    delay_jitter = st.slider("Delay jitter (ms)", 0.0, 200.0, round(dflt["delay_jitter"] * 1e3, 1), step=0.5,
                             key=k + "delay_jitter", help="links.wireless.delay.jitter")
    loss = st.slider("Loss (%)", 0.0, 50.0, round(dflt["loss"] * 100, 1), step=0.1, key=k + "loss",
                     help="long-run loss rate; a bursty (Gilbert-Elliott) link keeps its burst length")
with c3:
    st.markdown("**Partition window**")
    zones = [f"zone-{z}" for z in range(dflt["zones"])]
    base_part = dflt["partition"]
    part_opts = ["as in base scenario", "no faults"] + zones
    where = st.selectbox("Cut off", part_opts, key=k + "part",
                         help="a zone's controller isolated from the network; replaces the base's faults")
    p_start = st.number_input("Start (s)", 0.0, 1e6, float(base_part.start if base_part else 60.0), step=10.0,
                              key=k + "pstart", disabled=where not in zones)
    p_dur = st.number_input("Duration (s)", 1.0, 1e6, float(base_part.duration if base_part else 60.0), step=10.0,
                            key=k + "pdur", disabled=where not in zones)
    st.markdown("**Run**")
    r1, r2 = st.columns(2)
    longest = float(base.until)
    # long enough to see the base's partition and some of its aftermath
    part_end = (base_part.start + base_part.duration) if base_part else 0.0
    default_until = float(min(longest, max(600.0, math.ceil((part_end + 120) / 300) * 300)))
    until = r1.number_input("Simulated s", 30.0, longest, default_until, step=60.0, key=k + "until")
    seed = int(r2.number_input("Seed", 0, 2**31 - 1, int(base.seed), key="whatif_seed"))

changes: dict = {}
if robots != dflt["robots"]:
    changes["robots"] = int(robots)
if abs(order_rate - dflt["order_rate"]) > 1e-9:
    changes["order_rate"] = float(order_rate)
if brain != dflt["brain"]:
    changes["brain"] = brain
if abs(delay_mean / 1e3 - dflt["delay_mean"]) > 1e-9:
    changes["delay_mean"] = delay_mean / 1e3
if abs(delay_jitter / 1e3 - dflt["delay_jitter"]) > 1e-9:
    changes["delay_jitter"] = delay_jitter / 1e3
if abs(loss / 100 - round(dflt["loss"] * 100, 1) / 100) > 1e-9:
    changes["loss"] = loss / 100
if where == "no faults":
    changes["partition"] = "none"
elif where in zones:
    part = W.Partition(float(p_start), float(p_dur), zones.index(where))
    if part != base_part or dflt["faults"] != 1:
        changes["partition"] = part

job = W.get_job(st.session_state.get(JOB))
busy = job is not None and not job.done
summary = W.describe(changes) or "nothing changed yet (the what-if equals the baseline)"
st.caption(f"Changes from the base: {summary}. The baseline is the base scenario unchanged, same seed and length "
           "(reused from the store when it was run before).")
part_at = changes["partition"].start if isinstance(changes.get("partition"), W.Partition) else (
    base_part.start if base_part and "partition" not in changes else None)
if part_at is not None and part_at >= until:
    st.warning(f"The partition starts at {part_at:g} s, after the {until:g} simulated seconds: "
               "it will not happen. Simulate longer or move it earlier.", icon=":material/warning:")
if st.button("Run what-if", type="primary", disabled=busy, key="whatif_run", icon=":material/play_arrow:"):
    try:
        job = W.start_job(base_path, D.store_path(), changes, seed=seed, until=float(until))
    except ValueError as e:
        st.error(str(e))
    else:
        st.session_state[JOB] = job.id
        busy = True


def _results(job: W.Job) -> None:
    path = D.store_path()
    base_run, var_run = D.get_run(path, job.baseline_id), D.get_run(path, job.run_id)
    bs, vs = base_run.get("summary") or {}, var_run.get("summary") or {}
    st.success(f"What-if `{var_run['run_id']}` vs baseline `{base_run['run_id']}`"
               + (" (reused from the store)" if job.baseline_reused else ""))
    cmp = D.compare(bs, vs)
    cols = st.columns(len(cmp))
    for col, row in zip(cols, cmp.itertuples(index=False)):
        delta = None if row.diff is None or pd.isna(row.diff) else round(float(row.diff), 2)
        digits = 0 if row.metric in ("deliveries", "deadlocks", "collisions") else 1
        col.metric(row.label, C.fmt(row.what_if, digits), delta=delta,
                   delta_color="inverse" if row.lower_better else "normal",
                   help=f"baseline: {C.fmt(row.baseline, digits)}")
    table = cmp[["label", "baseline", "what_if", "diff"]].rename(columns={"label": "figure", "what_if": "what-if"})
    a, b = st.columns([2, 3])
    a.dataframe(table, hide_index=True, width="stretch", key="whatif_table",
                column_config={c: st.column_config.NumberColumn(format="%.2f") for c in ("baseline", "what-if", "diff")})
    b.altair_chart(K.compare_bars(cmp), width="stretch")
    ts = D.read_table(D.store_path(), "timeseries", [base_run["run_id"], var_run["run_id"]])
    if not ts.empty:
        ts["run"] = ts["run_id"].map({base_run["run_id"]: "baseline", var_run["run_id"]: "what-if"})
        st.altair_chart(K.timeseries(ts, "throughput_per_hour", colour="run", title="throughput per hour over time"),
                        width="stretch")
    with st.expander("The what-if scenario"):
        st.code(var_run.get("scenario_text") or "", language="toml")


@st.fragment(run_every=1.0 if busy else None)
def job_panel() -> None:
    job = W.get_job(st.session_state.get(JOB))
    if job is None:
        st.caption("Set the knobs and press **Run what-if**; the runs go into the store like any `desim run`.")
        return
    if not job.done:
        phase = {"queued": "starting", "baseline": "baseline", "variant": "what-if"}.get(job.status, job.status)
        st.progress(job.progress, text=f"{phase}: {job.message} ({job.progress:.0%})")
        st.caption("The simulation runs in the background; the page stays usable.")
        return
    if st.session_state.get("whatif_seen") != job.id:  # finished since the last full run: refresh everything once
        st.session_state["whatif_seen"] = job.id
        st.rerun()
    if job.status == "failed":
        st.error(f"The what-if failed: {job.error}")
        st.code(job.message)
        return
    _results(job)


job_panel()
