"""Capacity figures a planner can trust: units on every axis and table, intervals of counts never
below 0, latency flagged where it covers too few orders (survivorship), "blows up" only against a
non-zero base, the brain and network the answer assumes, and curves, knees and paired differences
per brain."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cli_support import call, one_line_error
from desim.analysis import blowup, mean_ci, mean_ci_nonneg, rise_from_zero
from desim.app.report import write_report
from desim.app.sweep import SWEEP_POINTS, execute, load_sweep, summarise, unit_of
from desim.store import Store

ROOT = Path(__file__).resolve().parents[1]


class Serial:
    """A sweep backend that runs every task in this process, in order (no pool to start)."""

    def map(self, fn, tasks):
        return map(fn, list(tasks))


def _results(points: list[dict], metrics_of) -> list[dict]:
    """Result rows as ``execute`` stores them: ``metrics_of(point, params)`` -> flat metrics, one per replication."""
    rows = []
    for i, params in enumerate(points):
        for rep, m in enumerate(metrics_of(i, params)):
            rows.append({"point": i, "rep": rep, "seed": 1 + rep, "params": json.dumps(params, sort_keys=True),
                         "metrics": json.dumps(m, sort_keys=True)})
    return rows


def _cfg(points, paths, metrics, reps=3, design="grid"):
    return {"name": "synthetic", "paths": paths, "metrics": metrics, "points": points, "replications": reps,
            "design": design}


def _stored_sweep(tmp_path: Path, cfg: dict, results: list[dict], scenario: str | None = "warehouse-small-event.toml",
                  scenario_text: str | None = None) -> tuple[Store, str]:
    """A sweep run written to a store by hand, as ``execute`` writes one."""
    store = Store(tmp_path / "s.duckdb")
    text = scenario_text if scenario_text is not None else (ROOT / "scenarios" / scenario).read_text()
    rid = store.begin_run("sweep", scenario=cfg["name"], scenario_text=text, seed=1,
                          config={**cfg, "base": str(ROOT / "scenarios" / (scenario or "x.toml")), "seed": 1,
                                  "until": cfg.get("until", 900.0), "key": "k"})
    store.append(rid, SWEEP_POINTS, results)
    store.finish_run(rid, "complete")
    return store, rid


# ------------------------------------------------------------------------------ units
def test_units_of_metrics_and_paths_and_no_unit_rather_than_a_wrong_one():
    assert unit_of("throughput_per_hour") == "deliveries per hour"
    for k in ("order_latency.p50", "order_latency.p95", "order_latency.p99", "faults[0].duration",
              "links.wireless.delay.mean", "links.default.delay.mean"):
        assert unit_of(k) == "s", k
    for k in ("deadlocks", "collisions", "deliveries"):
        assert unit_of(k) == "per run", k
    assert unit_of("robot_time_share.blocked") == "share of robot time"
    assert unit_of("warehouse.robots") == "robots"
    assert unit_of("warehouse.orders.rate_per_hour") == "orders per hour"
    for k in ("mean_return", "links.wireless.delay.correlation", "warehouse.brain", "nonsense.key", "faults"):
        assert unit_of(k) == "", k


# ------------------------------------------------------------------------------ intervals of nonnegative metrics
@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0.0, allow_nan=False, allow_infinity=True), min_size=1, max_size=30),
       st.sampled_from(["t", "bootstrap"]), st.floats(min_value=0.5, max_value=0.99))
def test_an_interval_of_nonnegative_values_never_goes_below_zero(values, method, level):
    c = mean_ci_nonneg(values, level, method)
    assert c.low >= 0
    assert c.low <= c.mean <= c.high
    assert c.n == len(values)


def test_clipped_interval_is_the_t_interval_above_zero_and_the_bootstrap_is_deterministic():
    deadlocks = [0, 0, 0, 5]  # a rare count: the t interval's low end is negative
    t, c = mean_ci(deadlocks), mean_ci_nonneg(deadlocks)
    assert t.low < 0 and c.low == 0.0
    assert c.high == pytest.approx(t.high) and c.mean == t.mean and c.half_width == pytest.approx(t.half_width)
    wide = [100.0, 104.0, 98.0]  # far from 0: nothing to clip
    assert mean_ci_nonneg(wide).low == pytest.approx(mean_ci(wide).low)
    b1, b2 = mean_ci_nonneg(deadlocks, method="bootstrap"), mean_ci_nonneg(deadlocks, method="bootstrap")
    assert b1 == b2 and b1.low >= 0 and b1.high <= 5
    assert mean_ci_nonneg([0, 0, 0]) == mean_ci_nonneg([0, 0, 0], method="bootstrap")  # no spread: [0, 0]
    assert mean_ci_nonneg([0.0, 0.0, 0.0]).high == 0.0
    one = mean_ci_nonneg([3.0])
    assert (one.low, one.high) == (0.0, math.inf)  # one replication says nothing about the spread
    assert math.isnan(mean_ci_nonneg([None, float("nan")]).mean)
    with pytest.raises(ValueError, match=">= 0"):
        mean_ci_nonneg([1.0, -0.5])
    with pytest.raises(ValueError, match="method"):
        mean_ci_nonneg([1.0, 2.0], method="wilson")


def test_why_the_clipped_t_interval_and_not_the_bootstrap_at_a_sweeps_replications():
    """At 3 replications (what sweeps run) the percentile bootstrap cannot leave the data's range
    and covers an exponential-like metric's mean far less often than 95%; the clipped t interval
    covers it as often as the plain t interval does (clipping removes only negative values)."""
    rng = np.random.default_rng(5)
    samples = rng.exponential(1.0, size=(600, 3))
    cover = {m: np.mean([mean_ci_nonneg(s, method=m).low <= 1.0 <= mean_ci_nonneg(s, method=m).high for s in samples])
             for m in ("t", "bootstrap")}
    plain = np.mean([mean_ci(s).low <= 1.0 <= mean_ci(s).high for s in samples])
    assert cover["t"] == plain >= 0.85
    assert cover["bootstrap"] < 0.8 < cover["t"]


def test_summarise_clips_nonnegative_metrics_and_says_which_interval_each_uses():
    points = [{"x": 1}, {"x": 2}]
    per = {0: [{"deadlocks": 0, "gain": -3.0}, {"deadlocks": 0, "gain": 1.0}, {"deadlocks": 4, "gain": 0.5}],
           1: [{"deadlocks": 1, "gain": -1.0}, {"deadlocks": 0, "gain": -2.0}, {"deadlocks": 0, "gain": 0.0}]}
    rep = summarise(_cfg(points, ["x"], ["deadlocks", "gain"]), "sw", _results(points, lambda i, p: per[i]))
    assert rep["intervals"] == {"deadlocks": "student-t, clipped at 0", "gain": "student-t"}
    d = rep["points"][0]["metrics"]["deadlocks"]
    assert d["low"] == 0.0 and mean_ci([0, 0, 4]).low < 0 and d["high"] == pytest.approx(mean_ci([0, 0, 4]).high)
    g = rep["points"][1]["metrics"]["gain"]
    assert g["low"] == pytest.approx(mean_ci([-1.0, -2.0, 0.0]).low)  # a metric that can be negative: unclipped
    assert g["low"] < -1
    assert rep["units"]["deadlocks"] == "per run" and rep["units"]["gain"] == ""


# ------------------------------------------------------------------------------ blow-ups against a zero base
def test_a_zero_base_rises_from_zero_and_never_blows_up():
    assert rise_from_zero([2, 4, 8, 16], [0, 0, 0.5, 4]) == (8.0, 0.5)
    assert rise_from_zero([2, 4, 8], [0, 0, 0]) is None
    assert rise_from_zero([2, 4, 8], [1, 0, 5]) is None  # a non-zero base: a blow-up question, not a rise
    assert blowup([1, 2, 3], [0, 0, 1]) == 3  # blowup() itself is unchanged (a positive value over a 0 base)
    points = [{"warehouse.robots": r} for r in (2, 4, 8, 16)]
    dl = {2: 0, 4: 0, 8: 0.5, 16: 4.0}
    lat = {2: 10.0, 4: 11.0, 8: 20.0, 16: 50.0}
    rows = _results(points, lambda i, p: [{"throughput_per_hour": 50.0 * p["warehouse.robots"],
                                              "deadlocks": dl[p["warehouse.robots"]],
                                              "order_latency.p99": lat[p["warehouse.robots"]]}] * 2)
    rep = summarise(_cfg(points, ["warehouse.robots"], ["throughput_per_hour", "deadlocks", "order_latency.p99"], 2),
                    "sw", rows)
    text = "\n".join(rep["findings"])
    assert "deadlocks rises from 0 (at warehouse.robots = 2) to 0.5 per run at warehouse.robots = 8 " \
           "(and 4 per run at warehouse.robots = 16)" in text
    assert "deadlocks blows up" not in text and "deadlocks" not in rep.get("blowups", {})
    assert rep["curves"][0]["rises"]["deadlocks"] == {"from_x": 2.0, "x": 8.0, "y": 0.5}
    assert rep["blowups"] == {"order_latency.p99": 16.0}  # 50 > 3 x 10: a blow-up against a non-zero base
    assert "order_latency.p99 blows up (more than 3x its 10 s at warehouse.robots = 2) from warehouse.robots = 16" in text


# ------------------------------------------------------------------------------ survivorship
def _orders(created: float, completed: float) -> dict:
    return {"orders.created": created, "orders.completed": completed, "orders.pending": created - completed}


def test_survivorship_is_flagged_per_point_and_shown_beside_the_latency(tmp_path):
    rates = [60.0, 600.0, 6000.0]
    points = [{"warehouse.orders.rate_per_hour": r} for r in rates]
    done = {60.0: (20, 19), 600.0: (200, 120), 6000.0: (2000, 150)}  # 95%, 60%, 7.5% completed

    def metrics(i, p):
        c, k = done[p["warehouse.orders.rate_per_hour"]]
        return [{"throughput_per_hour": k * 3.0, "order_latency.p99": 40.0 + i * 300 + r, **_orders(c, k)}
                for r in range(2)]

    cfg = _cfg(points, ["warehouse.orders.rate_per_hour"], ["throughput_per_hour", "order_latency.p99"], 2)
    results = _results(points, metrics)
    rep = summarise(cfg, "sw", results)
    s = [pt["survivorship"] for pt in rep["points"]]
    assert [x["flagged"] for x in s] == [False, True, True]
    assert [x["completed_share"] for x in s] == pytest.approx([0.95, 0.6, 0.075])
    assert [x["pending"] for x in s] == [1.0, 80.0, 1850.0]
    assert not any("survivorship" in f for f in rep["findings"])  # a caution about the figures, not a finding
    finding = next(f for f in rep["cautions"] if f.startswith("survivorship"))
    assert "2 of 3 points" in finding and "as few as 8%" in finding and "1,850 pending" in finding
    store, rid = _stored_sweep(tmp_path, cfg, results)
    md = write_report(store, rid, tmp_path / "rep").read_text()
    table = md.split("### order_latency.p99")[1].split("###")[0]
    assert "orders completed | backlog (pending per run) |" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    assert "survivorship" not in rows["60"] and "95%" in rows["60"]
    assert "survivorship-biased: computed over the 60% of orders completed; backlog 80 pending" in rows["600"]
    assert "survivorship-biased: computed over the 8% of orders completed; backlog 1,850 pending" in rows["6,000"]
    assert "survivorship" not in md.split("### throughput_per_hour")[1].split("###")[0]  # not a latency: no flag


def _real_sweep(tmp_path: Path, name: str, base: str, until: float, metrics: str, grid: str):
    """A sweep file over a shipped scenario, run serially into a fresh store: (file, store, run id, results)."""
    f = tmp_path / f"{name}.toml"
    f.write_text(f'name = "{name}"\nbase = "{ROOT / "scenarios" / base}"\nuntil = {until}\n'
                 f'replications = 2\nseed = 1\nmetrics = {metrics}\n[grid]\n{grid}')
    store = Store(tmp_path / "s.duckdb")
    rid, results = execute(load_sweep(f), store, Serial())
    return f, store, rid, results


def test_a_real_sweep_past_capacity_trips_the_survivorship_flag(tmp_path):
    f, store, rid, results = _real_sweep(tmp_path, "rate", "warehouse-tiny-event.toml", 1200.0,
                                         '["throughput_per_hour", "order_latency.p99"]',
                                         '"warehouse.orders.rate_per_hour" = [30.0, 3000.0]\n')
    rep = summarise(load_sweep(f), rid, results)
    low, high = (pt["survivorship"] for pt in rep["points"])
    assert not low["flagged"] and low["completed_share"] >= 0.9  # 30 orders per hour: 2 robots keep up
    assert high["flagged"] and high["completed_share"] < 0.2 and high["pending"] > 300  # 3,000 per hour: a backlog
    assert any(f.startswith("survivorship: order_latency.p99 at 1 of 2 points") for f in rep["cautions"])
    md = write_report(store, rid, tmp_path / "rep").read_text()
    assert md.count("survivorship-biased: computed over the") == 1
    assert f"backlog {high['pending']:,.0f} pending" in md


# ------------------------------------------------------------------------------ per-brain curves, knees, paired rows
ROBOTS = [2, 4, 8, 16, 32, 64]


def _brain_rows(points):
    """Brain A saturates at 16 robots, brain B at 32; replication r adds the same r-dependent noise
    to both (common random numbers), so B - A is exact."""
    cap = {"A": 16, "B": 32}

    def metrics(i, p):
        n, b = p["warehouse.robots"], p["warehouse.brain"]
        return [{"throughput_per_hour": 10.0 * min(n, cap[b]) + (r - 1) * 2.0, "deadlocks": float(max(0, n - cap[b]) // 8)}
                for r in range(3)]

    return _results(points, metrics)


def test_knees_are_per_brain_and_x_is_the_first_numeric_path(tmp_path):
    points = [{"warehouse.brain": b, "warehouse.robots": n} for b in ("A", "B") for n in ROBOTS]  # brain first
    cfg = _cfg(points, ["warehouse.brain", "warehouse.robots"], ["throughput_per_hour", "deadlocks"])
    results = _brain_rows(points)
    rep = summarise(cfg, "sw", results)
    assert rep["x"] == "warehouse.robots" and rep["varied"] == ["warehouse.brain", "warehouse.robots"]
    assert [c["group"] for c in rep["curves"]] == [{"warehouse.brain": "A"}, {"warehouse.brain": "B"}]
    assert [c["knee"]["x"] for c in rep["curves"]] == [16.0, 32.0]
    assert "knee" not in rep  # no single knee for a sweep of two brains
    text = "\n".join(rep["findings"])
    assert "saturation (warehouse.brain=A): throughput_per_hour stops growing at warehouse.robots = 16" in text
    assert "saturation (warehouse.brain=B): throughput_per_hour stops growing at warehouse.robots = 32" in text
    assert "deadlocks (warehouse.brain=A) rises from 0 (at warehouse.robots = 2) to 2 per run at warehouse.robots = 32" in text
    # B - A at every robot count, per metric, paired by replication
    assert len(rep["paired"]) == len(ROBOTS) * 2
    thr = {d["x"]: d for d in rep["paired"] if d["metric"] == "throughput_per_hour"}
    assert sorted(thr) == ROBOTS
    assert thr[8]["mean"] == 0 and not thr[8]["significant"]
    assert thr[32]["mean"] == pytest.approx(160.0) and thr[32]["significant"] and thr[32]["baseline"] == "warehouse.brain=A"
    assert thr[64]["low"] == thr[64]["high"] == pytest.approx(160.0)  # the noise is shared: the paired interval is 0 wide
    store, rid = _stored_sweep(tmp_path, cfg, results)
    md = write_report(store, rid, tmp_path / "rep").read_text()
    sec = md.split("## Paired difference per point")[1].split("\n## ")[0]
    assert len([line for line in sec.splitlines() if line.startswith("| ") and "---" not in line]) == 1 + len(ROBOTS) * 2
    assert "Differences against the first point" not in md


def test_one_path_sweeps_keep_their_single_knee_and_differences_against_the_first_point():
    points = [{"warehouse.robots": n} for n in ROBOTS]
    rows = _results(points, lambda i, p: [{"throughput_per_hour": 10.0 * min(p["warehouse.robots"], 16) + rep}
                                            for rep in range(3)])
    rep = summarise(_cfg(points, ["warehouse.robots"], ["throughput_per_hour"]), "sw", rows)
    assert rep["knee"]["x"] == 16.0 and len(rep["curves"]) == 1 and rep["curves"][0]["label"] == ""
    assert rep["paired"] == []
    assert "saturation: throughput_per_hour stops growing at warehouse.robots = 16" in rep["findings"][0]


def test_a_real_sweep_of_two_brains_has_a_curve_knee_and_paired_rows_per_brain(tmp_path, monkeypatch):
    f, store, rid, results = _real_sweep(tmp_path, "brains", "warehouse-tiny.toml", 120.0,
                                         '["throughput_per_hour", "deadlocks", "deliveries"]',
                                         '"warehouse.robots" = [1, 2]\n"warehouse.brain" = ["random", "greedy"]\n')
    labels = []
    original = matplotlib.figure.Figure.savefig

    def record(fig, *a, **kw):
        labels.extend((ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes)
        return original(fig, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    md = write_report(store, rid, tmp_path / "rep").read_text()
    rep = summarise(load_sweep(f), rid, results)
    assert [c["label"] for c in rep["curves"]] == ["warehouse.brain=random", "warehouse.brain=greedy"]
    assert all("knee" in c for c in rep["curves"])  # 2 robot counts: too few for a knee, but the key is there
    assert len(rep["paired"]) == 2 * 3  # greedy - random at 1 and 2 robots, for 3 metrics
    by = {(d["x"], d["metric"]): d for d in rep["paired"]}
    runs = {(json.loads(r["params"])["warehouse.robots"], json.loads(r["params"])["warehouse.brain"], r["rep"]):
            json.loads(r["metrics"]) for r in results}
    want = np.mean([runs[(2, "greedy", k)]["deliveries"] - runs[(2, "random", k)]["deliveries"] for k in (0, 1)])
    assert by[(2, "deliveries")]["mean"] == pytest.approx(want)
    sec = md.split("## Paired difference per point")[1].split("\n## ")[0]
    assert len([line for line in sec.splitlines() if line.startswith("| ") and "---" not in line]) == 1 + 6
    # units on every axis and table
    assert ("warehouse.robots (robots)", "throughput_per_hour (deliveries per hour)") in labels
    assert ("warehouse.robots (robots)", "deadlocks (per run)") in labels
    assert "| warehouse.robots (robots) | warehouse.brain | throughput_per_hour (deliveries per hour) mean |" in md
    # what the answer assumes
    assert "**brain**: swept: random, greedy; **tempo**: tick" in md
    assert "no `[links]`: every link has the defaults (no delay, no loss)" in md and "**faults**: none." in md


def test_a_latin_hypercube_of_two_paths_is_one_cloud_against_the_first_numeric_path(tmp_path):
    points = [{"links.wireless.delay.mean": d, "warehouse.robots": n}
              for d, n in ((0.01, 4), (0.05, 2), (0.03, 8), (0.02, 6), (0.04, 3))]
    cfg = _cfg(points, ["links.wireless.delay.mean", "warehouse.robots"], ["throughput_per_hour"], 2, design="lhs")
    results = _results(points, lambda i, p: [{"throughput_per_hour": 10.0 * p["warehouse.robots"] + r}
                                                  for r in range(2)])
    rep = summarise(cfg, "sw", results)
    assert rep["curves"] == [] and rep["paired"] == [] and "knee" not in rep  # no lines to draw through a hypercube
    store, rid = _stored_sweep(tmp_path, cfg, results, "warehouse-tiny-event.toml")
    md = write_report(store, rid, tmp_path / "rep").read_text()
    assert "## Differences against the first point" in md and "Paired difference per point" not in md
    table = md.split("### throughput_per_hour")[1].split("\n## ")[0]
    delays = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| 0.")]
    assert delays == ["0.01", "0.02", "0.03", "0.04", "0.05"]  # sorted along the x axis
    assert "links.wireless.delay.mean (s)" in table
    assert "`links.wireless`: lognormal delay, mean swept: 0.01, 0.05, 0.03, 0.02, 0.04 s" in md


# ------------------------------------------------------------------------------ the header: brain, network, faults
def test_the_header_names_brain_tempo_network_and_faults_of_the_base(tmp_path):
    points = [{"faults[0].duration": d} for d in (30.0, 60.0, 120.0)]
    cfg = _cfg(points, ["faults[0].duration"], ["throughput_per_hour"], 2)
    results = _results(points, lambda i, p: [{"throughput_per_hour": 100.0 - i, **_orders(10, 10)}] * 2)
    store, rid = _stored_sweep(tmp_path, cfg, results, "warehouse-small-event.toml")
    md = write_report(store, rid, tmp_path / "rep").read_text()
    head = md.split("## Findings")[0] if "## Findings" in md else md.split("## Metrics")[0]
    assert "**brain**: greedy; **tempo**: event; robots: 4" in head
    assert "`links.default`: lognormal delay, mean 2 ms, jitter 0.5 ms, no loss" in head
    assert "`links.wireless`: lognormal delay, mean 20 ms, jitter 15 ms, bursty loss (gilbert_elliott: p = 0.01, r = 0.3)" in head
    assert "**faults**: isolate zone-1 at 1200 s for swept: 30.0, 60.0, 120.0 s (not within the runs, which end at 900 s: " in head
    assert "| faults[0].duration (s) | throughput_per_hour (deliveries per hour) mean |" in md
    assert "clipped at 0" in head and "for throughput_per_hour" in head


def test_a_fault_after_the_runs_end_is_said_never_to_fire(tmp_path):
    """robots-small runs the small event floor for 900 s; its base cuts zone 1 off at 1200 s: the
    header must not let a reader think the answer includes a partition."""
    points = [{"warehouse.robots": n} for n in (2, 4)]
    cfg = {**_cfg(points, ["warehouse.robots"], ["throughput_per_hour"], 2), "until": 900.0}
    results = _results(points, lambda i, p: [{"throughput_per_hour": 100.0 + i, **_orders(10, 10)}] * 2)
    store, rid = _stored_sweep(tmp_path, cfg, results, "warehouse-small-event.toml")
    head = write_report(store, rid, tmp_path / "rep").read_text().split("## Metrics")[0]
    assert "isolate zone-1 at 1200 s for 60 s (not within the runs, which end at 900 s: it never fires)." in head
    cfg["until"] = 1500.0  # runs past the cut: it is part of the answer, said plainly
    store, rid = _stored_sweep(tmp_path / "b", cfg, results, "warehouse-small-event.toml")
    head = write_report(store, rid, tmp_path / "rep-b").read_text().split("## Metrics")[0]
    assert "**faults**: isolate zone-1 at 1200 s for 60 s." in head


# ------------------------------------------------------------------------------ bad input: one line
def test_bad_stored_input_is_one_line_never_a_traceback(tmp_path):
    points = [{"warehouse.robots": n} for n in (1, 2)]
    cfg = _cfg(points, ["warehouse.robots"], ["throughput_per_hour"], 1)
    results = _results(points, lambda i, p: [{"throughput_per_hour": 1.0}])
    results[1]["metrics"] = "{not json"
    store, rid = _stored_sweep(tmp_path, cfg, results)
    line = one_line_error(*call("report", rid, "--store", tmp_path / "s.duckdb", "--out", tmp_path / "rep"))
    assert "unreadable" in line and rid in line
    # an unreadable base scenario is stated in the header, not a failure
    (tmp_path / "b").mkdir()
    store2, rid2 = _stored_sweep(tmp_path / "b", cfg, results[:1], scenario_text="this is [not toml")
    md = write_report(store2, rid2, tmp_path / "rep2").read_text()
    assert "not readable TOML" in md and "brain, tempo and network unknown" in md
