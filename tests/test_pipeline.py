"""The order pipeline end to end on scenarios/warehouse-pipeline.toml (models/warehouse/pipeline.py).

Orders are conserved (completed + failed + pending == created, none lost) with and without
faults; a restock happens; runs are deterministic per seed; a scenario without the sections
keeps its old trace hash and topology; the guard stops a gullible agent's smuggled orders
and quarantines a rogue one; bad sections are one line naming the field.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cli_support import call
from desim.agent import Brain
from desim.app.recording import record_run
from desim.app.runner import build, execute, prepare, run
from desim.app.scenario import load
from desim.models.services.config import service_nodes
from desim.scenario import ScenarioError, parse
from desim.store import Store
from test_trace_contract import HASHES

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "warehouse-pipeline.toml"
BASE = SCENARIO.read_text()
UNTIL = 600.0


def with_(extra: str = "", **replace) -> object:
    text = BASE + "\n" + extra
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse(text, "<test>", base_dir=SCENARIO.parent)


def conserved(s: dict) -> None:
    o, p = s["orders"], s["pipeline"]
    assert o["created"] == o["completed"] + sum(o["failed"].values()) + o["pending"]
    assert p["lost"] == 0 and s["pipeline_conserved"] is True and s["orders_conserved"] is True


def test_the_clean_pipeline_completes_orders_restocks_and_conserves():
    s = run(load(SCENARIO), 1, UNTIL).summary
    conserved(s)
    p = s["pipeline"]
    assert s["orders"]["completed"] >= 20 and s["deliveries"] >= 20
    assert p["restocks"] >= 1 and p["restocked_units"] == 5 * p["restocks"]  # restock_qty = 5
    assert p["tool_status"] == {"200": p["tool_calls"]} and p["guard_fallback"] == 0
    assert p["inventory_reads"] > 0 and p["lock_timeouts"] == 0
    assert set(s["orders"]["failed"]) <= {"out_of_stock"}  # the only way a clean run fails an order


def test_deterministic_per_seed():
    sc = load(SCENARIO)
    a, b, c = (run(sc, seed, 300.0).summary for seed in (4, 4, 5))
    assert a["trace_hash"] == b["trace_hash"] and a["pipeline"] == b["pipeline"]
    assert a["trace_hash"] != c["trace_hash"]


def test_a_scenario_without_the_sections_keeps_its_hash_and_topology():
    sc = load(ROOT / "scenarios" / "warehouse-tiny-event.toml")
    g = prepare(sc).graph
    assert not any(n in g for n in ("tool-lookup", "inventory-r1")), "no service nodes added"
    s = run(sc, 1, 120.0).summary
    assert s["trace_hash"] == HASHES["warehouse-tiny-event.toml:1"] and "pipeline" not in s
    g = prepare(load(SCENARIO)).graph
    assert all(g.nodes[n]["role"] == "service" for n in service_nodes(load(SCENARIO)))


FAULTS = {
    "storm_500": '[[tool_faults]]\nat = 60.0\nduration = 200.0\nkind = "error_500"\nrate = 0.9\n',
    "throttle": '[[tool_faults]]\nat = 60.0\nduration = 200.0\ntool = "price_check"\nkind = "throttle"\nlimit = 0.02\n',
    "timeouts": '[[tool_faults]]\nat = 60.0\nduration = 200.0\nkind = "timeout"\nrate = 0.5\n',
    "corrupt": '[[tool_faults]]\nat = 60.0\nduration = 400.0\nkind = "malformed"\nrate = 0.5\n',
    "byzantine": '[[tool_faults]]\nat = 60.0\nduration = 400.0\nkind = "byzantine"\nrate = 0.5\nfactor = 0.3\n',
    "primary_cut": '[[faults]]\nat = 60.0\nkind = "isolate"\nnodes = ["inventory"]\nduration = 200.0\n',
    "replica_cut": '[[faults]]\nat = 60.0\nkind = "isolate"\nnodes = ["inventory-r1"]\nduration = 300.0\n',
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_orders_are_conserved_under_faults_and_the_faults_show(case):
    s = run(with_(FAULTS[case]), 1, UNTIL).summary
    conserved(s)
    p = s["pipeline"]
    if case in ("storm_500", "throttle", "timeouts"):
        assert p["guard_fallback"] > 0 and p["guard_retry"] > 0  # the guard retried, then fell back
    if case == "storm_500":
        assert p["tool_status"].get("500", 0) > 0 and p["guard_breaker_open"] > 0
    if case == "throttle":
        assert p["tool_status"].get("429", 0) > 0
    if case == "timeouts":
        assert p["tool_status"].get("504", 0) > 0 and p["tool_faults"]["timeout"] > 0
    if case == "corrupt":
        assert p["guard_reject"] > 0 and p["tool_faults"]["malformed"] > 0
    if case == "byzantine":
        assert p["tool_faults"]["byzantine"] > 0 and (p["mispriced"] > 0 or "price_mismatch" in s["orders"]["failed"])
    if case == "primary_cut":  # reservations go unanswered; a write is not retried (it may have happened)
        assert s["orders"]["completed"] > 0 and p["tool_status"].get("504", 0) > 0 and p["guard_fallback"] > 0
    if case == "replica_cut":
        assert p["tool_status"].get("503", 0) > 0 and p["replica_syncs"] >= 1


def test_stale_replicas_make_the_primary_refuse_reservations_and_the_order_tries_again():
    stale = {'lag = { dist = "lognormal", mean = 0.5, jitter = 0.3 }': 'lag = { dist = "lognormal", mean = 60.0, jitter = 20.0 }'}
    s = run(with_(**stale), 1, 1200.0).summary
    conserved(s)
    p = s["pipeline"]
    assert p["stale_reads"] > 0 and p["reserve_failures"].get("insufficient", 0) > 0
    assert p["max_staleness"] > 30.0 and p["rounds"] > s["orders"]["created"]  # refused rounds were tried again


def test_read_your_writes_spares_the_pipeline_its_own_stale_reads():
    """The only writer that takes stock away is the pipeline itself, so reading its own writes leaves
    stale reads only of restocks (which under-count): fewer stale reads, no refused reservation."""
    stale = {'lag = { dist = "lognormal", mean = 0.5, jitter = 0.3 }': 'lag = { dist = "lognormal", mean = 60.0, jitter = 20.0 }'}
    off = run(with_(**stale), 1, 1200.0).summary["pipeline"]
    on = run(with_(**stale, **{"heartbeat = 1.0": "heartbeat = 1.0\nread_your_writes = true"}), 1, 1200.0).summary
    conserved(on)
    assert on["pipeline"]["stale_reads"] < off["stale_reads"]
    assert on["pipeline"]["reserve_failures"].get("insufficient", 0) == 0 < off["reserve_failures"]["insufficient"]


@pytest.mark.parametrize("guard", [True, False])
def test_smuggled_instructions_reach_a_gullible_agent_only_without_the_guard(guard):
    extra = FAULTS["corrupt"].replace('rate = 0.5', 'rate = 0.5\npayload = "injection"\ntool = "inventory_lookup"')
    extra += f"\n[guard]\nenabled = {str(guard).lower()}\n"
    s = run(with_(extra, **{'brain = "heuristic"': 'brain = "gullible"'}), 1, UNTIL).summary
    conserved(s)
    p = s["pipeline"]
    if guard:
        assert p["unauthorized_attempts"] == 0 and p["guard_reject"] > 0
    else:
        assert p["unauthorized_executed"] == p["unauthorized_attempts"] > 0
        assert p["restocked_units"] >= 100_000  # what the smuggled text asked for landed


def test_the_kill_switch_quarantines_a_rogue_pipeline_and_no_order_is_lost():
    s = run(with_(**{'brain = "heuristic"': 'brain = "rogue"'}), 1, UNTIL).summary
    conserved(s)
    p = s["pipeline"]
    assert p["guard_quarantined_agents"] == ["orders"] and p["guard_quarantine"] == 1
    assert p["guard_blocked"] == 3 and p["unauthorized_executed"] == 0
    assert s["orders"]["failed"].get("tool_unavailable", 0) > 0  # its orders got the safe default


class AlwaysBackorder:
    """A stand-in for a learned brain: anything with ``act(batch)`` and ``policy_version``."""

    policy_version = 7

    def __init__(self):
        self.seen = []

    def act(self, observations):
        self.seen += observations
        return ["backorder" if o["stage"] == "stock" else "proceed" for o in observations]


def test_another_brain_plugs_in_through_the_brain_protocol():
    brain = AlwaysBackorder()
    assert isinstance(brain, Brain)
    world = build(load(SCENARIO), 1)
    world.model.components[0].pipeline.brain = brain
    s = execute(world, 300.0).summary
    conserved(s)
    assert s["orders"]["completed"] == 0 and brain.seen and all(o["stage"] == "stock" for o in brain.seen)
    assert {"stock", "std", "order", "round"} <= set(brain.seen[0])


def test_belief_on_and_off_both_run_and_agree_on_a_clean_floor():
    on = run(with_("[belief]\nenabled = true\n"), 2, 300.0).summary
    off = run(with_("[belief]\nenabled = false\n"), 2, 300.0).summary
    conserved(on)
    conserved(off)
    assert on["orders"] == off["orders"]  # fresh reads: the filter follows them


@pytest.mark.parametrize("extra,replace,field", [
    ('[[tool_faults]]\nat = 1.0\nkind = "error_500"\ntool = "nope"\n', {}, "tool_faults[0].tool"),
    ('[[tool_faults]]\nat = 1.0\nkind = "error_500"\nrate = 2.0\n', {}, "tool_faults[0].rate"),
    ('[[tool_faults]]\nat = 1.0\nkind = "meteor"\n', {}, "tool_faults[0].kind"),
    ("", {"replicas = 2": "replicas = 99"}, "inventory.replicas"),
    ("", {"restock_qty = 5": 'restock_qty = "5"'}, "pipeline.restock_qty"),
    ("", {"lead_time = { dist = \"constant\", mean = 60.0 }": "lead_time = { dist = \"constant\", mean = -1.0 }"},
     "tools.lead_time.mean"),
])
def test_a_bad_section_is_one_line_naming_the_field(extra, replace, field):
    text = BASE
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(ScenarioError) as e:
        parse(text + "\n" + extra, "f.toml")
    assert f"f.toml: {field}:" in str(e.value) and "\n" not in str(e.value)


def test_the_pipeline_needs_an_order_stream():
    text = BASE.replace('orders = { rate_per_hour = 240.0, max_age = 900.0 }\n', "")
    with pytest.raises(ScenarioError, match=r"warehouse\.orders"):
        prepare(parse(text, "f.toml", base_dir=SCENARIO.parent), "f.toml")


def test_a_recorded_run_has_the_pipeline_tables(tmp_path):
    summary = record_run(load(SCENARIO), SCENARIO, tmp_path / "s.duckdb", seed=1, until=300.0)
    store = Store(tmp_path / "s.duckdb")
    outcomes = store.table("order_outcomes", "latest").to_pylist()
    assert len(outcomes) == summary["orders"]["created"]
    by = Counter(r["outcome"] for r in outcomes)
    assert by["completed"] == summary["orders"]["completed"] and by["pending"] == summary["orders"]["pending"]
    assert all(r["latency"] > 0 for r in outcomes if r["outcome"] == "completed")
    calls = store.table("tool_calls", "latest").to_pylist()
    assert len(calls) == summary["pipeline"]["tool_calls"] and {r["tool"] for r in calls} >= {"inventory_lookup", "reserve"}
    reads = store.table("inventory_reads", "latest").to_pylist()
    assert reads and all(r["staleness"] >= 0 and r["version"] <= r["true_version"] for r in reads)
    guard = store.table("guard", "latest").to_pylist()
    assert {r["decision"] for r in guard} >= {"allowed", "pass"}


def test_desim_validate_and_run_on_the_command_line():
    code, out, err = call("validate", str(SCENARIO))
    assert code == 0, err
    code, out, err = call("run", str(SCENARIO), "--seed", "1", "--no-store", "--json", "--until", "120")
    assert code == 0, err
    s = json.loads(out)
    assert s["pipeline_conserved"] and s["pipeline"]["tool_calls"] > 0


# -- property: random tool and network fault schedules ---------------------------------------------
TOOL_KINDS = ["error_500", "error_503", "throttle", "timeout", "slow", "malformed", "byzantine"]
NODES = ["inventory", "inventory-r1", "inventory-r2", "tool-lookup", "tool-price", "tool-restock", "orders",
         "procurement", "zone-0"]


@st.composite
def schedules(draw) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        out.append("[[tool_faults]]\n" + f"at = {draw(st.floats(0, 150)):.3f}\nduration = {draw(st.floats(1, 150)):.3f}\n"
                   f'kind = "{draw(st.sampled_from(TOOL_KINDS))}"\n'
                   f'tool = "{draw(st.sampled_from(["all", "inventory_lookup", "price_check", "restock"]))}"\n'
                   f"rate = {draw(st.floats(0, 1)):.3f}\nlimit = {draw(st.floats(0.01, 5)):.3f}\n"
                   f"extra_delay = {draw(st.floats(0, 5)):.3f}\nfactor = {draw(st.floats(0.01, 3)):.3f}\n")
    for _ in range(draw(st.integers(0, 2))):
        out.append("[[faults]]\n" + f"at = {draw(st.floats(0, 150)):.3f}\nduration = {draw(st.floats(1, 100)):.3f}\n"
                   f'kind = "isolate"\nnodes = ["{draw(st.sampled_from(NODES))}"]\n')
    if draw(st.booleans()):
        out.append("[guard]\nenabled = false\n")
    if draw(st.booleans()):
        out.append("[belief]\nenabled = false\n")
    return "\n".join(out)


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(schedules(), st.integers(0, 2**31), st.sampled_from(["heuristic", "gullible", "rogue"]))
def test_no_order_is_lost_retries_are_bounded_and_runs_repeat_under_random_faults(extra, seed, brain):
    sc = with_(extra, **{'brain = "heuristic"': f'brain = "{brain}"'})
    a = run(sc, seed, 200.0)
    s = a.summary
    conserved(s)
    assert s["sim_time"] == 200.0  # it terminated at its end, not stalled before
    svc = a.model.components[0]
    max_retries = svc.guard.cfg.retry.max_retries
    per_call = Counter(c for c, d in zip(svc.guard.log.cols["call"], svc.guard.log.cols["decision"]) if d == "retry")
    assert max(per_call.values(), default=0) <= max_retries
    assert s["pipeline"]["retries"] == sum(per_call.values())
    assert run(sc, seed, 200.0).summary["trace_hash"] == s["trace_hash"]
