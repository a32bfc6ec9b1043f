"""The dashboard's pages under streamlit.testing (AppTest), on a store filled with real short runs."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import ToyTrainer, fill_store  # noqa: E402
from desim.dashboards import data as D  # noqa: E402
from desim.store import Store  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "dashboards" / "app.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    path = tmp / "store.duckdb"
    ids = fill_store(path, tmp, until=240.0, train_seeds=2)
    old = os.environ.get("DESIM_STORE")
    os.environ["DESIM_STORE"] = str(path)
    yield path, ids
    if old is None:
        os.environ.pop("DESIM_STORE", None)
    else:
        os.environ["DESIM_STORE"] = old


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def frame_with(at: AppTest, column: str):
    """The first table on the page with ``column`` (AppTest does not find dataframes by key)."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with column {column!r}"
    return found[0]


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def chart_data(chart) -> set[str]:
    """Names (content hashes) of a chart's datasets: they change when its data does."""
    spec = json.loads(chart.proto.spec)
    names = {d.name for d in chart.proto.datasets}
    names |= {json.dumps(layer.get("data")) for layer in spec.get("layer", []) if "values" in (layer.get("data") or {})}
    return names


# --------------------------------------------------------------------------- Runs


def test_runs_page_lists_filters_and_picks(store):
    path, ids = store
    at = app()
    assert at.title[0].value == "Runs"
    n = len(ids)
    assert metric(at, "Runs shown") == f"{n} of {n}"
    table = at.dataframe[0].value
    assert set(table["run_id"]) == set(ids.values())
    row = table.set_index("run_id").loc[ids["warehouse-small-event.toml:1"]]
    assert row["scenario"] == "warehouse-small-event" and row["brain"] == "greedy" and row["seed"] == 1
    assert row["deliveries"] > 0 and row["status"] == "complete"

    at.multiselect(key="runs_kind").select("train").run()
    assert metric(at, "Runs shown") == f"4 of {n}"
    assert set(at.dataframe[0].value["kind"]) == {"train"}
    at.multiselect(key="runs_kind").unselect("train").run()
    at.multiselect(key="runs_scenario").select("network-partition").run()
    assert metric(at, "Runs shown") == f"1 of {n}"

    # pick runs to compare: shared through session state and the URL
    at.multiselect(key="runs_scenario").unselect("network-partition").run()
    a, b = ids["warehouse-small-event.toml:2"], ids["warehouse-small-event.toml:1"]
    at.multiselect(key="runs_compare").select(a).select(b).run()
    assert not at.exception
    assert at.session_state["selected_runs"] == [a, b]
    assert at.query_params["runs"] in (f"{a},{b}", [f"{a},{b}"])
    compare = at.dataframe[1].value
    assert list(compare["run_id"]) == [a, b]  # newest first, as listed
    assert len(charts(at)) >= 3

    # the other pages open the first picked run
    at.switch_page("views/contention.py").run()
    assert at.selectbox(key="contention_run").value == a
    at.switch_page("views/network.py").run()
    assert at.selectbox(key="network_run").value == a
    at.switch_page("views/runs.py").run()
    assert at.multiselect(key="runs_compare").value == [a, b]


# --------------------------------------------------------------------------- Contention


