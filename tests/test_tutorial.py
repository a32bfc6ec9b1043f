"""The tutorial (docs/tutorial.md) runs: its clientserver plugin registers, runs in-process and through `desim run`.

The tutorial's code lives in docs/tutorial/ (clientserver.py, clientserver.toml); these tests run it
as the tutorial tells a reader to, so the walk-through cannot rot. Whatever they register is
unregistered afterwards, so other tests see desim's own registries.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from desim import registry
from desim.scenario import ScenarioError

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial"
SCENARIO = TUTORIAL / "clientserver.toml"
UNTIL = 30.0  # the scenario's fault isolates server-1 from 10 s to 20 s


@pytest.fixture
def plugin(monkeypatch):
    """The tutorial's plugin, loaded the way DESIM_PLUGINS would load it; unregistered at teardown."""
    monkeypatch.syspath_prepend(str(TUTORIAL))
    registry.load_plugin("clientserver")
    if "clientserver" not in registry.models:  # load_plugin loads a module once per process: an earlier test's
        sys.modules["clientserver"].register()  # teardown unregistered it, so register it again by hand
    yield sys.modules["clientserver"]
    registry.models.unregister("clientserver")
    registry.sections.unregister("clientserver")


def test_runs_in_process_answers_times_out_and_is_deterministic(plugin):
    from desim.app import runner
    from desim.app.scenario import load

    sc = load(SCENARIO)
    assert runner.prepare(sc).model.section == "clientserver"
    s = runner.run(sc, seed=1, until=UNTIL).summary
    assert s["conservation_ok"] and s["requests_conserved"]
    assert s["requests"] > 50 and s["answered"] > 0.8 * s["requests"]
    assert s["timeout"] > 0  # requests to server-1 while it was cut off
    assert s["messages"]["dropped"].get("partition", 0) > 0
    assert s["served"]["server-0"] > 0 and s["served"]["server-1"] > 0
    assert 0 < s["response_time"]["p50"] <= s["response_time"]["p99"] < sc.clientserver.timeout
    again = runner.run(sc, seed=1, until=UNTIL).summary
    assert again["trace_hash"] == s["trace_hash"] and again["requests"] == s["requests"]
    assert runner.run(sc, seed=2, until=UNTIL).summary["trace_hash"] != s["trace_hash"]

    # the model's table: one row per request
    world = runner.build(sc, 1)
    res = runner.execute(world, UNTIL)
    rows = res.model.tables()["cs_requests"]
    assert len(rows["client"]) == s["requests"] and set(rows["outcome"]) <= {"answered", "timeout", "pending"}
    assert set(rows["server"]) == {"server-0", "server-1"}


def test_section_and_checks_report_one_line_errors(plugin):
    from desim.app.runner import prepare
    from desim.scenario import parse

    text = SCENARIO.read_text()
    with pytest.raises(ScenarioError, match=r"clientserver\.servers: Input should be greater than or equal to 1"):
        parse(text.replace("servers = 2", "servers = 0"))
    with pytest.raises(ScenarioError, match=r"clientserver\.speed: unknown field"):
        parse(text.replace("[clientserver]", "[clientserver]\nspeed = 3"))
    sc = parse(text + '\n[[traffic]]\nfrom = "agent"\nto = "service"\n', "cs.toml")
    with pytest.raises(ScenarioError, match=r"^cs\.toml: traffic: a \[clientserver\] scenario makes its own traffic"):
        prepare(sc, "cs.toml")


def test_unregistered_after_the_fixture():
    assert "clientserver" not in registry.models and "clientserver" not in registry.sections


def test_desim_run_records_it_for_the_dashboard(tmp_path):
    from desim.store import Store

    store = tmp_path / "s.duckdb"
    env = dict(os.environ, DESIM_PLUGINS="clientserver")
    proc = subprocess.run([str(Path(sys.executable).with_name("desim")), "run", "clientserver.toml", "--until", str(UNTIL),
                           "--json", "--store", str(store)], cwd=TUTORIAL, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["scenario"] == "clientserver" and summary["requests"] > 0 and summary["conservation_ok"]

    st = Store(store)
    (run,) = st.list_runs()
    assert run["run_id"] == summary["run_id"] and run["status"] == "complete" and run["kind"] == "run"
    assert run["summary"]["answered"] == summary["answered"]
    assert {"net_nodes", "net_links", "net_delays", "cs_requests"} <= set(run["tables"])
    nodes = {r["node"]: r["role"] for r in st.table("net_nodes", run["run_id"], as_dicts=True)}
    assert nodes == {"switch": "switch", "client-0": "agent", "client-1": "agent", "client-2": "agent",
                     "client-3": "agent", "server-0": "service", "server-1": "service"}
    assert st.table("cs_requests", run["run_id"]).num_rows == summary["requests"]
    assert st.query("SELECT count(*) AS n FROM events WHERE kind = 'fault_start'")[0]["n"] == 1


def test_the_tutorials_code_listings_are_the_plugins_code():
    """The ```python blocks of docs/tutorial.md are quoted verbatim from clientserver.py, its scenario is clientserver.toml."""
    doc = (ROOT / "docs" / "tutorial.md").read_text()
    code = (TUTORIAL / "clientserver.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        assert block in code, f"docs/tutorial.md quotes code that clientserver.py no longer has:\n{block}"
    scenarios = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[clientserver]" in b]
    assert scenarios == [SCENARIO.read_text()]
