"""The dashboard's pages under streamlit.testing (AppTest), on a store filled with real short runs."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import APP, ToyTrainer, default_store, fill_store, frame_with, metric  # noqa: E402
from dashboard_support import app_page as app  # noqa: E402
from desim.dashboards import data as D  # noqa: E402
from desim.dashboards import groups as G  # noqa: E402
from desim.dashboards import overtime as O  # noqa: E402
from desim.store import Store  # noqa: E402



@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    path = tmp / "store.duckdb"
    ids = fill_store(path, tmp, until=240.0)
    with default_store(path):
        yield path, ids


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
    at = app("runs")
    assert at.title[0].value == "Runs"
    n = len(ids)
    assert metric(at, "Runs shown") == f"{n} of {n}"
    sims, trains = frame_with(at, "deliveries"), frame_with(at, "env_steps")
    assert set(sims["run_id"]) | set(trains["run_id"]) == set(ids.values())
    row = sims.set_index("run_id").loc[ids["warehouse-small-event.toml:1"]]
    assert row["scenario"] == "warehouse-small-event" and row["brain"] == "greedy" and row["seed"] == 1
    assert row["deliveries"] > 0 and row["status"] == "complete"
    # training runs: their own table with training columns, no warehouse columns full of None
    assert set(trains["run_id"]) == {v for k, v in ids.items() if k.startswith(("ippo", "mappo"))}
    assert not {"deliveries", "throughput_per_hour", "deadlocks"} & set(trains.columns)
    assert not {"final_return", "env_steps"} & set(sims.columns)
    tr = trains.set_index("run_id")
    assert tr.loc[ids["ippo:0"], "env_steps"] == 2048 and tr.loc[ids["ippo:0"], "algo"] == "ippo"
    assert tr.loc[ids["ippo:0"], "promotions"] == 2
    assert tr.loc[ids["ippo:interrupted"], "status"] == "interrupted"

    at.multiselect(key="runs_kind").select("train").run()
    assert metric(at, "Runs shown") == f"5 of {n}"
    assert not [d for d in at.dataframe if "deliveries" in d.value.columns]
    at.multiselect(key="runs_kind").unselect("train").run()
    at.multiselect(key="runs_scenario").select("network-partition").run()
    assert metric(at, "Runs shown") == f"1 of {n}"

    # pick runs to compare: shared through session state and the URL
    at.multiselect(key="runs_scenario").unselect("network-partition").run()
    a, b, c = ids["warehouse-small-event.toml:2"], ids["warehouse-small-event.toml:1"], ids["warehouse-tiny.toml:1"]
    at.multiselect(key="runs_compare").select(a).select(b).select(c).run()
    assert not at.exception
    assert at.session_state["selected_runs"] == [a, b, c]
    assert at.query_params["runs"] in (f"{a},{b},{c}", [f"{a},{b},{c}"])
    compare = frame_with(at, "label").set_index("run_id")
    assert list(compare.index) == [c, a, b]  # newest first, as listed
    # the labels name the scenario and what differs (brain, seed), not run ids
    assert compare.loc[a, "label"] == "warehouse-small-event · random · seed 2"
    assert compare.loc[b, "label"] == "warehouse-small-event · greedy · seed 1"
    assert compare.loc[c, "label"].startswith("warehouse-tiny · greedy · seed 1")
    bars = [json.loads(x.proto.spec) for x in charts(at)]
    assert len(bars) >= 3 and all(sp["encoding"]["y"]["axis"]["labelLimit"] == 0 for sp in bars)  # never cut off

    # the other pages open the first picked run
    at.switch_page("views/contention.py").run()
    assert at.selectbox(key="contention_run").value == a
    at.switch_page("views/network.py").run()
    assert at.selectbox(key="network_run").value == a
    at.switch_page("views/runs.py").run()
    assert at.multiselect(key="runs_compare").value == [a, b, c]


def test_a_picked_run_a_page_cannot_show_is_named_not_swapped_silently(store):
    path, ids = store
    at = app("runs")
    at.multiselect(key="runs_compare").select(ids["ippo:0"]).run()
    for page, key in (("contention", "contention_run"), ("floor", "floor_run"), ("utilisation", "utilisation_run"),
                      ("network", "network_run")):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception
        (w,) = [w.value for w in at.warning]
        assert f"Run `{ids['ippo:0']}` (train of train-tiny)" in w and "cannot be shown here" in w, w
        assert at.selectbox(key=key).value != ids["ippo:0"]


def test_home_page_is_the_default_and_links_every_page(store):
    path, ids = store
    at = app()
    assert at.title[0].value == "desim dashboard"
    assert metric(at, "Runs in the store") == str(len(ids)) and metric(at, "Training runs") == "5"
    import ast

    tree = ast.parse(Path(APP).read_text())  # app.py's PAGES, read without running Streamlit
    pages = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", None) == "PAGES")
    paths = [p for _s, _t, _i, p in pages]
    assert paths[0] == "home" and len(set(paths)) == len(paths) and all(paths)  # the home page is served at /
    assert {"runs", "convergence", "over-time", "utilisation", "floor", "contention", "network"} <= set(paths)
    for script, *_ in pages:
        assert (Path(APP).parent / "views" / script).exists()


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

    # the run with a partition at 60 s: faults (and deadlocks) on the timeline
    at.selectbox(key="contention_run").select(ids["partitioned"]).run()
    assert not at.exception
    assert "Deadlocks and faults over time" in [s.value for s in at.subheader]
    timeline = json.loads(charts(at)[1].proto.spec)
    assert any(layer["mark"]["type"] == "rect" for layer in timeline["layer"])


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
    topo = next(json.loads(c.proto.spec) for c in charts(at)
                if str(json.loads(c.proto.spec).get("title", "")).startswith("network-partition at t ="))
    assert any(layer["mark"].get("color") == "#d62728" for layer in topo["layer"])  # the cut edge, red
    at.slider(key="network_t").set_value(20.0).run()
    assert metric(at, "Links cut at this time") == "0"
    at.slider(key="network_t").set_value(85.0).run()  # the latency spike on every link
    assert int(metric(at, "Links degraded")) > 10

    hist_before = chart_data(chart_named(at, "one-way delay (sampled per message)"))
    links = at.multiselect(key="network_links")
    names = [o.rsplit(" (", 1)[0] for o in links.options]  # options show "src → dst (N samples)"
    other = [o for o in names if o not in links.value][0]
    links.set_value([other]).run()
    assert chart_data(chart_named(at, "one-way delay (sampled per message)")) != hist_before

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


def test_network_over_time_matches_what_the_run_sent(store):
    """The traffic over time adds up to the run's own message balance; windows, roles and overlays."""
    path, ids = store
    rid = ids["network"]
    run = Store(path).get_run(rid)
    m = run["summary"]["messages"]
    flow = Store(path).table("net_flow", rid).to_pandas()
    totals = flow.groupby("outcome")["count"].sum()
    assert totals["sent"] == m["sent"] and totals["delivered"] == m["delivered"]
    assert {k.removeprefix("drop:"): v for k, v in totals.items() if k.startswith("drop:")} == m["dropped"]
    delays = Store(path).table("net_delays", rid).to_pandas()
    assert delays["t"].notna().all() and delays["t"].between(0, 120.0).all()  # every sample has its send time
    lat = Store(path).table("net_latency", rid).to_pandas()
    assert len(lat) == m["delivered"] and (lat["latency"] >= 0).all()  # short run: every delivery kept

    at = app("network")
    at.selectbox(key="network_run").select(rid).run()
    at.select_slider(key="network_window").set_value(10.0).run()
    assert not at.exception
    sent = layer_data(at, spec_of(at, "messages sent (solid) and delivered (dashed) per 10 s"), -1)
    assert sent["t"].max() == pytest.approx(120.0) and sent["t"].min() == pytest.approx(10.0)  # ends at the run's end
    assert sent[sent["q"] == "sent"]["latency"].sum() == m["sent"]
    lat_chart = layer_data(at, spec_of(at, "end-to-end latency per 10 s (by send time)"), -1)
    assert set(lat_chart["q"]) == {"p50", "p95", "p99"}
    drops = layer_data(at, spec_of(at, "drops by reason per 10 s"), -1)
    assert drops.groupby("reason")["count"].sum().to_dict() == {k: v for k, v in m["dropped"].items() if v}
    late = layer_data(at, spec_of(at, "jitter-buffer late drops per 10 s"), -1)
    assert late["late"].sum() == m["dropped"]["late"] > 0
    assert any(layer["mark"]["type"] == "rect" for layer in spec_of(at, "drops by reason per 10 s")["layer"])  # faults
    at.toggle(key="network_by_role").set_value(True).run()
    pairs = set(layer_data(at, spec_of(at, "end-to-end latency per 10 s (by send time)"), -1)["run"])
    assert pairs and all(" → " in p for p in pairs)
    at.toggle(key="network_by_role").set_value(False).run()
    other = ids["partitioned"]
    at.multiselect(key="network_compare").set_value([other]).run()
    runs_shown = set(layer_data(at, spec_of(at, "end-to-end latency per 10 s (by send time)"), -1)["run"])
    assert runs_shown == {"network-partition · seed 1 · 120 s",
                          "warehouse-small-event-early-partition · greedy · seed 3 · 240 s"}, runs_shown


