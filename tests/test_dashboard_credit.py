"""The Credit page under streamlit.testing (AppTest).

On studies made by the real commands: ``real_store``, ``desim study credit scenarios/train-tiny.toml
--algos mappo --seeds 2 --steps 4096`` (with fewer floors, episodes and deployment seconds than the
defaults), whose table, curves, per-seed returns and traceability titles are checked against the
study's tables; ``real_other_store``, ``desim study nonstationarity`` (each switch against its control)
and ``desim study pipeline`` (per agent, the traceability the study stored).
Studies that short learn almost nothing (returns near 0), so the cases a longer one gives (a spread
across seeds, traceability defined for some seeds only, exact on/off figures, a pipeline with a
constant global credit) are also written through the store API in the tables' declared schemas
(``write_study``). And a store with no study at all.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import app_page, default_store, frame_with, metric  # noqa: E402
from desim.app import study_tables as T  # noqa: E402
from desim.store import Store  # noqa: E402

ARM_COLS = ("arm", "method", "algo", "switch", "setting")


def _arm_row(arm, method, algo, switch, setting, seeds, rets, trace, defined, ratings, steps_conv, dph):
    rets = np.asarray(rets, dtype=float)
    return {"arm": arm, "method": method, "algo": algo, "switch": switch, "setting": setting, "seeds": seeds,
            "return_mean": rets.mean(), "return_std": rets.std(ddof=1), "return_var": rets.var(ddof=1),
            "converged_frac": 0.5, "steps_to_converge_mean": steps_conv, "traceability_mean": trace,
            "traceability_defined": defined, "traceability_pooled_mean": trace, "train_s_per_10k": 7.5,
            "params": 4242, "config_lines": 2, "dph_tick_mean": dph[0], "dph_event_mean": dph[1],
            "production_gap_mean": dph[1] / dph[0] - 1, "rated_complexity": ratings[0],
            "rated_stability": ratings[1], "rated_traceability": ratings[2], "_finals": list(rets)}


def _columns(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0] if not k.startswith("_")}


def write_study(store: Store, study: str, arms: list[dict], credit: bool = True, steps: int = 4096,
                controls: dict | None = None) -> str:
    """A study run written through the store API, in the study tables' declared schemas; ``controls``
    (arm -> the arm it is compared with) go in the config's ``arms`` as ``desim study`` writes them."""
    rng = np.random.default_rng(0)
    seeds = int(arms[0]["seeds"])
    config = {"study": study, "file": "scenarios/train-tiny.toml", "algos": ["mappo"], "seeds": seeds, "steps": steps,
              "arms": [{"name": a["arm"], "switch": a["switch"], "setting": a["setting"],
                        "control": (controls or {}).get(a["arm"], "")} for a in arms]}
    with store.run("study", scenario="train-tiny", config=config) as run:
        run.append(T.STUDY_ARMS.name, _columns(arms))
        seed_rows, curve_rows, credit_rows = [], [], []
        for a in arms:
            for s in range(seeds):
                final = a["_finals"][s]
                seed_rows.append({**{k: a[k] for k in ARM_COLS}, "seed": s, "train_run": f"r-train-{a['arm']}-{s}",
                                  "steps": steps, "final_return": final, "converged": s == 0,
                                  "steps_to_converge": a["steps_to_converge_mean"] if s == 0 else math.nan,
                                  "traceability": a["traceability_mean"],
                                  "traceability_pooled": a["traceability_pooled_mean"],
                                  "train_s_per_10k": 7.5, "params": 4242, "config_lines": 2,
                                  "dph_tick": a["dph_tick_mean"], "dph_event": a["dph_event_mean"],
                                  "production_gap": a["production_gap_mean"], "wall_s": 3.0})
                for k, step in enumerate(range(1024, steps + 1, 1024)):
                    curve_rows.append({"arm": a["arm"], "seed": s, "step": step,
                                       "eval_return": final * (k + 1) / (steps // 1024)})
                if credit:
                    for ep in range(4):
                        true = rng.normal(1.0, 0.5, 2)
                        assigned = (np.full(2, true.sum()) if a["method"] == "global"
                                    else true + rng.normal(0, 0.1, 2))
                        for robot in range(2):
                            credit_rows.append({"arm": a["arm"], "seed": s, "episode": ep, "robot": robot,
                                                "assigned": float(assigned[robot]), "true": float(true[robot])})
        run.append(T.STUDY_SEEDS.name, _columns(seed_rows))
        run.append(T.STUDY_CURVES.name, _columns(curve_rows))
        if credit_rows:
            run.append(T.STUDY_CREDIT.name, _columns(credit_rows))
        return run.run_id


CREDIT_ARMS = [  # global reward credits every robot alike: its traceability is undefined (NaN)
    _arm_row("global", "global", "mappo", "", "", 2, [1.0, 1.4], math.nan, 0, ("low", "high", "minimal"),
             2048.0, (120.0, 96.0)),
    _arm_row("difference", "difference", "mappo", "", "", 2, [2.0, 2.2], 0.83, 2, ("high", "moderate", "high"),
             3072.0, (150.0, 141.0)),
    _arm_row("shaped", "shaped", "mappo", "", "", 2, [0.5, 1.5], 0.41, 1, ("very high", "low", "very high"),
             math.nan, (90.0, 60.0)),
]
NS_ARMS = [
    _arm_row("baseline", "individual", "mappo", "", "off", 2, [1.0, 1.2], 0.3, 2, ("", "", ""), 3072.0, (100.0, 80.0)),
    _arm_row("reward_norm", "individual", "mappo", "reward normalisation", "on", 2, [1.5, 1.6], 0.3, 2, ("", "", ""),
             2048.0, (110.0, 99.0)),
    _arm_row("adoption_lag", "individual", "mappo", "asynchronous adoption", "on", 2, [0.8, 1.4], 0.3, 2,
             ("", "", ""), math.nan, (95.0, 70.0)),
    _arm_row("staleness", "individual", "mappo", "staleness filter", "on", 2, [1.1, 1.3], 0.3, 2, ("", "", ""),
             1024.0, (97.0, 80.0)),
]
NS_CONTROLS = {"reward_norm": "baseline", "adoption_lag": "baseline", "staleness": "adoption_lag"}


def credit_study(path) -> str:
    """A credit study in the store at ``path``; returns its run id."""
    return write_study(Store(path), "credit", CREDIT_ARMS)


@pytest.fixture(scope="module")
def credit_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("credit") / "s.duckdb"
    rid = credit_study(path)
    with default_store(path):
        yield path, rid


@pytest.fixture(scope="module")
def other_store(tmp_path_factory):
    """A nonstationarity study, then a pipeline study (the newest, listed first)."""
    path = tmp_path_factory.mktemp("credit-other") / "s.duckdb"
    store = Store(path)
    ns = write_study(store, "nonstationarity", NS_ARMS, credit=False, controls=NS_CONTROLS)
    rows = []
    for order in range(6):
        for agent, true in (("picker", 1.0 + order % 3), ("packer", 0.5)):
            rows.append({"seed": 0, "order": order, "outcome": "completed", "reason": "", "agent": agent,
                         "true": true, "assigned_global": 1.0, "assigned_local": true * 0.9})
    with store.run("study", scenario="warehouse-pipeline", config={"study": "pipeline", "seeds": 1, "steps": 0}) as run:
        run.append("pipeline_credit", _columns(rows))
        pipe = run.run_id
    with default_store(path):
        yield path, ns, pipe


def charts(at: AppTest) -> dict:
    return {json.loads(c.proto.spec).get("title"): c for c in at.get("vega_lite_chart")}


def r_text(r) -> str:
    return "undefined" if pd.isna(r) else f"{r:.2f}"


def datasets(chart) -> list[pd.DataFrame]:
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def test_credit_study_arms_table_measured_beside_rated(credit_store):
    path, rid = credit_store
    at = app_page("credit")
    assert at.title[0].value == "Credit"
    assert rid in at.selectbox(key="credit_run").options[0] and "credit study" in at.selectbox(key="credit_run").options[0]
    assert metric(at, "Arms") == "3" and metric(at, "Seeds per arm") == "2" and metric(at, "Steps per run") == "4,096"
    table = frame_with(at, "traceability (rated)")
    assert list(table["arm"]) == [a["arm"] for a in CREDIT_ARMS]
    cols = list(table.columns)
    for quality, measured in (("stability", "return std"), ("traceability", "traceability r"),
                              ("complexity", "params")):
        assert cols.index(f"{quality} (rated)") > cols.index(measured)  # each rating right of what measures it
    row = table.set_index("arm")
    for a in CREDIT_ARMS:
        r = row.loc[a["arm"]]
        assert r["return (mean)"] == f"{a['return_mean']:,.2f}" and r["return std"] == f"{a['return_std']:,.2f}"
        assert (r["stability (rated)"], r["traceability (rated)"], r["complexity (rated)"]) == (
            a["rated_stability"], a["rated_traceability"], a["rated_complexity"])
        assert r["deliveries/h tick"] == f"{a['dph_tick_mean']:,.1f}"
        assert r["production gap"] == f"{a['production_gap_mean']:+.1%}"
    assert row.loc["global", "traceability r"] == "undefined"  # NaN, never shown as 0
    assert row.loc["difference", "traceability r"] == "0.83"
    assert row.loc["shaped", "traceability r"] == "0.41 (1 of 2 seeds defined)"
    assert row.loc["shaped", "steps to converge"] == "never"


def test_credit_study_charts(credit_store):
    path, rid = credit_store
    at = app_page("credit")
    cs = charts(at)
    assert "global: r = undefined · pooled undefined" in cs and "difference: r = 0.83 · pooled 0.83" in cs, list(cs)
    global_pts = datasets(cs["global: r = undefined · pooled undefined"])[0]
    assert len(global_pts) == 2 * 4 * 2  # seeds x episodes x robots
    bands = datasets(cs["held-out return per arm (mean across seeds, band min–max)"])[0]
    last = bands[(bands["arm"] == "shaped") & (bands["step"] == 4096)].iloc[0]
    assert (last["lo"], last["mean"], last["hi"]) == pytest.approx((0.5, 1.0, 1.5))
    seeds = datasets(cs["final return per seed (stability)"])[0]
    assert sorted(seeds[seeds["arm"] == "shaped"]["final_return"]) == pytest.approx([0.5, 1.5])
    perf = datasets(cs["deliveries per hour per arm: tick vs event tempo"])[0]
    g = perf[perf["arm"] == "global"].set_index("tempo")["deliveries_per_hour"]
    assert g["tick"] == 120.0 and g["event (network latency)"] == 96.0
    at.segmented_control(key="credit_band").set_value("± std").run()
    assert not at.exception, at.exception
    assert "held-out return per arm (mean across seeds, band ± std)" in charts(at)


def test_nonstationarity_study_on_off_pairs(other_store):
    path, ns, pipe = other_store
    at = app_page("credit")
    at.selectbox(key="credit_run").select(ns).run()
    assert not at.exception, at.exception
    pairs = frame_with(at, "arm · on")
    assert list(pairs["switch"]) == ["reward normalisation", "asynchronous adoption", "staleness filter"]
    p = pairs.set_index("switch")
    assert list(p["arm · on"]) == ["reward_norm", "adoption_lag", "staleness"]
    assert list(p["arm · off"]) == ["baseline", "baseline", "adoption_lag"]  # each against its control
    assert p.loc["staleness filter", "steps to converge · off"] == "never"  # adoption_lag's, not the baseline's
    assert p.loc["reward normalisation", "steps to converge · on"] == "2,048"
    assert p.loc["reward normalisation", "steps to converge · off"] == "3,072"
    assert p.loc["asynchronous adoption", "steps to converge · on"] == "never"
    assert p.loc["asynchronous adoption", "return std · on"] == f"{NS_ARMS[2]['return_std']:,.2f}"
    assert p.loc["reward normalisation", "production gap · on"] == "-10.0%"
    speed = datasets(charts(at)["steps to converge (speed)"])[0]
    assert len(speed) == 6 and set(speed["setting"]) == {"on", "off"}


def test_pipeline_study_per_agent(other_store):
    path, ns, pipe = other_store
    at = app_page("credit")  # the newest study first: the pipeline one
    assert pipe in at.selectbox(key="credit_run").value
    agents = frame_with(at, "assigned local (mean)").set_index("agent")
    assert agents.loc["picker", "true (mean)"] == pytest.approx(2.0)
    assert agents.loc["packer", "assigned global (mean)"] == pytest.approx(1.0)
    assert metric(at, "Traceability r · global") == "undefined"  # a constant credit: no spread
    assert metric(at, "Traceability r · local") == "1.00"


def test_no_study_names_the_command(tmp_path, monkeypatch):
    path = tmp_path / "empty.duckdb"
    with Store(path)._write():
        pass
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = app_page("credit")
    assert at.title[0].value == "Credit"
    assert any(i.value.startswith(f"No studies in this store yet: run `desim study credit scenarios/train-tiny.toml "
                                  f"--store {path}`") for i in at.info), [i.value for i in at.info]


# --------------------------------------------------------------------------- a real `desim study credit`

@pytest.fixture(scope="module")
def real_store(credit_study_store):
    """A credit study made by the real command (``desim study credit``), shared with the browser test."""
    path = credit_study_store
    (run,) = [r for r in Store(path).list_runs() if r["kind"] == "study"]
    with default_store(path):
        yield path, run


def test_real_credit_study_arms_table_is_the_stores(real_store):
    path, run = real_store
    arms = Store(path).table(T.STUDY_ARMS.name, run["run_id"]).to_pandas()
    assert len(arms) >= 3 and {"global", "difference", "shaped"} <= set(arms["arm"])
    at = app_page("credit")
    assert at.selectbox(key="credit_run").value == run["run_id"]
    (label,) = at.selectbox(key="credit_run").options  # the study's label: what it is, not only its id
    assert label.startswith("train-tiny · ") and label.endswith(run["run_id"])
    assert "credit study" in label and "2 seeds" in label and "4,096 steps" in label
    assert metric(at, "Arms") == str(len(arms)) and metric(at, "Seeds per arm") == "2"
    table = frame_with(at, "traceability (rated)").set_index("arm")
    assert list(table.index) == list(arms["arm"])
    for a in arms.itertuples(index=False):
        r = table.loc[a.arm]
        assert r["seeds"] == a.seeds == 2
        assert r["return (mean)"] == f"{a.return_mean:,.2f}" and r["return std"] == f"{a.return_std:,.2f}"
        assert r["converged"] == f"{a.converged_frac:.0%}"
        assert (r["stability (rated)"], r["traceability (rated)"], r["complexity (rated)"]) == (
            a.rated_stability, a.rated_traceability, a.rated_complexity)
        assert a.rated_stability and a.rated_traceability and a.rated_complexity  # the credit study rates every arm
        assert r["params"] == f"{int(a.params):,}" and int(a.params) > 0
        assert r["deliveries/h tick"] == f"{a.dph_tick_mean:,.1f}" and r["deliveries/h event"] == f"{a.dph_event_mean:,.1f}"
        trace = r["traceability r"]
        if pd.isna(a.traceability_mean):
            assert trace == "undefined"  # never 0
        else:
            assert trace.startswith(f"{a.traceability_mean:.2f}")
    cs = charts(at)
    for a in arms.itertuples(index=False):
        want = f"{a.arm}: r = {r_text(a.traceability_mean)} · pooled {r_text(a.traceability_pooled_mean)}"
        assert want in cs, (want, list(cs))  # an undefined r reads "undefined", never 0
    curves = Store(path).table(T.STUDY_CURVES.name, run["run_id"]).to_pandas()
    bands = datasets(cs["held-out return per arm (mean across seeds, band min–max)"])[0]
    want = curves.groupby(["arm", "step"])["eval_return"].agg(["mean", "min", "max"]).reset_index()
    got = bands.merge(want, on=["arm", "step"])
    assert len(got) == len(want) > 0
    assert np.allclose(got["mean_x"], got["mean_y"]) and np.allclose(got["lo"], got["min"]) and np.allclose(got["hi"], got["max"])
    seeds = Store(path).table(T.STUDY_SEEDS.name, run["run_id"]).to_pandas()
    shown = datasets(cs["final return per seed (stability)"])[0]
    assert sorted(shown["final_return"].dropna()) == pytest.approx(sorted(seeds["final_return"].dropna()))


NS_STUDY = ["study", "nonstationarity", "scenarios/train-tiny.toml", "--seeds", "2", "--steps", "1024",
            "--episodes", "4", "--until", "120", "--evaluations", "2", "--eval-episodes", "2"]
PIPELINE_STUDY = ["study", "pipeline", "scenarios/warehouse-pipeline.toml", "--seeds", "1", "--until", "600"]


@pytest.fixture(scope="module")
def real_other_store(tmp_path_factory):
    """A nonstationarity study, then a pipeline study (the newest), made by the real commands."""
    import subprocess
    import sys

    from dashboard_support import ROOT

    path = tmp_path_factory.mktemp("credit-cli-other") / "s.duckdb"
    for cmd in (NS_STUDY, PIPELINE_STUDY):
        done = subprocess.run([sys.executable, "-m", "desim.app.cli", *cmd, "--store", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    pipe, ns = [r for r in Store(path).list_runs() if r["kind"] == "study"]
    assert (pipe["config"]["study"], ns["config"]["study"]) == ("pipeline", "nonstationarity")
    with default_store(path):
        yield path, ns, pipe


def test_real_nonstationarity_study_each_switch_against_its_control(real_other_store):
    path, ns, pipe = real_other_store
    arms = Store(path).table(T.STUDY_ARMS.name, ns["run_id"]).to_pandas().set_index("arm")
    control = {a["name"]: a["control"] for a in ns["config"]["arms"] if a.get("control")}
    on = arms[arms["setting"] == "on"]
    assert len(on) >= 4 and control  # every switch on, each against the arm it is compared with
    at = app_page("credit")
    at.selectbox(key="credit_run").select(ns["run_id"]).run()
    assert not at.exception, at.exception
    pairs = frame_with(at, "arm · on").set_index("switch")
    assert list(pairs.index) == list(on["switch"])
    for arm, a in on.iterrows():
        p = pairs.loc[a["switch"]]
        off = control.get(arm) or "baseline"
        assert (p["arm · on"], p["arm · off"]) == (arm, off)
        for setting, name in (("on", arm), ("off", off)):
            b = arms.loc[name]
            assert p[f"return std · {setting}"] == f"{b['return_std']:,.2f}"
            assert p[f"converged · {setting}"] == f"{b['converged_frac']:.0%}"
            assert p[f"steps to converge · {setting}"] == ("never" if pd.isna(b["steps_to_converge_mean"])
                                                           else f"{b['steps_to_converge_mean']:,.0f}")
    assert pairs.loc["staleness filter", "arm · off"] == "adoption_lag"  # not the all-off baseline
    speed = datasets(charts(at)["return std across seeds (stability)"])[0]
    assert len(speed) == 2 * len(on) and set(speed["setting"]) == {"on", "off"}


def test_real_pipeline_study_per_agent(real_other_store):
    path, ns, pipe = real_other_store
    rows = Store(path).table("pipeline_credit", pipe["run_id"]).to_pandas()
    at = app_page("credit")  # the newest study first
    assert at.selectbox(key="credit_run").value == pipe["run_id"]
    agents = frame_with(at, "assigned local (mean)").set_index("agent")
    want = rows.groupby("agent")[["true", "assigned_global", "assigned_local"]].sum()
    assert sorted(agents.index) == sorted(want.index)
    assert np.allclose(agents.loc[want.index, "true (sum)"], want["true"])
    assert np.allclose(agents.loc[want.index, "assigned local (sum)"], want["assigned_local"])
    s = pipe["summary"]
    assert metric(at, "Traceability r · global") == r_text(s["traceability_global"])
    assert metric(at, "Traceability r · local") == r_text(s["traceability_local"])
