"""The telemetry example (examples/telemetry/): validated, run, shown, swept and reported through the real
CLI, as its README tells a reader to; and deterministic in-process.

The CLI runs as a subprocess with ``DESIM_PLUGINS=telemetry`` and the example's folder on ``PYTHONPATH``,
so the sweep's spawned workers find the plugin the same way (through the environment they inherit).
The in-process tests unregister what they register, so other tests see desim's own registries.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desim import registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "telemetry"
SCENARIO, SWEEP = EXAMPLE / "telemetry.toml", EXAMPLE / "telemetry-sweep.toml"
DESIM = str(Path(sys.executable).with_name("desim"))
MESH_CUT, UPLINK_CUT = (30.0, 50.0), (70.0, 90.0)  # the scenario's two faults


def desim(*args: str, cwd: Path = ROOT, plugin_path: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DESIM_PLUGINS="telemetry", COLUMNS="200")
    if plugin_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([DESIM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"desim {' '.join(args)}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def plugin(monkeypatch):
    """The example's plugin, loaded as DESIM_PLUGINS would load it; unregistered at teardown."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    registry.load_plugin("telemetry")
    if "telemetry" not in registry.models:  # loaded once per process: an earlier teardown unregistered it
        sys.modules["telemetry"].register()
    yield sys.modules["telemetry"]
    registry.models.unregister("telemetry")
    registry.sections.unregister("telemetry")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One `desim run` of the shipped scenario into a fresh store: (store path, its --json summary)."""
    store = tmp_path_factory.mktemp("telemetry") / "s.duckdb"
    proc = desim("run", str(SCENARIO.relative_to(ROOT)), "--json", "--store", str(store))
    return store, json.loads(proc.stdout)


def test_validate_from_the_examples_folder():
    """The README's way: run from the example's folder, no PYTHONPATH (desim imports plugins from the cwd)."""
    proc = desim("validate", "telemetry.toml", cwd=EXAMPLE, plugin_path=False)
    assert "telemetry.toml: ok (telemetry)" in proc.stdout


def test_run_summary(recorded):
    _store, s = recorded
    assert s["scenario"] == "telemetry" and s["conservation_ok"] and s["readings_conserved"] is True
    r = s["readings"]
    assert r["sent"] > 800 and r["sent"] == r["delivered"] + r["lost"] + r["pending"]
    assert s["delivery_ratio"] > 0.97 and s["messages"]["dropped"]["loss"] > 0  # lossy links, yet resends deliver
    assert s["resends"] > 0 and s["duplicates"] > 0 and s["via_backup"] > 0
    lat = s["reading_latency"]
    assert 0 < lat["p50"] < 0.1 and lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert [f[1] for f in s["faults"]] == ["start", "end"] * 2 and {f[2] for f in s["faults"]} == {"cut"}
    assert [f[3].replace(" | ", "-") for f in s["faults"]] == ["gateway-dev-0-1"] * 2 + ["gateway-collector"] * 2


def _rows(store) -> list[dict]:
    from desim.store import Store

    st = Store(store)
    (run,) = st.list_runs()
    return st.table("tm_readings", run["run_id"], as_dicts=True)


def test_routes_go_around_the_mesh_cut(recorded):
    store, s = recorded
    rows = _rows(store)
    assert len(rows) == s["readings"]["sent"]
    a, b = MESH_CUT
    before = [r for r in rows if r["t"] < a - 2]
    during = [r for r in rows if a + 0.5 < r["t"] < b - 5]
    assert sum("dev-0-1 > gateway" in r["route"] for r in before) > 0.5 * len(before)  # the busy link ...
    assert during and not any("dev-0-1 > gateway" in r["route"] for r in during)  # ... is avoided while cut
    arrived = [r for r in during if r["outcome"] == "delivered" and r["t"] + r["latency"] < b]
    assert len(arrived) >= 0.95 * len(during)  # they arrived while the link was still cut: over the other path
    far = lambda rs: [r["hops"] for r in rs if r["device"] == "dev-0-3"]  # 4 hops normally, 6 around the cut
    assert set(far(before)) == {4} and set(far(during)) == {6}


def test_traffic_moves_to_the_backup_during_the_uplink_cut(recorded):
    store, _s = recorded
    rows = _rows(store)
    a, b = UPLINK_CUT
    during = [r for r in rows if a + 0.5 < r["t"] < b - 5]
    normal = [r for r in rows if r["t"] < MESH_CUT[0] - 2 or MESH_CUT[1] + 2 < r["t"] < a - 2]
    assert during and all(r["via"] == "backup" and "satellite" in r["route"] for r in during)
    assert all(r["via"] == "primary" for r in normal)
    arrived = [r for r in during if r["outcome"] == "delivered" and r["t"] + r["latency"] < b]
    assert len(arrived) >= 0.95 * len(during)

    def median(rs):
        lat = sorted(r["latency"] for r in rs if r["latency"] is not None)
        return lat[len(lat) // 2]

    assert median(normal) < 0.1 and median(during) > 0.29  # the satellite: 0.27 s up, 0.02 s down


def test_runs_show_lists_the_table(recorded):
    store, s = recorded
    out = desim("runs", "show", "latest", "--store", str(store)).stdout
    assert s["run_id"] in out and "tm_readings" in out and f"{s['readings']['sent']:,} rows" in out
    assert "readings conserved" in out and "delivery ratio" in out
    listed = desim("runs", "list", "--store", str(store)).stdout
    assert f"{s['readings']['delivered']:,}/{s['readings']['sent']:,} readings delivered" in listed


def test_sweep_and_report(tmp_path, plugin):
    from desim.app import runner
    from desim.app.scenario import load
    from desim.store import Store

    store = tmp_path / "s.duckdb"
    summary = json.loads(desim("sweep", str(SWEEP.relative_to(ROOT)), "--store", str(store), "--workers", "1", "--json").stdout)
    points = {pt["params"]["telemetry.max_attempts"]: pt["metrics"] for pt in summary["points"]}
    assert set(points) == {1, 4} and all(m["delivery_ratio"]["n"] == 2 for m in points.values())
    assert points[1]["resends"]["mean"] == 0 and points[4]["resends"]["mean"] > 0
    assert points[4]["delivery_ratio"]["mean"] > points[1]["delivery_ratio"]["mean"]
    # a sweep's run is the same run as anywhere else: max_attempts = 4 is the base scenario
    st = Store(store)
    (sweep,) = st.list_runs()
    assert sweep["kind"] == "sweep" and sweep["status"] == "complete"
    done = st.table("sweep_points", sweep["run_id"], as_dicts=True)
    assert len(done) == 4
    (base,) = [r for r in done if json.loads(r["params"]) == {"telemetry.max_attempts": 4} and r["rep"] == 0]
    assert runner.run(load(SCENARIO), seed=base["seed"], until=90.0).summary["trace_hash"] == base["trace_hash"]

    out = tmp_path / "report"
    desim("report", "latest", "--store", str(store), "--out", str(out))
    md = (out / "report.md").read_text()
    assert "telemetry-resends" in md and "telemetry.max_attempts" in md and "### delivery_ratio" in md
    assert (out / "delivery_ratio.png").stat().st_size > 0


def test_in_process_deterministic(plugin):
    from desim.app import runner
    from desim.app.scenario import load

    sc = load(SCENARIO)
    assert runner.prepare(sc).model.section == "telemetry"
    s = runner.run(sc, seed=1, until=60.0).summary
    assert s["readings_conserved"] and s["readings"]["sent"] > 0
    again = runner.run(sc, seed=1, until=60.0).summary
    assert again["trace_hash"] == s["trace_hash"] and again["readings"] == s["readings"]
    assert runner.run(sc, seed=2, until=60.0).summary["trace_hash"] != s["trace_hash"]


def test_bad_scenarios_are_one_line_errors(plugin):
    from desim.app.runner import prepare
    from desim.scenario import ScenarioError, parse

    text = SCENARIO.read_text()
    with pytest.raises(ScenarioError, match=r"telemetry\.max_attempts: Input should be greater than or equal to 1"):
        parse(text.replace("max_attempts = 4", "max_attempts = 0"))
    with pytest.raises(ScenarioError, match=r"telemetry: a 1 x 1 grid is the gateway alone"):
        prepare(parse(text.replace("rows = 4", "rows = 1").replace("cols = 4", "cols = 1")
                      .split("[[links.override]]")[0], "t.toml"), "t.toml")
    with pytest.raises(ScenarioError, match=r"traffic: a \[telemetry\] scenario makes its own traffic"):
        prepare(parse(text + '\n[[traffic]]\nfrom = "agent"\nto = "service"\n', "t.toml"), "t.toml")


def test_unregistered_after_the_fixture():
    assert "telemetry" not in registry.models and "telemetry" not in registry.sections


def test_the_dashboards_table_browser_shows_its_table(recorded, monkeypatch):
    """The Tables page (no plugin: it reads the store) lists, previews and counts the example's own table."""
    pytest.importorskip("streamlit")
    sys.path.insert(0, str(ROOT / "tests"))
    from dashboard_support import app_page, metric

    store, summary = recorded
    monkeypatch.setenv("DESIM_STORE", str(store))
    at = app_page("tables")
    at.selectbox(key="tables_run").set_value(summary["run_id"]).run()
    assert not at.exception, at.exception
    options = at.selectbox(key="tables_table").options
    wanted = next(o for o in options if o.startswith("tm_readings ("))
    at.selectbox(key="tables_table").set_value(wanted).run()
    assert not at.exception, at.exception
    assert metric(at, "Model") == "telemetry"
    assert metric(at, "Rows") == f"{summary['readings']['sent']:,}"