def test_contention_page_changes_with_the_run(store):
    path, ids = store
    at = app("contention")
    assert at.title[0].value == "Contention"
    greedy, rnd = ids["warehouse-small-event.toml:1"], ids["warehouse-small-event.toml:2"]
    at.selectbox(key="contention_run").select(greedy).run()
    heat_greedy = chart_data(charts(at)[0])
    blocked_greedy = metric(at, "Blocked moves")
    at.selectbox(key="contention_run").select(rnd).run()
    assert not at.exception
    heat_random = chart_data(charts(at)[0])
    assert heat_random != heat_greedy
    assert int(metric(at, "Blocked moves").replace(",", "")) > int(blocked_greedy.replace(",", ""))

    spec = json.loads(charts(at)[0].proto.spec)
    assert spec["layer"][0]["encoding"]["color"]["field"] == "blocked"
    assert any(layer["mark"]["type"] == "line" for layer in spec["layer"])  # robots' paths
    at.radio(key="contention_metric").set_value("collisions").run()
    spec = json.loads(charts(at)[0].proto.spec)
    assert spec["layer"][0]["encoding"]["color"]["field"] == "collisions"
    at.toggle(key="contention_paths").set_value(False).run()
    spec = json.loads(charts(at)[0].proto.spec)
    assert not any(layer["mark"]["type"] == "line" for layer in spec["layer"])

    # the run with a partition at 60 s: faults (and deadlocks) on the timeline, throughput below
    at.selectbox(key="contention_run").select(ids["partitioned"]).run()
    assert not at.exception
    assert "Deadlocks and faults over time" in [s.value for s in at.subheader]
    timeline = json.loads(charts(at)[1].proto.spec)
    assert any(layer["mark"]["type"] == "rect" for layer in timeline["layer"])
    assert at.selectbox(key="contention_series").value == "throughput_per_hour"
    at.selectbox(key="contention_series").select("orders_pending").run()
    assert json.loads(charts(at)[2].proto.spec)["layer"][-1]["encoding"]["y"]["title"] == "orders_pending"

    # where robots' time goes: a bar for all robots and one per robot, the bottleneck named from the run's table
    assert "Where robots' time goes" in [s.value for s in at.subheader]
    spec = json.loads(charts(at)[-1].proto.spec)
    assert spec["encoding"]["y"]["stack"] == "zero" and spec["encoding"]["color"]["field"] == "state"
    rt = Store(path).table("robot_time", ids["partitioned"]).to_pandas()
    bars, shares, bottleneck = D.robot_time_frame(rt)
    assert set(bars["tick"]) == {"all robots"} | {f"robot {r}" for r in rt["robot"]}
    states = [c for c in rt.columns if c not in ("run_id", "robot", "zone")]
    totals = rt[states].sum()
    want = max(("blocked", "waiting_obs", "waiting_command", "idle"), key=lambda k: totals[k])
    assert bottleneck == want and abs(sum(shares.values()) - 1) < 1e-9
    assert abs(shares[want] - totals[want] / totals.sum()) < 1e-9
    assert any(f"Bottleneck: **{want}**" in c.value for c in at.caption), [c.value for c in at.caption]


# --------------------------------------------------------------------------- Network


def test_network_page_partitions_histograms_conservation(store):
    path, ids = store
    at = app("network")
    assert at.title[0].value == "Network"
    at.selectbox(key="network_run").select(ids["network"]).run()
    assert not at.exception
    # the split of zone-1 from the core (40-60 s) cuts the zone-1 <-> core link
    at.slider(key="network_t").set_value(50.0).run()
    assert metric(at, "Links cut at this time") == "1"
    topo = json.loads(charts(at)[0].proto.spec)
    assert any(layer["mark"].get("color") == "#d62728" for layer in topo["layer"])  # the cut edge, red
    at.slider(key="network_t").set_value(20.0).run()
    assert metric(at, "Links cut at this time") == "0"
    at.slider(key="network_t").set_value(85.0).run()  # the latency spike on every link
    assert int(metric(at, "Links degraded")) > 10

    hist_before = chart_data(charts(at)[1])
    links = at.multiselect(key="network_links")
    names = [o.rsplit(" (", 1)[0] for o in links.options]  # options show "src → dst (N samples)"
    other = [o for o in names if o not in links.value][0]
    links.set_value([other]).run()
    assert chart_data(charts(at)[1]) != hist_before

    assert int(metric(at, "Late drops").replace(",", "")) > 0
    assert metric(at, "Mean added delay").endswith(" ms")
    ok = [s for s in at.success]
    assert ok and ok[0].icon == ":material/check_circle:"
    assert re.fullmatch(r"sent \+ duplicated = ([\d,]+) = \1 = delivered \+ dropped \+ in flight", ok[0].value)
    cons = frame_with(at, "term")
    assert "dropped: partition" in set(cons["term"])
    assert not [c for c in at.caption if "recorded before desim stored its network" in c.value]

    # the topology is the one the run stored (net_nodes), not rebuilt from its scenario
    from desim.dashboards import data as D

    nodes = D.read_table(str(path), "net_nodes", [ids["network"]])
    g = D.topology(D.read_table(str(path), "net_links", [ids["network"]]), nodes)
    assert set(g.nodes) == set(nodes["node"]) and g.number_of_nodes() == 1 + 3 + 12 + 3
    assert g.nodes["core"]["role"] == "switch" and g.nodes["zone-1"]["role"] == "controller"
    assert g.nodes["inventory"]["role"] == "service" and g.nodes["robot-1-0"]["role"] == "robot"


