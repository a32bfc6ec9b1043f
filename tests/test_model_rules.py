"""The rules a model's results follow (desim.app.rules, docs/models.md), checked on throwaway models.

A model may pick any figure and table names of its own; the runner's names are reserved, a
``_conserved`` figure is a balance, the network's tables are the network's. Whatever a model reports,
`desim run` prints a readable table or refuses with one line, and a run recorded as complete never
fails afterwards. Also: an agent that is not a node, a plugin that does not import, and the event
budget of a model without a declared rate.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cli_support import call, one_line_error
from desim import registry
from desim.agent import Agent
from desim.app import rules, runner
from desim.app.scenario import load
from desim.models.warehouse.printout import FIGURES
from desim.registry import ModelSpec, SectionSpec
from desim.scenario import ScenarioError, Section
from desim.store import Store

ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_KEYS = FIGURES  # every figure a warehouse run's summary may hold


class ProbeCfg(Section):
    """The throwaway model's section: nothing to set."""

    ticks: int = 0


class Ticker(Agent):
    """An agent that only waits: ``ticks`` events per simulated second."""

    def __init__(self, sim, name, rate):
        self.rate = rate
        super().__init__(sim, name)

    def behaviour(self):
        while True:
            yield self.sim.env.timeout(1.0 / self.rate if self.rate else 1e9)


class Probe:
    """A model whose summary and tables are whatever the test sets (class attributes)."""

    summary_value: object = {}
    tables_value: object = {}
    agent_name = "a"

    def __init__(self, sim, cfg):
        self.agent = Ticker(sim, self.agent_name, cfg.ticks)

    def finish(self):
        pass

    def summary(self):
        return Probe.summary_value

    def tables(self):
        return Probe.tables_value


def _topology(sc, file="<scenario>"):
    g = nx.Graph()
    g.add_node("a", role="agent")
    g.add_node("b", role="service")
    g.add_edge("a", "b")
    return g


def _register(**spec):
    registry.sections.unregister("probe")
    registry.models.unregister("probe")
    registry.sections.register("probe", SectionSpec(ProbeCfg, owner="tests"))
    registry.models.register("probe", ModelSpec("probe", build=lambda sim, net, sc, prep, brain: Probe(sim, sc.probe),
                                                topology=_topology, **spec))


@pytest.fixture
def probe(tmp_path):
    _register(rate=lambda sc, prep: 1.0)
    path = tmp_path / "probe.toml"
    path.write_text('name = "probe"\nuntil = 2.0\n[probe]\n')
    yield path
    registry.models.unregister("probe")
    registry.sections.unregister("probe")
    Probe.summary_value, Probe.tables_value, Probe.agent_name = {}, {}, "a"


# --- model summaries with random names and values ---

scalars = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=8)
names = st.one_of(st.sampled_from(sorted(rules.RUNNER_FIGURES) + list(WAREHOUSE_KEYS)),
                  st.text(max_size=12), st.text(max_size=8).map(lambda s: s + "_conserved"))