def test_a_run_that_sent_no_message_says_so(store):
    path, ids = store
    at = app("network")
    at.selectbox(key="network_run").select(ids["warehouse-tiny.toml:1"]).run()  # tick tempo: no messages
    assert not at.exception
    assert any("used no network: it sent no messages (the tick tempo" in i.value for i in at.info)
    assert not charts(at) and not [m for m in at.metric if m.label == "Links cut at this time"]


# --------------------------------------------------------------------------- Over time, Utilisation, Floor


def test_over_time_rolling_throughput_backlog_latency(store):
    path, ids = store
    at = app("runs")
    a, b = ids["warehouse-small-event.toml:1"], ids["partitioned"]
    at.multiselect(key="runs_compare").select(a).select(b).run()
    at.switch_page("views/overtime.py").run()
    assert not at.exception and at.title[0].value == "Over time"
    assert at.multiselect(key="overtime_runs").value == [a, b]
    window = at.select_slider(key="overtime_window").value
    assert window == 60.0  # a quarter of these 240 s runs, within the few-minutes default
    thr = spec_of(at, f"throughput over the last {window:g} s")
    line = layer_data(at, thr, -1)
    # the labels say what differs (scenario, seed), not run ids
    assert set(line["run"]) == {"warehouse-small-event · seed 1", "warehouse-small-event-early-partition · seed 3"}
    assert thr["layer"][-1]["encoding"]["x"]["scale"]["domain"] == [0, 240.0]  # the axis ends at the runs' end
    assert line["t"].max() == pytest.approx(240.0)
    # each point is the deliveries in the window before it, per hour, from the run's own orders
    orders = Store(path).table("orders", b).to_pandas()
    mine = line[line["run"] == "warehouse-small-event-early-partition · seed 3"]
    for t, v in zip(mine["t"].iloc[::37], mine["throughput"].iloc[::37]):
        n = int(((orders["delivered"] > t - window) & (orders["delivered"] <= t)).sum())
        assert v == pytest.approx(n * 3600.0 / window)
    cum = layer_data(at, spec_of(at, "cumulative deliveries"), -1)
    last = cum[cum["run"] == "warehouse-small-event-early-partition · seed 3"]["deliveries"].iloc[-1]
    assert last == orders["delivered"].notna().sum()
    backlog = layer_data(at, spec_of(at, "order backlog (created, not yet delivered or failed)"), -1)
    assert (backlog["backlog"] >= 0).all()
    lat = layer_data(at, spec_of(at, f"order latency of deliveries in the last {window:g} s"), -1)
    assert set(lat["q"]) == {"p50", "p95", "p99"}
    assert any(layer["mark"]["type"] == "rect" for layer in thr["layer"])  # the partition, shaded
    before = chart_data(chart_named(at, f"throughput over the last {window:g} s"))
    at.select_slider(key="overtime_window").set_value(120.0).run()
    assert chart_data(chart_named(at, "throughput over the last 120 s")) != before


