"""The dashboard's pages under streamlit.testing (AppTest), on a store filled with real short runs."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import ToyTrainer, fill_store  # noqa: E402

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
    assert json.loads(charts(at)[-1].proto.spec)["layer"][-1]["encoding"]["y"]["title"] == "orders_pending"


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
    assert at.number_input(key="whatif_warehouse-small-event_until").value == 1500.0  # covers the partition
    at.number_input(key="whatif_warehouse-small-event_until").set_value(120.0).run()
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
    assert metric(at, "deadlocks") is not None

    # a second what-if on the same base, seed and length reuses the baseline
    at.selectbox(key="whatif_warehouse-small-event_brain").select("random").run()
    at.button(key="whatif_run").click().run()
    job2 = W.get_job(at.session_state["whatif_job"]).wait(60)
    assert job2.status == "done" and job2.baseline_reused and job2.baseline_id == job.baseline_id
    assert len(Store(path).list_runs()) == before + 3
    assert Store(path).get_run(job2.run_id)["brain"] == "random"


# --------------------------------------------------------------------------- empty store


@pytest.mark.parametrize("page,text", [
    (None, "No runs in this store yet."),
    ("convergence", "No training runs yet: run `desim train …`."),
    ("contention", "No warehouse runs in this store yet."),
    ("network", "No runs with network data in this store yet."),
])
def test_empty_store_says_so(tmp_path, monkeypatch, page, text):
    monkeypatch.setenv("DESIM_STORE", str(tmp_path / "nothing" / "store.duckdb"))
    at = app(page)
    assert any(i.value.startswith(text) for i in at.info), [i.value for i in at.info]
    assert not (tmp_path / "nothing").exists()  # reading never creates a store


@pytest.mark.parametrize("page", [None, "convergence", "contention", "network", "whatif"])
def test_a_file_that_is_not_a_store_is_one_line_on_every_page(tmp_path, monkeypatch, page):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("my notes, not a store\n")
    monkeypatch.setenv("DESIM_STORE", str(bad))
    at = app(page)
    assert not at.exception, at.exception
    assert [e.value for e in at.error] and all(str(bad) in e.value and "\n" not in e.value for e in at.error)
    assert bad.read_text() == "my notes, not a store\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.duckdb"]
