"""What-if: change a warehouse scenario's knobs, run it in the background, compare with a baseline."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from desim.dashboards import charts as K
from desim.dashboards import common as C
from desim.dashboards import data as D
from desim.dashboards import whatif as W

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
JOB = "whatif_job"


def _brain_label(spec: str) -> str:
    if not spec.startswith(W.CHECKPOINT):
        return spec
    p = Path(spec[len(W.CHECKPOINT):])
    return f"trained: {p.parent.name}/{p.name}" if p.parent.name else f"trained: {p.name}"


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
    brains = list(W.BRAINS) + [b for b in W.checkpoint_brains(D.store_path(), C.runs()) if b not in W.BRAINS]
    if dflt["brain"] and dflt["brain"] not in brains:
        brains.append(dflt["brain"])
    brain = st.selectbox("Brain", brains, index=brains.index(dflt["brain"]) if dflt["brain"] in brains else 1,
                         key=k + "brain", format_func=_brain_label,
                         help="a built-in brain, or a trained policy (checkpoint:PATH): *.pt files under the store's "
                              "checkpoints/ and runs/checkpoints/, and the checkpoints training runs recorded")
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
    r1, r2, r3 = st.columns(3)
    longest = float(base.until)
    # long enough to see the base's order peaks and faults, and some of their aftermath
    until = r1.number_input("Simulated s", 30.0, longest, W.default_until(base), step=60.0, key=k + "until",
                            help="starts long enough to cover the scenario's order peaks and fault windows")
    seed = int(r2.number_input("Seed", 0, 2**31 - 1, int(base.seed), key="whatif_seed",
                               help="the first seed: replication r runs with seed + r"))
    reps = int(r3.number_input("Replications", 1, 20, 3, key="whatif_reps",
                               help="runs per arm; both arms use the same seeds (common random numbers), "
                                    "so each difference comes with a paired 95% interval"))

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
seeds = f"seed {seed}" if reps == 1 else f"seeds {seed}..{seed + reps - 1}"
st.caption(f"Changes from the base: {summary}. The baseline is the base scenario unchanged; both arms run "
           f"{reps} time{'s' if reps > 1 else ''} with {seeds} and the same length (common random numbers: "
           "replication r of both arms draws from the same seed). Baseline runs already in the store are reused.")
gaps = W.window_warnings(base, changes, float(until))
if gaps:
    st.warning("\n".join(f"- {g}" for g in gaps), icon=":material/warning:")
if st.button("Run what-if", type="primary", disabled=busy, key="whatif_run", icon=":material/play_arrow:"):
    try:
        job = W.start_job(base_path, D.store_path(), changes, seed=seed, until=float(until), replications=reps)
    except ValueError as e:
        st.error(str(e))
    else:
        st.session_state[JOB] = job.id
        busy = not job.done


def _results(job: W.Job) -> None:
    path = D.store_path()
    base_runs = [D.get_run(path, r) for r in job.baseline_ids]
    var_runs = [D.get_run(path, r) for r in job.run_ids]
    reused = (" (reused from the store)" if job.baseline_reused else
              f" ({job.baselines_reused} reused from the store)" if job.baselines_reused else "")
    if job.replications == 1:
        st.success(f"What-if `{var_runs[0]['run_id']}` vs baseline `{base_runs[0]['run_id']}`{reused}")
    else:
        st.success(f"What-if ({job.replications} runs: {', '.join(f'`{r}`' for r in job.run_ids)}) vs baseline "
                   f"({job.replications} runs: {', '.join(f'`{r}`' for r in job.baseline_ids)}){reused}; "
                   f"seeds {job.seeds[0]}..{job.seeds[-1]} in both arms")
    cmp = D.compare_paired([r.get("summary") or {} for r in base_runs], [r.get("summary") or {} for r in var_runs])
    cols = st.columns(len(cmp))
    for col, row in zip(cols, cmp.itertuples(index=False)):
        delta = None if row.diff is None or pd.isna(row.diff) else round(float(row.diff), 2)
        digits = 0 if row.metric in ("deliveries", "deadlocks", "collisions") and job.replications == 1 else 1
        interval = ("" if row.low is None or pd.isna(row.low) else
                    f"; difference {row.diff:+,.3g}, 95% interval [{row.low:,.3g}, {row.high:,.3g}]")
        col.metric(row.label, C.fmt(row.what_if, digits), delta=delta,
                   delta_color="inverse" if row.lower_better else "normal",
                   help=f"baseline: {C.fmt(row.baseline, digits)}{interval}; {D.verdict(row.significant, row.n)}")
    if job.replications == 1:
        st.caption("One replication per arm: the differences come without an interval. Run more replications "
                   "to tell a real change from noise.")
    else:
        known = [(r.label, bool(r.significant)) for r in cmp.itertuples()
                 if r.significant is not None and not pd.isna(r.significant)]
        sig = [label for label, s_ in known if s_]
        ns = [label for label, s_ in known if not s_]
        st.markdown(f"Differences over {job.replications} paired replications, with their 95% intervals. "
                    + (f"**Significant:** {', '.join(sig)}. " if sig else "No difference is significant. ")
                    + (f"**Not significant** (the interval contains 0: it could be noise): {', '.join(ns)}."
                       if ns else ""))
    table = cmp.assign(verdict=[D.verdict(s_, n) for s_, n in zip(cmp["significant"], cmp["n"])])
    table = table[["label", "baseline", "what_if", "diff", "low", "high", "verdict"]].rename(
        columns={"label": "figure", "what_if": "what-if"})
    st.dataframe(table, hide_index=True, width="stretch", key="whatif_table",
                 column_config={c: st.column_config.NumberColumn(format="%.2f")
                                for c in ("baseline", "what-if", "diff", "low", "high")})
    st.altair_chart(K.diff_intervals(cmp), width="stretch")
    first = [base_runs[0]["run_id"], var_runs[0]["run_id"]]
    ts = D.read_table(D.store_path(), "timeseries", first)
    if not ts.empty:
        ts["run"] = ts["run_id"].map({first[0]: "baseline", first[1]: "what-if"})
        st.altair_chart(K.timeseries(ts, "throughput_per_hour", colour="run",
                                     title=f"throughput per hour over time (seed {job.seed})"), width="stretch")
    with st.expander("The what-if scenario"):
        st.code(var_runs[0].get("scenario_text") or "", language="toml")


@st.fragment(run_every=1.0 if busy else None)
def job_panel() -> None:
    job = W.get_job(st.session_state.get(JOB))
    if job is None:
        st.caption("Set the knobs and press **Run what-if**; the runs go into the store like any `desim run`.")
        return
    if not job.done:
        phase = {"queued": "starting", "baseline": "baseline", "variant": "what-if"}.get(job.status, job.status)
        phase += f" ({job.replications} runs per arm)" if job.replications > 1 else ""
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
    if job.status == "unchanged":
        st.info("Nothing was changed from the base scenario, so nothing was simulated: the what-if would be "
                "the baseline itself. Change a knob first.", icon=":material/info:")
        return
    _results(job)


job_panel()