def test_topology_from_stored_nodes_and_links():
    import pandas as pd

    from desim.dashboards import data as D

    links = pd.DataFrame({"src": ["core", "zone-0"], "dst": ["zone-0", "core"], "sent": [3, 4],
                          "mean_delay": [0.002, None], "expected_delay": [0.002, 0.004]})
    nodes = pd.DataFrame({"node": ["core", "zone-0", "spare"], "role": ["switch", "controller", "service"],
                          "zone": [None, 0, None]})
    g = D.topology(links, nodes)
    assert g.edges["core", "zone-0"]["latency"] == pytest.approx(0.003) and g.edges["core", "zone-0"]["sent"] == 7
    assert {n: d["role"] for n, d in g.nodes(data=True)} == {"core": "switch", "zone-0": "controller",
                                                             "spare": "service"}
    old = D.topology(links)  # a run recorded before desim stored its network: no roles, never a re-parse
    assert set(old.nodes) == {"core", "zone-0"} and {d["role"] for _, d in old.nodes(data=True)} == {"unknown"}
    pos = D.layout(g)
    frame_nodes, frame_edges = D.topology_frames(g, pos, {frozenset(("core", "zone-0")): "cut"})
    assert len(frame_nodes) == 3 and frame_edges["state"].tolist() == ["cut"]


def test_network_page_on_a_run_recorded_before_net_nodes(tmp_path, monkeypatch):
    from desim.store import Store

    path = tmp_path / "old.duckdb"
    store = Store(path)
    with store.run("run", scenario="old-network", seed=1) as run:
        run.append("net_links", {"src": ["core", "zone-0"], "dst": ["zone-0", "core"], "sent": [2, 2],
                                 "mean_delay": [0.001, 0.001], "expected_delay": [0.001, 0.001]})
        run.summary.update(sim_time=10.0)
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = app("network")
    assert [c for c in at.caption if "recorded before desim stored its network" in c.value]
    assert metric(at, "Links cut at this time") == "0"


# --------------------------------------------------------------------------- Convergence


def test_convergence_page_curves(store):
    path, ids = store
    at = app("convergence")
    assert at.title[0].value == "Convergence"
    assert metric(at, "Training runs") == "4"
    assert metric(at, "Algorithms") == "2"
    cs = charts(at)
    titles = [json.loads(c.proto.spec).get("title") for c in cs]
    assert {"return", "loss", "entropy", "value_error"} <= set(titles)
    assert "per-agent credit" in titles
    spec = json.loads(cs[0].proto.spec)
    assert spec["layer"][0]["encoding"]["x"]["title"] == "environment steps"
    at.segmented_control(key="conv_axis").set_value("wall time").run()
    assert json.loads(charts(at)[0].proto.spec)["layer"][0]["encoding"]["x"]["title"] == "wall time (s)"
    at.multiselect(key="conv_algos").set_value(["reinforce"]).run()
    assert metric(at, "Algorithms") == "1"


def test_convergence_follows_a_running_training(store):
    """A run still training (this process writes it) shows up, and its new rows show on the next refresh."""
    from desim.store import Store

    path, _ids = store
    st_ = Store(path)
    run_id = st_.begin_run("train", scenario="toy-climbing-game", seed=9, brain="reinforce_live",
                           config={"algo": "reinforce_live"})
    try:
        tr = ToyTrainer("reinforce_live", 9)
        st_.append(run_id, "train_curves", tr.rows(5))
        at = app("convergence")
        assert metric(at, "Running now") == "1"
        first = metric(at, "Latest step (running)")
        st_.append(run_id, "train_curves", tr.rows(40))
        import time

        time.sleep(2.1)  # the cache key of a running store moves every 2 s
        at.run()
        assert not at.exception
        assert int(metric(at, "Latest step (running)").replace(",", "")) > int(first.replace(",", ""))
    finally:
        st_.finish_run(run_id)


def test_convergence_reads_a_real_desim_train_run(tmp_path, monkeypatch):
    """The page against what the real trainer writes (a very short `desim train`)."""
    train = pytest.importorskip("desim.policies.train", reason="desim train not available").train
    store = tmp_path / "store.duckdb"
    train(str(Path(APP).parent.parent / "scenarios" / "train-tiny.toml"), "ippo", 1024, device="cpu", seed=0,
          store_path=store, out_dir=tmp_path / "ck", progress=False,
          train_cfg={"eval_episodes": 1, "episode_steps": 64, "log_every_s": 1e-9})
    monkeypatch.setenv("DESIM_STORE", str(store))
    at = app("convergence")
    assert metric(at, "Training runs") == "1" and metric(at, "Algorithms") == "1"
    assert at.multiselect(key="conv_algos").value == ["ippo"]
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert {"return", "loss", "entropy", "value_error", "per-agent credit"} <= set(titles)
    more = at.multiselect(key="conv_more")
    assert "value_loss" in more.options
    more.set_value(["value_loss"]).run()
    assert "value_loss" in [json.loads(c.proto.spec).get("title") for c in charts(at)]


