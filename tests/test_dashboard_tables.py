"""The dashboard for any model (issue 25), under streamlit.testing (AppTest), on a store with a real run of
the tutorial's clientserver model (docs/tutorial/clientserver.py, a plugin) and a real short warehouse run:

- the Tables page lists a run's stored tables with their row counts, previews, filters and downloads one
  (the download is the store's table, row for row);
- the Runs page lists a run's tables in its details and compares runs on any numeric summary figure
  (``response_time.p50``), not only the warehouse's;
- the warehouse pages (Contention, Floor, Utilisation, Over time) on a clientserver run say in one line that
  they show warehouse runs and what that run is, never "record a warehouse run";
- the shaping (``dashboards/browse.py``, ``data.model_of``) without Streamlit.

The plugin is registered only while the runs are recorded (the dashboard needs none: it reads the store)
and unregistered after, so other tests see desim's own registries.
"""
from __future__ import annotations

import io
import json
import sys
from contextlib import contextmanager

import pandas as pd
import pytest

pytest.importorskip("streamlit")

from dashboard_support import ROOT, app_page, frame_with, metric, record  # noqa: E402
from desim import registry  # noqa: E402
from desim.dashboards import browse as B  # noqa: E402
from desim.dashboards import data as D  # noqa: E402
from desim.store import Store  # noqa: E402

TUTORIAL = ROOT / "docs" / "tutorial"
CS_UNTIL = 30.0  # the tutorial's fault isolates server-1 from 10 s to 20 s: some requests time out
WH_UNTIL = 60.0
WAREHOUSE_PAGES = (("contention", "contention_run"), ("floor", "floor_run"), ("utilisation", "utilisation_run"),
                   ("overtime", None))


@contextmanager
def clientserver_plugin():
    """The tutorial's plugin, loaded as DESIM_PLUGINS would load it; unregistered after."""
    sys.path.insert(0, str(TUTORIAL))
    try:
        registry.load_plugin("clientserver")
        if "clientserver" not in registry.models:  # loaded once per process: an earlier test unregistered it
            sys.modules["clientserver"].register()
        yield
    finally:
        for reg in (registry.models, registry.sections):
            if "clientserver" in reg:
                reg.unregister("clientserver")
        sys.path.remove(str(TUTORIAL))