def test_utilisation_over_time_sums_to_the_run(store):
    path, ids = store
    rid = ids["partitioned"]
    series = Store(path).table("robot_time_series", rid).to_pandas()
    per_robot = Store(path).table("robot_time", rid).to_pandas().set_index("robot")
    last = series[series["t"] == series["t"].max()].set_index("robot")
    states = [c for c in per_robot.columns if c not in ("run_id", "zone")]
    assert (last[states] - per_robot[states]).abs().max().max() < 1e-6  # the last sample is the run's table
    frame = O.utilisation(series, 60.0)
    assert frame.groupby("t")["share"].sum().round(9).eq(1.0).all()
    assert frame["seconds"].sum() == pytest.approx(per_robot[states].to_numpy().sum())

    at = app("utilisation")
    at.selectbox(key="utilisation_run").select(rid).run()
    assert not at.exception
    bars, shares, bottleneck = D.robot_time_frame(per_robot.reset_index())
    assert metric(at, "Bottleneck") == bottleneck
    want = max(("blocked", "waiting_obs", "waiting_command", "idle"), key=lambda k: per_robot[k].sum())
    assert bottleneck == want
    summed = [json.loads(c.proto.spec) for c in charts(at) if json.loads(c.proto.spec).get("title") == "4 robots, summed"]
    assert summed and summed[0]["layer"][0]["encoding"]["y"]["stack"] == "normalize"
    assert any(layer["mark"]["type"] == "rect" for layer in summed[0]["layer"])  # the partition
    at.segmented_control(key="utilisation_view").set_value("per robot").run()
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert [t for t in titles if str(t).startswith("robot ")] == ["robot 0", "robot 1", "robot 2", "robot 3"]
    whole = spec_of(at, "where robots' time goes")
    assert whole["encoding"]["y"]["stack"] == "zero"
    assert any(f"Bottleneck: **{want}**" in c.value for c in at.caption)