# --------------------------------------------------------------------------- What-if


def test_whatif_runs_in_background_and_compares(store):
    from desim.dashboards import whatif as W
    from desim.store import Store

    path, _ids = store
    before = len(Store(path).list_runs())
    at = app("whatif")
    assert at.title[0].value == "What-if"
    assert at.selectbox(key="whatif_base").value.name == "warehouse-small-event.toml"
    at.slider(key="whatif_warehouse-small-event_robots").set_value(6).run()
    assert at.number_input(key="whatif_warehouse-small-event_until").value == 2700.0  # covers the partition and peak
    assert not at.warning
    at.number_input(key="whatif_warehouse-small-event_until").set_value(120.0).run()
    at.number_input(key="whatif_reps").set_value(1).run()  # one run per arm (replications: see below)
    assert "robots = 6" in " ".join(c.value for c in at.caption)
    assert "will not happen" in at.warning[0].value  # the base's partition at 1200 s is past 120 s
    at.button(key="whatif_run").click().run()
    assert not at.exception
    job = W.get_job(at.session_state["whatif_job"])
    assert job is not None
    job.wait(60)
    assert job.status == "done", (job.error, job.message)
    at.run()
    assert not at.exception
    runs = Store(path).list_runs()
    assert len(runs) == before + 2  # the baseline and the what-if
    new = Store(path).get_run(job.run_id)
    assert W.recorded_changes(new["scenario_text"]) == {"robots": 6} and new["config"]["brain"] is None
    assert new["summary"]["robots"] == 6 and new["status"] == "complete"
    assert new["scenario"] == "warehouse-small-event-whatif"
    base = Store(path).get_run(job.baseline_id)
    assert base["summary"]["robots"] == 4 and base["config"]["until"] == 120.0
    shown = frame_with(at, "figure")
    assert list(shown["figure"])[:2] == ["throughput / h", "deliveries"]
    assert shown.iloc[0]["what-if"] == new["summary"]["throughput_per_hour"]
    assert set(shown["verdict"]) == {"one replication: no interval"} and shown["low"].isna().all()
    assert metric(at, "deadlocks") is not None

    # a second what-if on the same base, seed and length reuses the baseline
    at.selectbox(key="whatif_warehouse-small-event_brain").select("random").run()
    at.button(key="whatif_run").click().run()
    job2 = W.get_job(at.session_state["whatif_job"]).wait(60)
    assert job2.status == "done" and job2.baseline_reused and job2.baseline_id == job.baseline_id
    assert len(Store(path).list_runs()) == before + 3
    assert Store(path).get_run(job2.run_id)["brain"] == "random"


WHATIF = "whatif_warehouse-small-event_"


