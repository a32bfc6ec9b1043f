"""Credit in the order pipeline: true per-order contributions by counterfactual re-runs (common random
numbers), beside the credit a learner would be assigned (``models/warehouse/pipeline_credit.py``).

Pinned here: a re-run with nobody replaced reproduces every order's outcome and the trace hash of a
plain run exactly; a hand-checkable case (no initial stock: without procurement no order can be
reserved, so procurement's contribution is exactly the orders completed); contributions in {-1, 0, 1};
the traceability measure (1 for the truth, undefined for a constant); determinism; one-line errors.
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from desim.app.pipeline_study import pipeline_credit, replay
from desim.app.runner import run
from desim.app.scenario import load
from desim.models.warehouse.contribution import traceability
from desim.models.warehouse.pipeline_credit import AGENTS, PIPELINE_CREDIT, ProceedBrain
from desim.scenario import ScenarioError, validate
from desim.store import Store

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
PIPELINE = SCENARIOS / "warehouse-pipeline.toml"
UNTIL = 300.0


@pytest.fixture(scope="module")
def sc():
    return load(PIPELINE)


@pytest.fixture(scope="module")
def credit(sc):
    return pipeline_credit(sc, 1, until=UNTIL, file=str(PIPELINE))


def test_rerun_with_nobody_replaced_reproduces_every_order(sc, credit):
    a = replay(sc, 1, until=UNTIL)
    b = replay(sc, 1, until=UNTIL)
    plain = run(sc, 1, UNTIL)
    assert a.trace_hash == b.trace_hash == credit.trace_hash == plain.summary["trace_hash"]
    assert a == b  # every order: time, shelf, outcome, reason, admission
    assert a.outcome == tuple(plain.model.tables()["order_outcomes"]["outcome"])
    assert a.counts() == {"completed": credit.completed, "failed": credit.failed, "pending": credit.pending}
    assert credit.completed > 0 and credit.created == len(a.outcome)


def test_contributions_are_outcome_differences(credit):
    rows = credit.orders
    assert len(rows) == credit.created * len(AGENTS)
    assert {r.true for r in rows} <= {-1.0, 0.0, 1.0}
    assert {r.assigned_global for r in rows} <= {0.0, 1.0} and {r.assigned_local for r in rows} <= {0.0, 1.0}
    for r in rows:
        assert r.assigned_global == float(r.outcome == "completed")
        if r.true == 1:
            assert r.outcome == "completed"  # made the difference: completed only with the agent
        if r.true == -1:
            assert r.outcome != "completed"
    # the floor's default (robots NOOP) delivers nothing: its contribution is every completed order
    assert credit.without["floor"]["completed"] == 0
    assert credit.totals["floor"]["true"] == credit.completed == credit.totals["floor"]["assigned_local"]
    for a in AGENTS:
        assert credit.totals[a]["true"] == credit.completed - credit.without[a]["completed"]
        assert credit.totals[a]["true"] == sum(r.true for r in rows if r.agent == a)


def test_store_rows_match_the_declared_table(credit, tmp_path):
    cols = credit.rows()
    assert list(cols) == list(PIPELINE_CREDIT.columns)
    assert all(len(v) == len(credit.orders) for v in cols.values())
    assert set(cols["seed"]) == {1} and set(cols["agent"]) == set(AGENTS)
    store = Store(tmp_path / "s.duckdb")
    with store.run("study") as h:
        h.append(PIPELINE_CREDIT.name, cols)
    t = store.table(PIPELINE_CREDIT.name)
    assert t.num_rows == len(credit.orders) and t.column("true").to_pylist() == cols["true"]


def test_no_initial_stock_procurement_made_the_difference_for_every_completed_order():
    data = tomllib.loads(PIPELINE.read_text())
    data["inventory"]["initial_stock"] = 0  # nothing to reserve until procurement's stock lands
    sc = validate(data, "no-stock.toml", SCENARIOS)
    res = pipeline_credit(sc, 2, until=400.0, file="no-stock.toml")
    assert res.without["procurement"]["completed"] == 0
    assert res.completed > 0
    proc = {r.order: r.true for r in res.orders if r.agent == "procurement"}
    done = {r.order for r in res.orders if r.agent == "procurement" and r.outcome == "completed"}
    assert {o for o, t in proc.items() if t != 0} == done  # exactly those orders, each +1
    assert res.totals["procurement"]["true"] == res.completed == len(done)
    # and every one of them took stock procurement bought: local credit sees it
    assert all(r.assigned_local == 1.0 for r in res.orders if r.agent == "procurement" and r.order in done)


def test_traceability_one_for_the_truth_undefined_for_a_constant(credit):
    truth = [r.true for r in credit.orders]
    assert traceability(truth, truth) == pytest.approx(1.0)
    assert math.isnan(traceability([1.0] * len(truth), truth))
    for s in ("global", "local"):
        r = credit.traceability[s]
        assert math.isnan(r) or -1.0 <= r <= 1.0
        assert r == pytest.approx(traceability([getattr(p, f"assigned_{s}") for p in credit.orders], truth),
                                  nan_ok=True)


def test_same_seed_same_rows(sc, credit):
    again = pipeline_credit(sc, 1, until=UNTIL, file=str(PIPELINE))
    assert again.rows() == credit.rows() and again.trace_hash == credit.trace_hash
    assert again.totals == credit.totals


def test_default_pipeline_brain_proceeds_and_never_obeys():
    obs = [{"stage": "stock", "stock": 0.0}, {"stage": "price", "price": 9.0, "quote": 1.0}, {"stage": "payload"}]
    assert ProceedBrain().act(obs) == ["proceed", "proceed", "ignore"]


def test_scenario_without_pipeline_is_refused_in_one_line():
    sc = load(SCENARIOS / "warehouse-small-event.toml")
    with pytest.raises(ScenarioError) as e:
        pipeline_credit(sc, 1, until=10.0, file="warehouse-small-event.toml")
    msg = str(e.value)
    assert "\n" not in msg and "pipeline" in msg and e.value.field == "pipeline"


def test_bad_arguments_are_refused(sc):
    with pytest.raises(ValueError, match="until"):
        pipeline_credit(sc, 1, until=-1.0)
    with pytest.raises(ValueError, match="replace"):
        replay(sc, 1, until=10.0, replace="nobody")