def record_clientserver(store, seed: int = 1, until: float = CS_UNTIL) -> str:
    with clientserver_plugin():
        return record(store, "", seed, until, path=TUTORIAL / "clientserver.toml")["run_id"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash-tables")
    both, only = tmp / "store.duckdb", tmp / "clientserver-only.duckdb"
    ids = {"cs": record_clientserver(both), "wh": record(both, "warehouse-small.toml", 1, WH_UNTIL)["run_id"]}
    ids["cs_only"] = record_clientserver(only, seed=2, until=15.0)
    return {"both": both, "only": only, "ids": ids}


@pytest.fixture
def store(stores, monkeypatch):
    monkeypatch.setenv("DESIM_STORE", str(stores["both"]))
    return stores["both"], stores["ids"]


@pytest.fixture
def downloads(monkeypatch):
    """What the page's download buttons hold, by file name (AppTest keeps no media files after a run)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    got: dict[str, bytes] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            got[filename] = path_or_data
        return load(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return got


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def same_rows(csv: bytes, table: pd.DataFrame) -> None:
    got = pd.read_csv(io.BytesIO(csv))
    want = table.reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


# --------------------------------------------------------------------------- the Tables page


def test_the_tables_page_lists_previews_filters_and_downloads_a_plugin_models_table(store, downloads):
    path, ids = store
    cs = ids["cs"]
    st = Store(path)
    run = st.get_run(cs)
    table = st.table("cs_requests", cs).to_pandas()
    assert len(table) == run["summary"]["requests"] > 50

    at = app_page("tables")
    assert at.title[0].value == "Tables"
    at.selectbox(key="tables_run").set_value(cs).run()
    assert not at.exception, at.exception
    # every table the run stored, with its row count from the catalog
    options = at.selectbox(key="tables_table").options
    assert options == [f"{n} ({info['rows']:,} rows)" for n, info in sorted(run["tables"].items())]
    assert f"cs_requests ({len(table):,} rows)" in options
    at.selectbox(key="tables_table").set_value("cs_requests").run()
    assert metric(at, "Rows") == f"{len(table):,}" and metric(at, "Matching rows") == f"{len(table):,}"
    assert metric(at, "Model") == "clientserver"
    preview = frame_with(at, "response_time")
    assert at.select_slider(key="tables_preview").value == 100
    pd.testing.assert_frame_equal(preview.reset_index(drop=True), table.head(100), check_dtype=False)
    # the download is the whole table, row for row
    (button,) = at.download_button
    assert button.label == f"Download CSV ({len(table):,} rows)"
    same_rows(downloads[f"{cs}-cs_requests.csv"], table)

    # filter: an outcome, picked among the column's values, narrows the rows; the download follows
    at.selectbox(key="tables_column").set_value("outcome").run()
    values = at.multiselect(key="tables_values:cs_requests:outcome")
    assert values.options == sorted(set(table["outcome"]))
    values.select("timeout").run()
    timeouts = table[table["outcome"] == "timeout"]
    assert 0 < len(timeouts) < len(table)
    assert metric(at, "Matching rows") == f"{len(timeouts):,}"
    assert set(frame_with(at, "response_time")["outcome"]) == {"timeout"}
    same_rows(downloads[f"{cs}-cs_requests-filtered.csv"], timeouts)

    # a range on a number column
    at.selectbox(key="tables_column").set_value("response_time").run()
    assert metric(at, "Matching rows") == f"{len(table):,}"  # a new column starts unfiltered
    rng = at.slider(key="tables_range:cs_requests:response_time")
    lo, hi = rng.value
    assert (lo, hi) == (table["response_time"].min(), table["response_time"].max())
    rng.set_value((0.05, 0.1)).run()
    a, b = at.slider(key="tables_range:cs_requests:response_time").value
    inside = table[(table["response_time"] >= a) & (table["response_time"] <= b)]
    assert 0 < len(inside) < len(table) and metric(at, "Matching rows") == f"{len(inside):,}"
    shown = frame_with(at, "response_time")
    assert shown["response_time"].between(a, b).all() and len(shown) == min(100, len(inside))

    # a text anywhere in the text columns, with the range still on
    at.text_input(key="tables_search").input("SERVER-1").run()
    both = inside[inside["server"] == "server-1"]
    assert metric(at, "Matching rows") == f"{len(both):,}"
    same_rows(downloads[f"{cs}-cs_requests-filtered.csv"], both)


def test_the_tables_page_shows_a_warehouse_runs_tables_and_follows_a_link(store):
    path, ids = store
    wh = ids["wh"]
    run = Store(path).get_run(wh)
    at = app_page("tables")
    at.selectbox(key="tables_run").set_value(wh).run()
    names = [o.split(" (")[0] for o in at.selectbox(key="tables_table").options]
    assert names == sorted(run["tables"]) and {"orders", "contention", "robot_time"} <= set(names)
    assert metric(at, "Model") == "warehouse"
    at.selectbox(key="tables_table").set_value("orders").run()
    orders = Store(path).table("orders", wh).to_pandas()
    assert metric(at, "Rows") == f"{len(orders):,}"
    pd.testing.assert_frame_equal(frame_with(at, "delivered").reset_index(drop=True), orders.head(100),
                                  check_dtype=False)

    # the Runs page's link: ?run=ID&table=NAME opens that run's table, once
    at.query_params["run"] = ids["cs"]
    at.query_params["table"] = "net_links"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="tables_run").value == ids["cs"] and at.selectbox(key="tables_table").value == "net_links"
    assert "run" not in at.query_params and "table" not in at.query_params


# --------------------------------------------------------------------------- the Runs page


def test_the_runs_page_lists_a_runs_tables_and_compares_any_numeric_figure(store):
    path, ids = store
    cs, wh = ids["cs"], ids["wh"]
    runs = {r["run_id"]: r for r in Store(path).list_runs()}
    at = app_page("runs")
    at.selectbox(key="runs_detail").set_value(cs).run()
    tabs = frame_with(at, "rows")
    assert dict(zip(tabs["table"], tabs["rows"])) == {n: i["rows"] for n, i in runs[cs]["tables"].items()}
    assert "cs_requests" in set(tabs["table"])

    at.multiselect(key="runs_compare").select(cs).select(wh).run()
    assert not at.exception, at.exception
    figures = at.multiselect(key="runs_figures")
    # every numeric figure of either run's summary, by dotted key: the plugin's and the warehouse's
    want = set(B.summary_figures(runs[cs]["summary"])) | set(B.summary_figures(runs[wh]["summary"]))
    assert set(figures.options) == want
    assert {"response_time.p50", "response_time.p99", "requests", "served.server-1", "throughput_per_hour",
            "order_latency.p95", "messages.dropped.partition"} <= want
    assert "seed" not in want and "conservation_ok" not in want and "model" not in want
    assert figures.value[:2] == ["throughput_per_hour", "deliveries"]  # the warehouse's headline by default
    figures.set_value(["response_time.p50", "throughput_per_hour"]).run()
    table = frame_with(at, "label").set_index("run_id")
    assert table.loc[cs, "response_time.p50"] == pytest.approx(runs[cs]["summary"]["response_time"]["p50"])
    assert pd.isna(table.loc[wh, "response_time.p50"])
    assert table.loc[wh, "throughput_per_hour"] == runs[wh]["summary"]["throughput_per_hour"]
    specs = {sp["title"]: sp for sp in charts(at)}
    assert set(specs) == {"response_time.p50", "throughput_per_hour"}
    assert specs["response_time.p50"]["encoding"]["x"]["field"] == "response_time\\.p50"  # a column, not a path


def test_compare_offers_a_plugin_models_own_figures_by_default(store):
    path, ids = store
    at = app_page("runs")
    at.multiselect(key="runs_compare").select(ids["cs"]).run()
    default = at.multiselect(key="runs_figures").value
    assert default and not any(k.startswith(("messages.", "jitter_buffer.")) for k in default)
    assert "requests" in default and "answered" in default
    assert len(charts(at)) == len(default)


# --------------------------------------------------------------------------- warehouse pages


def test_warehouse_pages_name_another_models_run_instead_of_asking_for_a_warehouse_run(store):
    path, ids = store
    cs, wh = ids["cs"], ids["wh"]
    line = (f"This page shows warehouse runs; run `{cs}` is a clientserver run — see **Tables** / **Network**.")
    for page, key in WAREHOUSE_PAGES:
        at = app_page("runs")
        at.multiselect(key="runs_compare").select(cs).run()
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, at.exception)
        (w,) = [w.value for w in at.warning]
        assert w.startswith(line), (page, w)
        text = " ".join([w] + [i.value for i in at.info])
        assert "record" not in text.lower() and "warehouse-small-event" not in text, (page, text)
        if key:  # the page shows a warehouse run instead, the user's to pick
            assert at.selectbox(key=key).value == wh
        else:
            assert at.multiselect(key="overtime_runs").value == [wh]


def test_a_store_without_warehouse_runs_says_so_on_warehouse_pages(stores, monkeypatch):
    monkeypatch.setenv("DESIM_STORE", str(stores["only"]))
    cs = stores["ids"]["cs_only"]
    for page, _key in WAREHOUSE_PAGES:
        at = app_page(page)
        (i,) = [i.value for i in at.info]
        assert i == f"This page shows warehouse runs; run `{cs}` is a clientserver run — see **Tables** / **Network**."
        assert not at.warning and not charts(at)
        assert [p.proto.label for p in at.get("page_link")] == ["Tables", "Network"]
    # the pages for any model show it
    at = app_page("tables")
    assert at.selectbox(key="tables_run").value == cs and "cs_requests" in at.selectbox(key="tables_table").value
    at = app_page("network")
    assert not at.exception and at.selectbox(key="network_run").value == cs


# --------------------------------------------------------------------------- shaping, without Streamlit


def test_model_of_reads_the_summary_then_the_tables(store):
    path, ids = store
    runs = {r["run_id"]: r for r in Store(path).list_runs()}
    cs, wh = runs[ids["cs"]], runs[ids["wh"]]
    assert D.model_of(cs) == "clientserver" and D.model_of(wh) == "warehouse"
    assert D.is_warehouse(wh) and not D.is_warehouse(cs) and D.other_model(cs) and not D.other_model(wh)
    # without a "model" key (runs recorded before the runner named it): told from figures and tables
    old = lambda r: {**r, "summary": {k: v for k, v in r["summary"].items() if k != "model"}}  # noqa: E731
    assert D.model_of(old(wh)) == "warehouse" and D.is_warehouse(old(wh))
    bare = {**old(wh), "summary": {}}
    assert D.model_of(bare) == "warehouse" and D.is_warehouse(bare)  # its tables: contention, orders ...
    assert D.model_of(old(cs)) is None and not D.is_warehouse(old(cs))  # its tables are no warehouse's
    assert D.what_run(old(cs)) == "a clientserver run"  # named by its scenario then
    # a run still writing, summary and tables not yet there: its scenario's [warehouse] section tells
    writing = {"run_id": "r-x", "kind": "run", "status": "running", "summary": {}, "tables": None,
               "scenario_text": "name = 'x'\n\n[warehouse]\nrobots = 2\n"}
    assert D.is_warehouse(writing)
    assert D.model_of({**writing, "scenario_text": "[clientserver]\nclients = 2\n"}) is None
    # training runs are not warehouse simulation runs, whatever their summary names
    assert not D.is_warehouse({"run_id": "t", "kind": "train", "summary": {"model": "warehouse"}})
    assert D.warehouse_only(cs) == (f"This page shows warehouse runs; run `{cs['run_id']}` is a clientserver run "
                                    "— see **Tables** / **Network**.")
    tick = {**wh, "summary": {"model": "sensors"}, "scenario": "field-a", "tables": {}}
    assert D.warehouse_only(tick) == ("This page shows warehouse runs; run "
                                      f"`{wh['run_id']}` is a sensors run (scenario field-a) — see **Tables**.")
    # a run still writing lists its tables from its parts
    assert D.run_tables(str(path), {**cs, "status": "running", "tables": None}) == cs["tables"]


def test_browse_shaping():
    t = B.run_tables({"b": {"parts": 1, "rows": 3}, "a": {"parts": 2, "rows": 10}, "empty": {"parts": 0, "rows": 0}})
    assert t.to_dict("records") == [{"table": "a", "rows": 10}, {"table": "b", "rows": 3}]
    assert B.run_tables(None).empty

    df = pd.DataFrame({"t": [0.5, 1.0, 2.0, 3.0], "who": ["a-1", "b-2", "A-3", None], "n": [1, 2, 3, 4],
                       "ok": [True, False, True, True]})
    assert [B.column_kind(df[c]) for c in df] == ["number", "text", "number", "bool"]
    assert B.filter_rows(df, "t", lo=1.0, hi=2.0)["n"].tolist() == [2, 3]
    assert B.filter_rows(df, "t", hi=1.0)["n"].tolist() == [1, 2]
    assert B.filter_rows(df, "who", values=["b-2", "A-3"])["n"].tolist() == [2, 3]
    assert B.filter_rows(df, "who", contains="a")["n"].tolist() == [1, 3]  # case ignored, missing never matches
    assert B.filter_rows(df, "ok", values=[False])["n"].tolist() == [2]
    assert B.filter_rows(df, search="-3")["n"].tolist() == [3]
    assert B.filter_rows(df, "t", lo=0.0, search="A")["n"].tolist() == [1, 3]
    assert B.filter_rows(df, "nope", lo=5.0).equals(df) and B.filter_rows(df, "who", values=[]).equals(df)
    assert B.distinct_values(df["who"]) == ["A-3", "a-1", "b-2"] and B.distinct_values(df["n"], most=3) is None
    cols = B.columns_frame(df).set_index("column")
    assert cols.loc["t", "min"] == 0.5 and cols.loc["t", "max"] == 3.0 and cols.loc["who", "values"] == 3
    same_rows(B.to_csv(df), df)
    assert B.file_name("r-1", "orders") == "r-1-orders.csv" and B.file_name("r-1", "orders", True).endswith("-filtered.csv")

    s = {"seed": 3, "requests": 10, "ok": True, "model": "cs", "faults": [[1, "start"]],
         "response_time": {"p50": 0.1, "p99": None}, "served": {"s-0": 4}, "messages": {"sent": 9}}
    assert B.summary_figures(s) == {"requests": 10.0, "response_time.p50": 0.1, "served.s-0": 4.0, "messages.sent": 9.0}
    frame = B.figures_frame([{"run_id": "a", "summary": s}, {"run_id": "b", "summary": {"deliveries": 3}}])
    keys = B.figure_keys(frame)
    assert keys[0] == "deliveries" and set(keys) == {"deliveries", "requests", "response_time.p50", "served.s-0",
                                                     "messages.sent"}
    assert B.default_figures(keys) == ["deliveries"]
    assert B.default_figures(["messages.sent", "requests", "sim_time", "wall_s"]) == ["requests"]
    assert B.default_figures(["messages.sent", "sim_time"]) == ["messages.sent", "sim_time"]
