"""The Capacity page under streamlit.testing (AppTest), on a store holding real sweeps
(``desim sweep`` on one worker process), and the page's data shaping (dashboards/capacity.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import (GRID_SWEEP, ROBOTS_SWEEP, app_page, default_store, frame_with, metric,  # noqa: E402
                               record, record_sweep)
from desim.analysis import paired_diff_ci  # noqa: E402
from desim.app.sweep import SWEEP_POINTS, rows_of, summarise  # noqa: E402
from desim.dashboards import capacity as P  # noqa: E402
from desim.store import Store  # noqa: E402



@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("capacity")
    path = tmp / "store.duckdb"
    ids = {"robots": record_sweep(path, tmp, **ROBOTS_SWEEP), "grid": record_sweep(path, tmp, **GRID_SWEEP)}
    with default_store(path):
        yield path, ids


def capacity(sweep: str | None = None) -> AppTest:
    at = app_page("capacity")
    if sweep is not None:
        at.selectbox(key="capacity_sweep").select(sweep).run()
        assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def titled(at: AppTest, title: str):
    found = [c for c in charts(at) if json.loads(c.proto.spec).get("title") == title]
    assert found, f"no chart titled {title!r}; have {[json.loads(c.proto.spec).get('title') for c in charts(at)]}"
    return found[0]


def datasets(chart) -> list[pd.DataFrame]:
    """The data a chart draws (Streamlit ships each layer's data as an Arrow dataset)."""
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def expected(path: Path, rid: str) -> tuple[dict, list[dict]]:
    """What the page should show, computed here from the store with desim's own functions."""
    run = Store(path).get_run(rid)
    results = Store(path).table(SWEEP_POINTS, rid).to_pylist()
    cfg = dict(run["config"], name=run["scenario"])
    return summarise(cfg, rid, results), results


# --------------------------------------------------------------------------- metrics, knee, findings


def test_metrics_against_the_parameter_with_intervals_and_the_knee(store):
    path, ids = store
    rep, results = expected(path, ids["robots"])
    knee = rep["knee"]
    assert knee is not None and knee["path"] == "warehouse.robots", rep["findings"]  # the tiny floor saturates
    xs = [pt["params"]["warehouse.robots"] for pt in rep["points"]]
    assert min(xs) < knee["x"] < max(xs)

    at = capacity(ids["robots"])
    assert at.title[0].value == "Capacity"
    assert metric(at, "Saturation point") == f"robots = {knee['x']:g}"
    assert metric(at, "Runs finished") == f"{len(results)} of {len(results)}" and metric(at, "Points") == "5"
    found = [s.value for s in at.success if s.value.startswith("**Findings**")]
    assert found and all(f in found[0] for f in rep["findings"])
    assert f"saturation: throughput_per_hour stops growing at warehouse.robots = {knee['x']:g}" in found[0]

    # one chart per headline metric: the mean per point with its interval; the knee marked on the first
    for m in ROBOTS_SWEEP["metrics"]:
        chart = titled(at, m)
        data = [d for d in datasets(chart) if "mean" in d.columns][0].sort_values("x")
        want = {pt["params"]["warehouse.robots"]: pt["metrics"][m] for pt in rep["points"]}
        assert list(data["x"]) == xs
        for row in data.itertuples():
            assert row.mean == pytest.approx(want[row.x]["mean"])
            if want[row.x]["half_width"] > 0:
                assert row.low == pytest.approx(want[row.x]["low"]) and row.high == pytest.approx(want[row.x]["high"])
        spec = json.loads(chart.proto.spec)
        assert any(layer["mark"]["type"] == "rule" and layer["encoding"].get("y2") for layer in spec["layer"])  # error bars
    marks = [d for d in datasets(titled(at, "throughput_per_hour")) if "what" in d.columns]
    assert marks and marks[0]["x"].tolist()[0] == knee["x"] and "saturation (knee)" in marks[0]["what"][0]
    assert not [d for d in datasets(titled(at, "deadlocks")) if "what" in d.columns and
                d["what"].str.startswith("saturation").any()]

    # the per-point table: the same figures
    table = frame_with(at, "runs")
    assert list(table["warehouse.robots"]) == xs and set(table["runs"]) == {2}
    assert table["throughput_per_hour"].tolist() == pytest.approx(
        [pt["metrics"]["throughput_per_hour"]["mean"] for pt in rep["points"]])

    # another recorded figure can be added to the charts
    at.multiselect(key="capacity_metrics").select("deliveries").run()
    assert not at.exception
    titled(at, "deliveries")


def test_two_parameters_draw_one_line_per_value_of_the_second(store):
    path, ids = store
    at = capacity(ids["grid"])
    assert metric(at, "Saturation point") == "none found"
    assert any("one-parameter sweeps" in i.value for i in at.info)
    data = [d for d in datasets(titled(at, "throughput_per_hour")) if "mean" in d.columns][0]
    assert set(data["line"]) == {"delay.mean=0.02", "delay.mean=0.0205"}
    assert sorted(data["x"]) == [1, 1, 2, 2]
    spec = json.loads(titled(at, "throughput_per_hour").proto.spec)
    assert any(layer["encoding"].get("color", {}).get("field") == "line" for layer in spec["layer"])
    at.selectbox(key="capacity_x").select("links.wireless.delay.mean").run()
    assert not at.exception
    data = [d for d in datasets(titled(at, "throughput_per_hour")) if "mean" in d.columns][0]
    assert set(data["line"]) == {"robots=1", "robots=2"} and sorted(data["x"]) == [0.02, 0.02, 0.0205, 0.0205]


# --------------------------------------------------------------------------- paired differences


def test_paired_differences_against_a_baseline_point_say_what_is_not_significant(store):
    path, ids = store
    _rep, results = expected(path, ids["grid"])
    rows = rows_of(results)
    at = capacity(ids["grid"])
    at.selectbox(key="capacity_base").select(0).run()  # robots=1, delay mean 20 ms
    table = frame_with(at, "verdict")
    assert set(table["point"]) == {1, 2, 3} and set(table["metric"]) == set(GRID_SWEEP["metrics"])
    for row in table.itertuples():  # each difference is paired by replication (the same seed in both)
        a = [r[row.metric] for r in sorted(rows, key=lambda r: r["rep"]) if r["point"] == 0]
        b = [r[row.metric] for r in sorted(rows, key=lambda r: r["rep"]) if r["point"] == row.point]
        d = paired_diff_ci(a, b)
        assert row.difference == pytest.approx(d.mean) and row.pairs == 3
        assert row.low == pytest.approx(d.low) and row.high == pytest.approx(d.high)
        assert row.verdict == ("significant" if d.significant else "not significant")
        assert (row.low <= 0 <= row.high) == row.verdict.startswith("not significant")
    noisy = table[(table["difference"] != 0) & table["verdict"].str.startswith("not significant")]
    assert not noisy.empty, table  # a real difference that could still be noise is marked as such
    caption = [c.value for c in at.caption if c.value.startswith("Not significant:")]
    assert caption and all(f"{r.metric} at {r.label}" in caption[0] for r in noisy.itertuples())

    at.selectbox(key="capacity_base").select(3).run()  # another baseline: the table follows
    assert set(frame_with(at, "verdict")["point"]) == {0, 1, 2}


# --------------------------------------------------------------------------- where time goes


def test_where_robots_time_goes_names_the_bottleneck(store):
    path, ids = store
    rep, results = expected(path, ids["robots"])
    rows = rows_of(results)
    assert any(k.startswith("robot_time_share.") for k in rows[0]), "the runs record robot_time_share"
    want = {}
    for pt in rep["points"]:
        mine = [r for r in rows if r["point"] == pt["point"]]
        share = {s: sum(r[f"robot_time_share.{s}"] for r in mine) / len(mine) for s in P.WAIT_STATES}
        want[pt["point"]] = max(share, key=share.get)
    at = capacity(ids["robots"])
    assert "Where robots' time goes" in [s.value for s in at.subheader]
    chart = titled(at, "where robots' time goes")
    bars = datasets(chart)[0]
    assert set(bars["state"]) == set(P.TIME_STATES)
    assert bars.groupby("point")["share"].sum().tolist() == pytest.approx([1.0] * 5, abs=1e-6)
    bn = frame_with(at, "bottleneck")
    labels = {pt["point"]: f"robots={pt['params']['warehouse.robots']}" for pt in rep["points"]}
    assert dict(zip(bn["point"], bn["bottleneck"])) == {labels[p]: b for p, b in want.items()}
    knee_point = next(pt["point"] for pt in rep["points"] if pt["params"]["warehouse.robots"] == rep["knee"]["x"])
    text = [m.value for m in at.markdown if m.value.startswith("**Bottleneck")]
    assert text and text[0].startswith(f"**Bottleneck at the saturation point (robots={rep['knee']['x']:g}): "
                                       f"{want[knee_point]}**")


# --------------------------------------------------------------------------- report, running sweep, empty


def test_the_report_button_writes_markdown_next_to_the_store(store):
    path, ids = store
    at = capacity(ids["robots"])
    out = path.parent / "reports" / ids["robots"]
    assert not (out / "report.md").exists()
    at.button(key="capacity_report").click().run()
    assert not at.exception, at.exception
    assert (out / "report.md").is_file() and (out / "throughput_per_hour.png").is_file()
    assert (out / "report.md").read_text().startswith(f"# Sweep {ids['robots']}: tiny-robots")
    assert any(str(out / "report.md") in s.value for s in at.success)


def test_a_sweep_still_running_shows_what_has_finished(tmp_path, monkeypatch):
    """A sweep writing its rows: the page shows the finished ones and says how far it is."""
    path = tmp_path / "store.duckdb"
    points = [{"warehouse.robots": n} for n in (2, 4, 8)]
    cfg = {"key": "k", "file": "s.toml", "base": "b.toml", "points": points, "replications": 2, "seed": 1,
           "until": 60.0, "metrics": ["throughput_per_hour"], "paths": ["warehouse.robots"], "design": "grid"}
    st_ = Store(path)
    rid = st_.begin_run("sweep", scenario="partial", seed=1, config=cfg)
    shares = {"moving": 0.3, "turning": 0.1, "loading": 0.1, "blocked": 0.35, "waiting_obs": 0.05,
              "waiting_command": 0.0, "idle": 0.1}
    rows = [{"point": p, "rep": r, "seed": 1 + r, "params": json.dumps(points[p]), "trace_hash": "h", "wall_s": 0.1,
             "metrics": json.dumps({"throughput_per_hour": 100.0 * (p + 1) + r,
                                    **{f"robot_time_share.{s}": v for s, v in shares.items()}})}
            for p in (0, 1) for r in (0, 1)]
    st_.append(rid, SWEEP_POINTS, rows[:3])
    monkeypatch.setenv("DESIM_STORE", str(path))
    try:
        at = capacity()
        assert metric(at, "Runs finished") == "3 of 6"
        assert any("This sweep is running: 3 of 6 runs finished so far" in w.value for w in at.warning)
        assert frame_with(at, "runs")["runs"].tolist() == [2, 1, 0]
        assert frame_with(at, "bottleneck")["bottleneck"].tolist() == ["blocked", "blocked"]
    finally:
        st_.finish_run(rid)


def test_a_latin_hypercube_is_drawn_against_one_parameter_at_a_time(tmp_path, monkeypatch):
    path = tmp_path / "store.duckdb"
    points = [{"warehouse.robots": r, "links.wireless.delay.mean": d} for r, d in ((2, 0.01), (5, 0.08), (9, 0.03))]
    cfg = {"key": "k", "points": points, "replications": 2, "seed": 1, "until": 60.0, "metrics": ["throughput_per_hour"],
           "paths": ["warehouse.robots", "links.wireless.delay.mean"], "design": "lhs"}
    st_ = Store(path)
    with st_.run("sweep", scenario="lhs", seed=1, config=cfg) as h:
        h.append(SWEEP_POINTS, [{"point": p, "rep": r, "seed": 1 + r, "params": json.dumps(points[p]),
                                 "metrics": json.dumps({"throughput_per_hour": 10.0 * p + r})}
                                for p in range(3) for r in range(2)])
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = capacity()
    assert not [s for s in at.selectbox if s.key == "capacity_group"]
    assert any(c.value.startswith("A Latin hypercube") for c in at.caption)
    data = [d for d in datasets(titled(at, "throughput_per_hour")) if "mean" in d.columns][0]
    assert set(data["line"]) == {""} and sorted(data["x"]) == [2, 5, 9]
    at.selectbox(key="capacity_x").select("links.wireless.delay.mean").run()
    data = [d for d in datasets(titled(at, "throughput_per_hour")) if "mean" in d.columns][0]
    assert sorted(data["x"]) == [0.01, 0.03, 0.08] and sorted(data["mean"]) == [0.5, 10.5, 20.5]


def test_a_store_without_sweeps_says_how_to_run_one(tmp_path, monkeypatch):
    path = tmp_path / "store.duckdb"
    record(path, "warehouse-tiny.toml", 1, 30.0)  # a store with a run, but no sweep
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = capacity()
    msg = f"No sweeps in this store yet: run `desim sweep scenarios/sweeps/robots-small.toml --store {path.resolve()}`."
    assert [i.value for i in at.info if i.value.startswith(msg)], [i.value for i in at.info]
    assert not charts(at)


# --------------------------------------------------------------------------- data shaping


def test_bottleneck_is_the_largest_state_that_is_not_work():
    shares = pd.DataFrame([
        {"point": 0, "label": "robots=2", "state": s, "share": v, "order": i}
        for i, (s, v) in enumerate(zip(P.TIME_STATES, (0.5, 0.1, 0.1, 0.05, 0.02, 0.03, 0.2)))] + [
        {"point": 1, "label": "robots=8", "state": s, "share": v, "order": i}
        for i, (s, v) in enumerate(zip(P.TIME_STATES, (0.2, 0.05, 0.05, 0.4, 0.25, 0.0, 0.05)))])
    bn = P.bottlenecks(shares)
    # point 0 spends most time moving (work): its bottleneck is the largest non-work state, idle
    assert bn["bottleneck"].tolist() == ["idle", "blocked"]
    assert bn["share"].tolist() == pytest.approx([0.2, 0.4]) and bn["working"].tolist() == pytest.approx([0.7, 0.3])
    assert P.bottlenecks(pd.DataFrame(columns=shares.columns)).empty


def test_paired_table_pairs_replications_by_seed():
    points = [{"x": 1}, {"x": 2}, {"x": 3}]
    vals = {0: [10.0, 20.0, 30.0], 1: [11.0, 21.0, 31.0], 2: [11.0, 19.0, 32.0]}
    res = [{"point": p, "rep": r, "seed": 5 + r, "params": json.dumps(points[p]), "metrics": json.dumps({"y": v})}
           for p, vs in vals.items() for r, v in enumerate(vs)]
    t = P.paired_table(res, {"points": points}, 0, ["y"], ["x"]).set_index("point")
    # point 1 is point 0 plus exactly 1 in every replication: tight and significant, though the arms
    # overlap completely when treated as independent samples
    assert t.loc[1, "difference"] == pytest.approx(1.0) and t.loc[1, "low"] == pytest.approx(1.0)
    assert bool(t.loc[1, "significant"]) and t.loc[1, "verdict"] == "significant"
    assert t.loc[1, "unpaired ±"] > 10
    # point 2: +1, -1, +2: the interval contains 0
    assert t.loc[2, "low"] < 0 < t.loc[2, "high"] and t.loc[2, "verdict"] == "not significant"
    assert t.loc[2, "label"] == "x=3"
    one = P.paired_table(res[:1] + res[3:4], {"points": points}, 0, ["y"], ["x"])
    assert one["verdict"].tolist() == ["one pair: no interval"] and one["low"].isna().all()


def test_short_labels():
    assert P.short("warehouse.robots") == "robots"
    assert P.short("links.wireless.delay.mean") == "delay.mean"
    assert P.point_label({"warehouse.robots": 4, "links.wireless.delay.mean": 0.02},
                         ["warehouse.robots", "links.wireless.delay.mean"]) == "robots=4, delay.mean=0.02"