def player_data(at: AppTest) -> dict:
    (frame,) = list(at.get("iframe"))
    html = frame.proto.srcdoc
    return json.loads(html.split("const D = ", 1)[1].split(", C = ", 1)[0])


def test_floor_playback_frames_follow_the_run(store):
    path, ids = store
    rid = ids["warehouse-small-event.toml:1"]
    at = app("floor")
    at.selectbox(key="floor_run").select(rid).run()
    assert not at.exception
    data = player_data(at)
    frames = Store(path).table("floor_frames", rid).to_pandas()
    assert len(data["t"]) == len(frames) == 480 and metric(at, "Frames") == "480"  # 240 s every 0.5 s
    assert data["t"][:3] == [0.0, 0.5, 1.0] and data["end"] == 240.0
    assert all(len(c) == 4 for c in data["cell"])  # 4 robots in every frame
    assert all(len(set(c)) == len(c) for c in data["cell"])  # never two robots on one cell
    floor = Store(path).table("contention", rid).to_pandas()
    w = int(floor["x"].max()) + 1
    goals = sorted((floor["y"] * w + floor["x"])[floor["cell"] == "goal"].tolist())
    assert data["goals"] == goals and data["w"] == w
    # the first frame is where the paths table starts, and the robots move
    paths = Store(path).table("paths", rid).to_pandas()
    first = paths[paths["t"] == 0].sort_values("robot")
    assert [int(c) for c in data["cell"][0]] == (first["y"] * w + first["x"]).tolist()
    assert data["cell"][0] != data["cell"][-1]
    # carried shelves ride on robots; requested shelves are known shelves
    assert any(c >= 0 for frame in data["cargo"] for c in frame)
    assert all(0 <= s < len(data["shelf0"]) for frame in data["req"] for s in frame)
    at.toggle(key="floor_heat").set_value(True).run()
    (frame,) = list(at.get("iframe"))
    assert 'id="heat" type="checkbox" checked' in frame.proto.srcdoc
    assert sum(data["heat"]) == int(floor["blocked"].sum() + floor["collisions"].sum())