def test_whatif_replications_pair_seeds_and_show_intervals(store):
    """N runs per arm with the same seeds in both (common random numbers); each headline difference
    with its paired 95% interval; a tiny change is not significant, and the page says so."""
    from desim.analysis import paired_diff_ci
    from desim.dashboards import whatif as W
    from desim.store import Store

    path, _ids = store
    before = {r["run_id"] for r in Store(path).list_runs()}
    at = app("whatif")
    assert at.number_input(key="whatif_reps").value == 3  # the default: a few replications
    at.slider(key=WHATIF + "delay_mean").set_value(20.5).run()  # 20 ms -> 20.5 ms: a tiny change
    at.number_input(key=WHATIF + "until").set_value(150.0).run()
    at.number_input(key="whatif_seed").set_value(5).run()
    at.number_input(key="whatif_reps").set_value(3).run()
    assert "seeds 5..7" in " ".join(c.value for c in at.caption)
    at.button(key="whatif_run").click().run()
    job = W.get_job(at.session_state["whatif_job"]).wait(120)
    assert job.status == "done", (job.error, job.message)
    at.run()
    assert not at.exception, at.exception

    store_ = Store(path)
    new = [r for r in store_.list_runs() if r["run_id"] not in before]
    assert len(new) == 6 and len(job.baseline_ids) == 3 and len(job.run_ids) == 3
    bases = [store_.get_run(r) for r in job.baseline_ids]
    whatifs = [store_.get_run(r) for r in job.run_ids]
    assert [r["seed"] for r in bases] == [r["seed"] for r in whatifs] == [5, 6, 7]  # the same seeds in both arms
    assert all(r["config"]["until"] == 150.0 for r in bases + whatifs)
    assert all(W.recorded_changes(r["scenario_text"]) == {"delay_mean": 0.0205} for r in whatifs)
    assert all(W.recorded_changes(r["scenario_text"]) is None for r in bases)

    shown = frame_with(at, "verdict").set_index("figure")
    for key, label in (("throughput_per_hour", "throughput / h"), ("deliveries", "deliveries")):
        d = paired_diff_ci([r["summary"][key] for r in bases], [r["summary"][key] for r in whatifs])
        row = shown.loc[label]
        assert row["baseline"] == pytest.approx(d.mean_a) and row["what-if"] == pytest.approx(d.mean_b)
        assert row["diff"] == pytest.approx(d.mean)
        assert row["low"] == pytest.approx(d.low) and row["high"] == pytest.approx(d.high)
        assert row["verdict"] == ("significant" if d.significant else "not significant")
    assert (shown["low"] <= shown["diff"]).all() and (shown["diff"] <= shown["high"]).all()
    ns = shown[shown["verdict"].str.startswith("not significant")]
    assert "throughput / h" in ns.index  # half a millisecond does not change throughput measurably
    said = " ".join(m.value for m in at.markdown)
    assert "**Not significant** (the interval contains 0: it could be noise)" in said
    assert all(label in said for label in ns.index)
    assert "95% interval" in (at.metric[0].help or "")
    assert any("3 runs:" in s.value and "seeds 5..7 in both arms" in s.value for s in at.success)
    chart = [c for c in charts(at) if "95% interval" in json.dumps(json.loads(c.proto.spec).get("title"))]
    assert chart, "the differences with their intervals are drawn"

    # the same what-if again: every baseline replication is reused, only the what-if runs again
    at.button(key="whatif_run").click().run()
    job2 = W.get_job(at.session_state["whatif_job"]).wait(120)
    assert job2.status == "done" and job2.baseline_reused and job2.baseline_ids == job.baseline_ids
    assert len(store_.list_runs()) == len(before) + 9


def test_whatif_with_nothing_changed_runs_nothing(store):
    from desim.dashboards import whatif as W
    from desim.store import Store

    path, _ids = store
    before = len(Store(path).list_runs())
    at = app("whatif")
    at.number_input(key=WHATIF + "until").set_value(60.0).run()
    assert "nothing changed yet" in " ".join(c.value for c in at.caption)
    at.button(key="whatif_run").click().run()
    assert not at.exception
    job = W.get_job(at.session_state["whatif_job"])
    assert job.status == "unchanged" and job.thread is None and not job.run_ids and not job.baseline_ids
    at.run()
    assert any(i.value.startswith("Nothing was changed from the base scenario, so nothing was simulated")
               for i in at.info), [i.value for i in at.info]
    assert not [s for s in at.success if "vs baseline" in s.value]
    # a knob set back to the base's value is no change either
    at.slider(key=WHATIF + "robots").set_value(6).run()
    at.slider(key=WHATIF + "robots").set_value(4).run()
    at.button(key="whatif_run").click().run()
    assert W.get_job(at.session_state["whatif_job"]).status == "unchanged"
    assert W.start_job(Path(APP).parent.parent / "scenarios" / "warehouse-small-event.toml", path,
                       {"brain": "greedy"}, until=60.0).status == "unchanged"  # the base's own brain
    time.sleep(0.1)
    assert len(Store(path).list_runs()) == before


def test_whatif_warns_when_the_run_leaves_out_the_peak_or_a_fault(store):
    at = app("whatif")
    until = at.number_input(key=WHATIF + "until")
    assert until.value == 2700.0 and not at.warning  # the default covers the peak (1800-2400 s) and the partition
    until.set_value(120.0).run()
    text = at.warning[0].value
    assert "The order peak at 2x the rate (1800–2400 s) starts after the 120 simulated seconds: it will not happen" in text
    assert "The partition of zone-1 (1200–1260 s) starts after the 120 simulated seconds" in text
    at.number_input(key=WHATIF + "until").set_value(1230.0).run()
    text = at.warning[0].value
    assert "The run ends at 1230 s, during the partition of zone-1 (1200–1260 s): only part of it is simulated." in text
    at.number_input(key=WHATIF + "until").set_value(2000.0).run()
    assert [w.value for w in at.warning] == [
        "- The run ends at 2000 s, during the order peak at 2x the rate (1800–2400 s): only part of it is simulated."]
    # a partition moved early enough, and no peak left out: no warning
    at.number_input(key=WHATIF + "until").set_value(2700.0).run()
    at.selectbox(key=WHATIF + "part").select("zone-0").run()
    at.number_input(key=WHATIF + "pstart").set_value(2650.0).run()
    assert "The run ends at 2700 s, during the partition of zone-0 (2650–2710 s)" in at.warning[0].value
    at.number_input(key=WHATIF + "pstart").set_value(100.0).run()
    assert not at.warning