summaries = st.dictionaries(names, values, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(summary=summaries, declare=st.booleans())
def test_any_model_summary_prints_or_is_refused_in_one_line(probe, tmp_path, summary, declare):
    _register(rate=lambda sc, prep: 1.0, figures=tuple(summary) if declare else None)
    Probe.summary_value = summary
    store = tmp_path / f"s-{uuid.uuid4().hex}.duckdb"  # a store per example
    clash = [k for k in summary if k in rules.RUNNER_FIGURES or not k]
    code, out, err = call("run", probe, "--store", store)
    if code == 0:  # printed, recorded complete, and every model figure is on the table
        assert not clash and "Traceback" not in err
        for k, v in summary.items():
            if k.endswith("_conserved"):
                assert v is True
        runs = Store(store).list_runs()
        assert [r["status"] for r in runs] == ["complete"]
        assert runs[0]["summary"]["model"] == "probe"
        rows = [ln for ln in out.splitlines() if ln.startswith("│")]
        assert len(rows) >= 8 + min(len(rules.flatten(summary)), rules.MAX_PRINTED + 1)  # runner's rows + each figure
        return
    line = one_line_error(code, out, err)
    bad_balance = any(k.endswith("_conserved") and v is not True for k, v in summary.items())
    assert clash or bad_balance, line
    statuses = [r["status"] for r in Store(store).list_runs()] if store.exists() else []
    assert "complete" not in statuses  # never a run recorded as complete that then fails
    if declare and clash:  # declared figures: refused before the run, nothing recorded
        assert statuses == [] and ("is the runner's" in line or "non-empty strings" in line)


def test_the_conserved_failure_names_the_figure_and_its_value(probe, tmp_path):
    Probe.summary_value = {"widgets": {"made": 3, "shipped": 2}, "widgets_conserved": False}
    line = one_line_error(*call("run", probe, "--store", tmp_path / "s.duckdb"))
    assert line.endswith("conservation violated: model 'probe' reports widgets_conserved = false "
                         "(widgets = {'made': 3, 'shipped': 2})"), line
    assert [r["status"] for r in Store(tmp_path / "s.duckdb").list_runs()] == ["failed"]
    Probe.summary_value = {"widgets_conserved": "yes"}
    line = one_line_error(*call("run", probe, "--no-store"))
    assert "widgets_conserved must be true or false" in line and "'yes'" in line


def test_a_table_named_like_a_network_table_is_refused(probe, tmp_path):
    Probe.tables_value = {"net_links": {"x": [1, 2]}}
    line = one_line_error(*call("run", probe, "--store", tmp_path / "s.duckdb"))
    assert "table 'net_links' is the network's" in line
    assert [r["status"] for r in Store(tmp_path / "s.duckdb").list_runs()] == ["failed"]
    # `events` is shared: the model's rows join the network's, with its columns only
    Probe.tables_value = {"events": {"t": [0.5], "kind": ["tick"]}}
    assert call("run", probe, "--store", tmp_path / "ok.duckdb")[0] == 0
    st = Store(tmp_path / "ok.duckdb")
    rows = st.table("events", st.list_runs()[0]["run_id"]).to_pylist()
    assert [r["kind"] for r in rows] == ["tick"] and rows[0]["agent"] is None
    Probe.tables_value = {"events": {"t": [0.5], "what": ["tick"]}}
    line = one_line_error(*call("run", probe, "--store", tmp_path / "s2.duckdb"))
    assert "shared table 'events'" in line and "unknown: what" in line
    Probe.tables_value = {"mine": {"a": [1, 2], "b": [1]}}
    assert "columns of different lengths" in one_line_error(*call("run", probe, "--store", tmp_path / "x.duckdb"))
    # declared tables: refused before the run, by validate too
    _register(rate=lambda sc, prep: 1.0, tables=("mine", "net_delays"))
    line = one_line_error(*call("validate", probe))
    assert "table 'net_delays' is the network's" in line


def test_an_agent_that_is_not_a_node_is_one_line_at_build_time(probe, tmp_path):
    Probe.agent_name = "aa"
    line = one_line_error(*call("run", probe, "--store", tmp_path / "s.duckdb"))
    assert "agent 'aa' is not a node of the topology" in line and "close names: a" in line
    assert not (tmp_path / "s.duckdb").exists() or Store(tmp_path / "s.duckdb").list_runs() == []
    Probe.agent_name = "zzz"
    line = one_line_error(*call("run", probe, "--no-store"))
    assert "nodes with role 'agent': a" in line


def test_the_event_budget_applies_to_a_model_without_a_rate(probe, tmp_path, monkeypatch):
    _register()  # no rate: measured on a trial run
    path = tmp_path / "busy.toml"
    path.write_text('name = "busy"\nuntil = 1e7\n[probe]\nticks = 1000\n')
    with pytest.raises(ScenarioError) as e:
        load(path)
    assert "would take about 2e+10 events" in str(e.value)  # 1000 events/s x 1e7 s x the margin
    path.write_text('name = "busy"\nuntil = 60\n[probe]\nticks = 1000\n')
    plan = runner.prepare(load(path))
    assert 1000 <= plan.measured_rate <= 1000 * runner.TRIAL_MARGIN + 1  # 1000 events/s, times the margin
    monkeypatch.setenv("DESIM_EVENT_BUDGET", "1e4")
    line = one_line_error(*call("validate", path))
    assert "would take about" in line


def _desim(*args, cwd, env):
    exe = Path(sys.executable).with_name("desim")
    return subprocess.run([str(exe), *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_a_plugin_that_does_not_import_is_one_line(tmp_path):
    scenario = ROOT / "docs" / "tutorial" / "clientserver.toml"
    r = _desim("validate", str(scenario), cwd=tmp_path, env={"DESIM_PLUGINS": "no_such_plugin"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "DESIM_PLUGINS" in r.stderr and "'no_such_plugin'" in r.stderr and str(tmp_path) in r.stderr
    (tmp_path / "broken.py").write_text("def register():\n    x = (\n")
    r = _desim("validate", str(scenario), cwd=tmp_path, env={"DESIM_PLUGINS": "broken"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "SyntaxError" in r.stderr
    assert "broken.py:2" in r.stderr
    # without the plugin, the unknown section names the way to load one
    r = _desim("validate", str(scenario), cwd=tmp_path, env={"DESIM_PLUGINS": ""})
    assert r.returncode == 2 and "unknown section" in r.stderr and "DESIM_PLUGINS" in r.stderr


def test_the_warehouse_prints_its_own_rows_and_stores_its_headline(tmp_path):
    code, out, err = call("run", ROOT / "scenarios" / "warehouse-small.toml", "--until", "30", "--store", tmp_path / "w.duckdb")
    assert code == 0, err
    assert "deliveries" in out and "order latency p50/p95/p99" in out and "robot_time" not in out
    run = Store(tmp_path / "w.duckdb").list_runs()[0]
    assert run["summary"]["model"] == "warehouse" and run["summary"]["headline"].endswith("deliveries")
    code, out, _ = call("runs", "list", "--store", tmp_path / "w.duckdb")
    assert run["summary"]["headline"] in out


def test_a_model_figure_of_the_wrong_shape_does_not_break_runs_list(probe, tmp_path):
    Probe.summary_value = {"orders": 957, "deliveries": {"total": 957}}
    store = tmp_path / "s.duckdb"
    code, out, err = call("run", probe, "--store", store)
    assert code == 0, err
    assert "deliveries.total" in out and "957" in out
    code, out, _ = call("runs", "list", "--store", store)
    assert code == 0 and "{'total'" not in out and "msgs" in out