def test_recording_leaves_the_trace_unchanged_and_stays_small(tmp_path):
    """Recording adds playback frames and traffic logs, reads only: the trace is the one `desim run` makes."""
    from dashboard_support import SCENARIOS, record

    from desim.app.runner import run
    from desim.app.scenario import load

    for name in ("warehouse-small-event.toml", "warehouse-tiny.toml"):
        summary = record(tmp_path / "s.duckdb", name, 2, 150.0)
        plain = run(load(SCENARIOS / name), 2, 150.0, file=str(SCENARIOS / name)).summary
        assert summary["trace_hash"] == plain["trace_hash"], name
    store = Store(tmp_path / "s.duckdb")
    tick = store.list_runs()[0]  # newest first: the tick-tempo run
    frames = store.table("floor_frames", tick["run_id"]).to_pandas()
    assert len(frames) == 150 and frames["t"].diff().dropna().eq(1.0).all()  # one frame per tick


# --------------------------------------------------------------------------- Convergence


def spec_of(at: AppTest, title: str) -> dict:
    found = [json.loads(c.proto.spec) for c in charts(at) if json.loads(c.proto.spec).get("title") == title]
    assert found, f"no chart {title!r}; have {[json.loads(c.proto.spec).get('title') for c in charts(at)]}"
    return found[0]


def chart_named(at: AppTest, title: str):
    found = [c for c in charts(at) if json.loads(c.proto.spec).get("title") == title]
    assert found, f"no chart {title!r}"
    return found[0]


def layer_data(at: AppTest, chart_spec: dict, layer: int | None = None):
    """A layer's rows, or the chart's (AppTest keeps the datasets beside the spec, named in its data)."""
    name = (chart_spec["layer"][layer] if layer is not None else chart_spec)["data"]["name"]
    for c in charts(at):
        for d in c.proto.datasets:
            if d.name == name:
                return pa_rows(d)
    raise AssertionError(f"no dataset {name}")


def test_convergence_groups_never_mix_scenarios_and_mark_interrupted_runs(store):
    path, ids = store
    at = app("convergence")
    assert at.title[0].value == "Convergence"
    assert metric(at, "Training runs") == "5" and metric(at, "Groups") == "3"
    table = frame_with(at, "left out").set_index("group")
    runs = {r["run_id"]: r for r in Store(path).list_runs()}
    groups = G.group_runs([r for r in runs.values() if r["kind"] == "train"])
    # a group holds one scenario and one algorithm, whatever the settings' hash says
    for g, part in groups.groupby("group"):
        assert part["scenario"].nunique() == 1 and part["algo"].nunique() == 1
        assert table.loc[g, "scenario"] == part["scenario"].iloc[0]
    g3 = groups.set_index("run_id").loc[ids["ippo-3robots:0"], "group"]
    g2 = groups.set_index("run_id").loc[ids["ippo:0"], "group"]
    assert g3 != g2 and g3.startswith("train-tiny-3 · ippo · ") and g2.startswith("train-tiny · ippo · ")
    # the interrupted run: not a seed of its group, named as left out, drawn dashed with its status
    assert runs[ids["ippo:interrupted"]]["status"] == "interrupted"
    assert groups.set_index("run_id").loc[ids["ippo:interrupted"], "group"] == g2
    assert table.loc[g2, "seeds"] == 2 and table.loc[g3, "seeds"] == 1
    assert table.loc[g2, "left out"] == f"{ids['ippo:interrupted']} (interrupted)"
    loss = spec_of(at, "loss")
    dashed = [i for i, layer in enumerate(loss["layer"]) if layer["mark"].get("strokeDash")]
    assert len(dashed) == 1 and set(layer_data(at, loss, dashed[0])["run_id"]) == {ids["ippo:interrupted"]}
    means = layer_data(at, loss, 1)
    assert set(means["group"]) == set(groups["group"]) and means["n"].max() == 2  # two seeds, never three

    # the rollback gate's decisions on the return curves, from the promotions table
    promos = Store(path).table("promotions").to_pandas()

    def gate_marks():
        ret = spec_of(at, "return")
        rules = [i for i, layer in enumerate(ret["layer"]) if layer["mark"]["type"] == "rule"]
        assert len(rules) == 1 and ret["layer"][rules[0]]["encoding"]["stroke"]["field"] == "decision"
        return layer_data(at, ret, rules[0])

    marks = gate_marks()
    assert sorted(zip(marks["run_id"], marks["step"])) == sorted(zip(promos["run_id"], promos["step"]))
    assert set(marks["decision"]) <= {"promote", "rollback"} and set(marks["x"]) == {1024.0, 2048.0}
    at.toggle(key="conv_unfinished").set_value(False).run()
    assert not [layer for layer in spec_of(at, "loss")["layer"] if layer["mark"].get("strokeDash")]
    assert ids["ippo:interrupted"] not in set(gate_marks()["run_id"])
    at.toggle(key="conv_unfinished").set_value(True).run()

    # credit: one chart per scenario, each with that scenario's groups only
    def title(spec: dict) -> str:
        t = spec.get("title", "")
        return t.get("text", "") if isinstance(t, dict) else str(t)

    credit = [json.loads(c.proto.spec) for c in charts(at) if title(json.loads(c.proto.spec)).startswith("per-agent credit")]
    assert sorted(title(c) for c in credit) == ["per-agent credit · train-tiny", "per-agent credit · train-tiny-3"]
    for c in credit:
        scen = title(c).split(" · ", 1)[1]
        data = layer_data(at, c)
        assert set(data["group"]) and all(g.startswith(scen + " · ") for g in data["group"])

    # smoothing, seeds, x axis, more metrics
    before = chart_data(chart_named(at, "loss"))
    at.slider(key="conv_smooth").set_value(0.0).run()
    assert chart_data(chart_named(at, "loss")) != before
    n_layers = len(spec_of(at, "loss")["layer"])
    at.toggle(key="conv_seeds").set_value(True).run()
    assert len(spec_of(at, "loss")["layer"]) == n_layers + 1
    assert spec_of(at, "loss")["layer"][0]["encoding"]["x"]["title"] == "environment steps"
    at.segmented_control(key="conv_axis").set_value("wall time").run()
    assert spec_of(at, "loss")["layer"][0]["encoding"]["x"]["title"] == "wall time (s)"
    more = at.multiselect(key="conv_more")
    assert "value_loss" in more.options
    more.set_value(["value_loss"]).run()
    spec_of(at, "value_loss")
    at.multiselect(key="conv_scenarios").set_value(["train-tiny-3"]).run()
    assert metric(at, "Groups") == "1"