def test_whatif_offers_a_trained_checkpoint_as_brain(tmp_path, monkeypatch):
    """A real (very short) `desim train` run: its checkpoint is a brain choice, and a what-if with it runs."""
    train = pytest.importorskip("desim.policies.train", reason="desim train not available").train
    from desim.dashboards import whatif as W
    from desim.store import Store

    store = tmp_path / "store.duckdb"
    result = train(str(Path(APP).parent.parent / "scenarios" / "train-tiny.toml"), "ippo", 1024, device="cpu", seed=0,
                   store_path=store, out_dir=tmp_path / "elsewhere" / "ck", progress=False,
                   train_cfg={"eval_episodes": 1, "episode_steps": 64, "log_every_s": 1e-9})
    spec = f"checkpoint:{Path(result['checkpoint']).resolve()}"
    monkeypatch.setenv("DESIM_STORE", str(store))
    at = app("whatif")
    at.selectbox(key="whatif_base").select(Path(APP).parent.parent / "scenarios" / "warehouse-tiny-event.toml").run()
    k = "whatif_warehouse-tiny-event_"
    brain = at.selectbox(key=k + "brain")
    # recorded by the training run (its out_dir is not under a checkpoints/ folder); shown by folder and file
    assert "trained: ck/latest.pt" in brain.options and "trained: ck/ippo-v0001.pt" in brain.options
    brain.select(spec).run()
    assert at.selectbox(key=k + "brain").value == spec and f"brain = {spec}" in " ".join(c.value for c in at.caption)
    at.number_input(key=k + "until").set_value(60.0).run()
    at.number_input(key="whatif_reps").set_value(1).run()
    at.button(key="whatif_run").click().run()
    job = W.get_job(at.session_state["whatif_job"]).wait(120)
    assert job.status == "done", (job.error, job.message)
    run = Store(store).get_run(job.run_id)
    assert run["brain"] == spec and run["summary"]["brain"] == spec and run["status"] == "complete"
    assert Store(store).get_run(job.baseline_id)["brain"] == "greedy"


# --------------------------------------------------------------------------- empty store


@pytest.mark.parametrize("page,text", [
    (None, "No runs in this store yet."),
    ("capacity", "No sweeps in this store yet: run `desim sweep scenarios/sweeps/robots-small.toml --store "),
    ("convergence", "No training runs yet: run `desim train …`."),
    ("contention", "No warehouse runs in this store yet."),
    ("network", "No runs with network data in this store yet."),
])
def test_empty_store_says_so(tmp_path, monkeypatch, page, text):
    path = tmp_path / "empty.duckdb"
    with Store(path)._write():  # a store with no runs in it
        pass
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = app(page)
    assert any(i.value.startswith(text) for i in at.info), [i.value for i in at.info]


@pytest.mark.parametrize("page", [None, "convergence", "contention", "network", "whatif", "capacity"])
def test_a_missing_store_is_named_with_a_command_that_fills_it(tmp_path, monkeypatch, page):
    path = tmp_path / "nothing" / "store.duckdb"
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = app(page)
    assert not at.exception, at.exception
    (msg,) = [i.value for i in at.info]
    assert f"No store at `{path}`" in msg and f"--store {path}`" in msg  # the suggested command writes to THIS store
    assert not (tmp_path / "nothing").exists()  # reading never creates a store


@pytest.mark.parametrize("page", [None, "convergence", "contention", "network", "whatif", "capacity"])
def test_a_file_that_is_not_a_store_is_one_line_on_every_page(tmp_path, monkeypatch, page):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("my notes, not a store\n")
    monkeypatch.setenv("DESIM_STORE", str(bad))
    at = app(page)
    assert not at.exception, at.exception
    assert [e.value for e in at.error] and all(str(bad) in e.value and "\n" not in e.value for e in at.error)
    assert bad.read_text() == "my notes, not a store\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.duckdb"]
