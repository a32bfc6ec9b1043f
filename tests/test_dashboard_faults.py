"""The Faults page under streamlit.testing (AppTest), on a store holding a real failure suite
(``desim eval`` on the pipeline scenario, three cases, guard on and off, shortened runs)."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import ROOT, app_page, default_store, frame_with, metric  # noqa: E402
from desim.app import eval as E  # noqa: E402
from desim.store import Store  # noqa: E402

SCENARIO = ROOT / "scenarios" / "warehouse-pipeline.toml"
UNTIL = 600.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "store.duckdb"
    results, _rows, _windows, _sc, rid = E.run_suite(SCENARIO, guard="both", until=UNTIL,
                                                     cases=["500_storm", "kill_switch"], store=Store(path))
    with default_store(path):
        yield path, rid, results


def faults_page() -> AppTest:
    return app_page("faults")


def charts(at: AppTest) -> dict:
    return {json.loads(c.proto.spec).get("title"): c for c in at.get("vega_lite_chart")}


def datasets(chart) -> list[pd.DataFrame]:
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def test_the_suite_table_is_the_stores(store):
    path, rid, results = store
    at = faults_page()
    assert at.title[0].value == "Faults"
    assert metric(at, "Passed") == f"{sum(r['passed'] for r in results)} of {len(results)}"
    assert metric(at, "Orders lost") == "0" and metric(at, "Runs (case × arm)") == str(len(results))
    table = frame_with(at, "why not passed")
    assert list(zip(table["case"], table["arm"])) == [(r["case"], r["arm"]) for r in results]
    assert list(table["passed"]) == [r["passed"] for r in results]
    assert list(table["retries"]) == [r["retries"] for r in results]
    ks = table[(table["case"] == "kill_switch") & (table["arm"] == "guard on")].iloc[0]
    assert "agent quarantined ✓" in ks["safeguards"]


def test_guard_on_and_off_side_by_side(store):
    path, rid, results = store
    at = faults_page()
    side = frame_with(at, "throughput/h · guard off")
    assert {"throughput/h · guard on", "unauthorized executed · guard on", "unauthorized executed · guard off"} <= set(side.columns)
    row = side[side["case"] == "kill_switch"].iloc[0]
    want = {r["arm"]: r for r in results if r["case"] == "kill_switch"}
    assert row["unauthorized executed · guard on"] == want["guard on"]["unauthorized_executed"] == 0
    assert row["unauthorized executed · guard off"] == want["guard off"]["unauthorized_executed"] > 0
    assert "throughput change per case and arm" in charts(at)


def test_decisions_over_time_with_the_fault_window_and_the_breaker(store):
    path, rid, results = store
    at = faults_page()
    at.selectbox(key="faults_case").select("500_storm").run()
    assert not at.exception, at.exception
    cs = charts(at)
    on = cs["500_storm: decisions (guard on)"]
    window, bars = datasets(on)
    assert window["start"].tolist() == [0.25 * UNTIL] and window["end"].tolist() == [0.65 * UNTIL]
    assert {"retry", "safe default"} <= set(bars["what"])
    retries = bars[bars["what"] == "retry"]
    assert retries["t"].between(window["start"][0] - 30, window["end"][0]).all()  # retries only while the storm lasts
    breaker = datasets(cs["500_storm: breakers and kill switch (guard on)"])
    steps = breaker[1]
    assert {"closed", "open", "half_open"} <= set(steps["state"]) and steps["t"].max() == UNTIL
    off = datasets(cs["500_storm: decisions (guard off)"])[1]
    assert set(off["what"]) == {"failed call (guard off)"}  # guard off: failures reach the agent, nothing else happens
    at.selectbox(key="faults_case").select("kill_switch").run()
    cs = charts(at)
    layers = datasets(cs["kill_switch: breakers and kill switch (guard on)"])
    assert any("agent" in d.columns and len(d) > 0 for d in layers)  # the kill switch's moments as rules


def test_empty_store_names_the_command(tmp_path, monkeypatch):
    path = tmp_path / "empty.duckdb"
    with Store(path)._write():
        pass
    monkeypatch.setenv("DESIM_STORE", str(path))
    at = faults_page()
    assert any(i.value.startswith("No failure suites in this store yet: run `desim eval scenarios/warehouse-pipeline.toml "
                                  f"--guard both --store {path}`") for i in at.info), [i.value for i in at.info]