def pa_rows(dataset):
    import pyarrow as pa

    return pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()


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
    ("overtime", "No warehouse runs in this store yet."),
    ("utilisation", "No warehouse runs in this store yet."),
    ("floor", "No warehouse runs in this store yet."),
])
def test_empty_store_says_so(tmp_path, monkeypatch, page, text):
    path = tmp_path / "empty.duckdb"
    with Store(path)._write():  # a store with no runs in it
        pass
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = app(page)
    assert any(i.value.startswith(text) for i in at.info), [i.value for i in at.info]


@pytest.mark.parametrize("page", [None, "runs", "convergence", "contention", "network", "whatif", "capacity", "overtime",
                                  "utilisation", "floor"])
def test_a_missing_store_is_named_with_a_command_that_fills_it(tmp_path, monkeypatch, page):
    path = tmp_path / "nothing" / "store.duckdb"
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = app(page)
    assert not at.exception, at.exception
    (msg,) = [i.value for i in at.info]
    assert f"No store at `{path}`" in msg and f"--store {path}`" in msg  # the suggested command writes to THIS store
    assert not (tmp_path / "nothing").exists()  # reading never creates a store


@pytest.mark.parametrize("page", [None, "runs", "convergence", "contention", "network", "whatif", "capacity", "overtime",
                                  "utilisation", "floor"])
def test_a_file_that_is_not_a_store_is_one_line_on_every_page(tmp_path, monkeypatch, page):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("my notes, not a store\n")
    monkeypatch.setenv("DESIM_STORE", str(bad))
    at = app(page)
    assert not at.exception, at.exception
    assert [e.value for e in at.error] and all(str(bad) in e.value and "\n" not in e.value for e in at.error)
    assert bad.read_text() == "my notes, not a store\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.duckdb"]
