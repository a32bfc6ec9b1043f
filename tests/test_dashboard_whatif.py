"""Unit tests of the dashboard's plain functions: the what-if scenario editor, its TOML
file, and the data shaping the pages rely on (fault windows, cut edges, bands)."""
from __future__ import annotations

import time
import tomllib
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import tomli_w

from desim.app.runner import prepare
from desim.dashboards import data as D
from desim.dashboards.whatif import (KNOBS, Partition, build_scenario, checkpoint_brains, default_until, defaults,
                                     describe, edit, read_base, recorded_changes, replace, unchanged, variant_text,
                                     window_warnings)
from desim.scenario import ScenarioError, parse, to_data, validate

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def base(name: str = "warehouse-small-event.toml"):
    return read_base(SCENARIOS / name)


def base_data(name: str = "warehouse-small-event.toml") -> dict:
    return tomllib.loads((SCENARIOS / name).read_text())


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_scenario_round_trips_through_tomli_w(path):
    sc = read_base(path)
    again = parse(tomli_w.dumps(to_data(sc)), str(path), path.parent)
    assert again.model_dump() == sc.model_dump()


def test_replace_copies_each_section_on_the_dotted_path():
    b = base()
    new = replace(b, "links.wireless.delay.mean", 0.25)
    assert new.links.wireless.delay.mean == 0.25 and new.links.wireless.delay.jitter == 0.015
    assert b.links.wireless.delay.mean == 0.020  # the base is frozen and untouched
    assert new.links.default is b.links.default and new.warehouse is b.warehouse  # untouched sections shared
    two = edit(b, {"warehouse.robots": 5, "warehouse.orders.rate_per_hour": 90.0})
    assert (two.warehouse.robots, two.warehouse.orders.rate_per_hour, two.warehouse.zones) == (5, 90.0, 2)
    with pytest.raises(ValueError, match="no field 'robot'"):
        replace(b, "warehouse.robot", 5)
    assert set(KNOBS) == {"robots", "order_rate", "brain", "delay_mean", "delay_jitter"}
    for path in KNOBS.values():  # every knob names a real field of the scenario
        replace(b, path, 1)


def test_defaults_read_the_knobs():
    d = defaults(base())
    assert d["robots"] == 4 and d["zones"] == 2 and d["order_rate"] == 180.0 and d["brain"] == "greedy"
    assert d["delay_mean"] == 0.020 and d["delay_jitter"] == 0.015
    assert d["loss"] == pytest.approx(0.01 / (0.01 + 0.3))  # Gilbert-Elliott stationary loss
    assert d["partition"] == Partition(1200.0, 60.0, 1) and d["faults"] == 1


def test_no_changes_is_the_base_renamed():
    b = base()
    out = build_scenario(b)
    assert out.name == "warehouse-small-event-whatif"
    assert out.description == "what-if on warehouse-small-event: no changes"
    keep = lambda sc: {k: v for k, v in to_data(sc).items() if k not in ("name", "description")}  # noqa: E731
    assert keep(out) == keep(b)
    assert b.name == "warehouse-small-event"  # the base is not modified


def test_every_knob_lands_in_a_valid_scenario():
    out = build_scenario(base(), robots=7, order_rate=400.0, delay_mean=0.05, delay_jitter=0.01, loss=0.1,
                         partition=Partition(30.0, 45.0, 0), brain="epsilon_greedy", name="custom")
    w = out.warehouse
    assert out.name == "custom" and w.robots == 7 and w.brain == "epsilon_greedy"
    assert w.orders.rate_per_hour == 400.0 and w.orders.peaks and w.orders.max_age == 900.0  # the rest survives
    wl = out.links.wireless
    assert wl.delay.mean == 0.05 and wl.delay.jitter == 0.01 and wl.delay.correlation == 0.3
    assert wl.loss.model == "gilbert_elliott" and wl.loss.r == 0.3  # burstiness kept...
    assert wl.loss.to_model().rate == pytest.approx(0.1)  # ...at the asked loss rate
    assert [(f.kind, f.nodes, f.at, f.duration) for f in out.faults] == [("isolate", ["zone-0"], 30.0, 45.0)]
    assert out.links.default.delay.mean == 0.002  # wired links untouched
    g = prepare(out).graph  # nodes, faults and the warehouse section all check out
    assert sum(d.get("role") == "robot" for _, d in g.nodes(data=True)) == 7
    assert "robots = 7" in out.description and "zone-0 cut off at 30 s for 45 s" in out.description


def test_variant_file_round_trips_and_records_the_changes(tmp_path):
    changes = {"robots": 6, "delay_mean": 0.04, "partition": Partition(60.0, 30.0, 1)}
    out = build_scenario(base(), **changes)
    text = variant_text(out, changes, SCENARIOS / "warehouse-small-event.toml")
    assert text.startswith("# written by the desim dashboard's what-if page\n"
                           "# what-if on warehouse-small-event.toml: robots = 6, delay mean = 40 ms, "
                           "zone-1 cut off at 60 s for 30 s\n")
    again = parse(text)
    assert again.model_dump() == out.model_dump()
    assert again.warehouse.robots == 6 and again.links.wireless.delay.mean == 0.04
    assert recorded_changes(text) == changes
    assert recorded_changes((SCENARIOS / "warehouse-small-event.toml").read_text()) is None
    assert recorded_changes(variant_text(build_scenario(base()), {})) == {}
    assert tomllib.loads(text)["warehouse"]["robots"] == 6  # plain TOML, comments aside


def test_loss_without_a_bursty_model_is_bernoulli_and_zero_is_none():
    d = base_data()
    d["links"]["wireless"]["loss"] = {"model": "bernoulli", "p": 0.2}
    b = validate(d)
    five = build_scenario(b, loss=0.05).links.wireless.loss
    assert (five.model, five.p) == ("bernoulli", 0.05)
    assert build_scenario(b, loss=0.0).links.wireless.loss.model == "none"
    assert build_scenario(base(), loss=0.0).links.wireless.loss.to_model().rate == 0.0


def test_delay_on_a_base_without_wireless_copies_the_default_link():
    d = base_data()
    del d["links"]["wireless"]
    b = validate(d)
    out = build_scenario(b, delay_mean=0.1)
    assert out.links.wireless.delay.mean == 0.1 and out.links.wireless.delay.jitter == 0.0005
    assert out.links.wireless.bandwidth == b.links.default.bandwidth == 1e9
    assert b.links.wireless is None


def test_order_rate_on_a_base_without_orders_creates_them():
    d = base_data()
    del d["warehouse"]["orders"]
    out = build_scenario(validate(d), order_rate=60.0)
    assert out.warehouse.orders.rate_per_hour == 60.0 and out.warehouse.orders.peaks == []


def test_describe_changes_in_words():
    assert describe({"robots": 6, "delay_mean": 0.05, "loss": 0.1, "partition": Partition(60, 30, 1)}) == \
        "robots = 6, delay mean = 50 ms, loss = 10 %, zone-1 cut off at 60 s for 30 s"
    assert describe({"partition": "none", "order_rate": 300.0, "delay_jitter": 0.002}) == \
        "no faults, orders = 300/h, delay jitter = 2 ms"


def test_partition_none_removes_faults():
    assert build_scenario(base(), partition="none").faults == []


@pytest.mark.parametrize("kw,msg", [
    ({"robots": 1}, "<what-if>: warehouse: zones \\(2\\) must not exceed robots \\(1\\)"),
    ({"robots": 10_000}, "warehouse.robots: 10000 robots do not fit"),
    ({"partition": Partition(10, 5, 2)}, "does not exist"),
    ({"partition": Partition(10, 0, 0)}, "faults\\[0\\].duration: Input should be greater than 0"),
    ({"partition": Partition(-1, 5, 0)}, "faults\\[0\\].at: Input should be greater than or equal to 0"),
    ({"brain": "telepathy"}, "brain must be one of"),
    ({"brain": "checkpoint:/no/such/file.pt"}, "warehouse.brain: no checkpoint at /no/such/file.pt"),
    ({"loss": 1.0}, "loss must be in"),
    ({"order_rate": 0}, "warehouse.orders.rate_per_hour: Input should be greater than 0"),
    ({"delay_mean": -1}, "links.wireless.delay.mean: Input should be greater than or equal to 0"),
    ({"delay_jitter": -0.1}, "links.wireless.delay.jitter: Input should be greater than or equal to 0"),
])
def test_bad_knobs_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg) as e:
        build_scenario(base(), **kw)
    assert "\n" not in str(e.value)


def test_scenario_rejections_are_scenario_errors():
    with pytest.raises(ScenarioError) as e:
        build_scenario(base(), order_rate=-5.0)
    assert e.value.field == "warehouse.orders.rate_per_hour"


def test_network_only_scenario_refuses_warehouse_knobs():
    with pytest.raises(ValueError, match="no \\[warehouse\\]"):
        build_scenario(base("network-partition.toml"), robots=3)


# --------------------------------------------------------------------------- replications, windows, brains


def test_unchanged_compares_the_built_scenario_with_the_base():
    b = base()
    assert unchanged(b, {}) and unchanged(b, {"robots": 4, "brain": "greedy"})  # the base's own values
    assert unchanged(b, {"partition": Partition(1200.0, 60.0, 1)})  # the base's own partition
    assert not unchanged(b, {"robots": 5}) and not unchanged(b, {"partition": "none"})
    assert not unchanged(b, {"delay_mean": 0.0205})
    with pytest.raises(ValueError, match="brain must be one of"):
        unchanged(b, {"brain": "telepathy"})


def test_window_warnings_for_peaks_and_faults_the_run_leaves_out():
    b = base()  # order peak 1800-2400 s (x2), zone-1 partition 1200-1260 s
    assert window_warnings(b, {}, 2400.0) == []
    assert window_warnings(b, {}, 1260.0) == [
        "The order peak at 2x the rate (1800–2400 s) starts after the 1260 simulated seconds: it will not happen. "
        "Simulate longer or move it earlier."]
    partly = window_warnings(b, {}, 1230.0)
    assert len(partly) == 2 and partly[1] == ("The run ends at 1230 s, during the partition of zone-1 (1200–1260 s): "
                                              "only part of it is simulated.")
    assert window_warnings(b, {"partition": "none"}, 1500.0) == [partly[0].replace("1230", "1500")]
    moved = window_warnings(b, {"partition": Partition(100.0, 50.0, 0)}, 120.0)
    assert moved[1] == "The run ends at 120 s, during the partition of zone-0 (100–150 s): only part of it is simulated."
    d = base_data()
    d["faults"] = [{"at": 50.0, "kind": "latency_spike", "extra_delay": 0.1}]  # no duration: to the end
    del d["warehouse"]["orders"]["peaks"]
    spike = validate(d)
    assert window_warnings(spike, {}, 60.0) == []
    assert window_warnings(spike, {}, 40.0) == ["The latency_spike fault (from 50 s) starts after the 40 simulated "
                                                "seconds: it will not happen. Simulate longer or move it earlier."]


def test_default_until_covers_every_window():
    b = base()
    assert default_until(b) == 2700.0  # the peak ends at 2400 s; 2 minutes more, rounded up to 5 minutes
    assert default_until(b, {"partition": "none"}) == 2700.0
    d = base_data()
    d["warehouse"]["orders"]["peaks"] = []
    assert default_until(validate(d)) == 1500.0  # the partition ends at 1260 s
    d["faults"] = []
    assert default_until(validate(d)) == 600.0
    d["until"] = 300.0
    assert default_until(validate(d)) == 300.0  # never past the scenario's own length


def test_checkpoint_brains_from_folders_and_training_runs(tmp_path, monkeypatch):
    store = tmp_path / "store.duckdb"
    (tmp_path / "checkpoints" / "run-a").mkdir(parents=True)
    a = tmp_path / "checkpoints" / "run-a" / "latest.pt"
    a.write_bytes(b"x")
    (tmp_path / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    monkeypatch.chdir(tmp_path / "checkpoints")  # runs/checkpoints/ relative to the working directory
    (tmp_path / "checkpoints" / "runs" / "checkpoints").mkdir(parents=True)
    b = tmp_path / "checkpoints" / "runs" / "checkpoints" / "b.pt"
    b.write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    c, c2 = elsewhere / "latest.pt", elsewhere / "ippo-v0001.pt"
    c.write_bytes(b"x")
    c2.write_bytes(b"x")
    runs = [{"kind": "train", "summary": {"checkpoint": str(c), "out_dir": str(elsewhere)}},
            {"kind": "train", "summary": {"checkpoint": str(tmp_path / "gone.pt")}},  # deleted since: not offered
            {"kind": "run", "summary": {"checkpoint": str(tmp_path / "x.pt")}}]
    got = checkpoint_brains(store, runs)
    assert sorted(got) == sorted(f"checkpoint:{p.resolve()}" for p in (a, b, c, c2))  # each once
    assert checkpoint_brains(store, None, roots=[]) == []
    spec = got[0]
    sc = build_scenario(base(), brain=spec)  # a checkpoint spec is a valid brain (the file exists)
    assert sc.warehouse.brain == spec and describe({"brain": spec}) == f"brain = {spec}"


def test_compare_paired_intervals_and_verdicts():
    mk = lambda thr, dl, p50: {"throughput_per_hour": thr, "deliveries": dl, "order_latency": {"p50": p50},  # noqa: E731
                               "deadlocks": 0, "collisions": 1}
    base_ = [mk(100.0, 10, 5.0), mk(120.0, 12, 6.0), mk(80.0, 8, None)]
    var = [mk(110.0, 11, 5.5), mk(130.0, 11, 6.5), mk(90.0, 9, 4.0)]
    c = D.compare_paired(base_, var).set_index("metric")
    thr = c.loc["throughput_per_hour"]  # +10 in every pair: tight, significant
    assert thr["diff"] == pytest.approx(10.0) and thr["low"] == pytest.approx(10.0) and thr["significant"] is True
    assert thr["baseline"] == pytest.approx(100.0) and thr["what_if"] == pytest.approx(110.0) and thr["n"] == 3
    dl = c.loc["deliveries"]  # +1, -1, +1: not significant
    assert dl["low"] < 0 < dl["high"] and dl["significant"] is False
    p50 = c.loc["latency_p50"]  # the pair with no latency is dropped
    assert p50["n"] == 2 and p50["diff"] == pytest.approx(0.5)
    assert c.loc["deadlocks", "significant"] is False and c.loc["deadlocks", "low"] == 0  # no change at all
    assert c.loc["latency_p95", "n"] == 0 and c.loc["latency_p95", "significant"] is None  # never recorded
    one = D.compare_paired(base_[:1], var[:1]).set_index("metric")
    assert one.loc["throughput_per_hour", "significant"] is None and pd.isna(one.loc["throughput_per_hour", "low"])
    assert D.verdict(None, 1) == "one replication: no interval" and D.verdict(True) == "significant"
    assert D.verdict(False) == "not significant"
    with pytest.raises(ValueError, match="as many baselines"):
        D.compare_paired(base_, var[:2])
    from desim.dashboards import charts as K

    drawn = K.diff_intervals(c.reset_index()).layer[1].data.set_index("metric")  # the intervals, in % of the baseline
    assert drawn.loc["throughput_per_hour", "effect"] == "better"  # significant, and more is better
    assert drawn.loc["deliveries", "effect"] == "not significant"
    assert drawn.loc["collisions", "effect"] == "not significant"  # no change
    assert "deadlocks" not in drawn.index  # a baseline of 0 has no percentage
    assert drawn.loc["throughput_per_hour", "change_pct"] == pytest.approx(10.0)
    worse = D.compare_paired(var, base_).reset_index(drop=True)  # the other way round: 10 fewer per hour
    assert K.diff_intervals(worse).layer[1].data.set_index("metric").loc["throughput_per_hour", "effect"] == "worse"


# --------------------------------------------------------------------------- data shaping


def events(*rows):
    return pd.DataFrame([{"t": t, "kind": k, "agent": "", "detail": d} for t, k, d in rows])


def test_fault_windows_pair_starts_with_ends_and_heals():
    ev = events((40.0, "fault_start", '{"fault": "split", "target": "a,b | c"}'),
                (50.0, "fault_start", '{"fault": "isolate", "target": "x"}'),
                (60.0, "fault_end", '{"fault": "split", "target": "a,b | c"}'),
                (70.0, "fault_start", '{"fault": "latency_spike", "target": "all"}'),
                (80.0, "fault_heal", '{"fault": "heal", "target": ""}'),
                (90.0, "fault_start", '{"fault": "isolate", "target": "y"}'),
                (95.0, "deadlock", '{"type": "stuck"}'))
    w = D.fault_windows(ev, end=100.0)
    assert w.values.tolist() == [["split", "a,b | c", 40.0, 60.0], ["isolate", "x", 50.0, 80.0],
                                 ["latency_spike", "all", 70.0, 80.0], ["isolate", "y", 90.0, 100.0]]
    assert list(D.active_faults(w, 55.0)["fault"]) == ["split", "isolate"]
    assert D.active_faults(w, 85.0).empty
    # the same from a summary's fault list
    w2 = D.fault_windows(None, [[40.0, "start", "isolate", "zone-1"], [100.0, "end", "isolate", "zone-1"]])
    assert w2.values.tolist() == [["isolate", "zone-1", 40.0, 100.0]]


def test_edge_states_per_fault_kind():
    g = nx.Graph([("core", "zone-0"), ("core", "zone-1"), ("zone-0", "robot-0-0"), ("zone-1", "robot-1-0")])
    f = lambda *rows: pd.DataFrame(rows, columns=["fault", "target"])  # noqa: E731
    cut = D.edge_states(g, f(("isolate", "zone-1")))
    assert cut == {frozenset(("core", "zone-1")): "cut", frozenset(("zone-1", "robot-1-0")): "cut"}
    split = D.edge_states(g, f(("split", "zone-1,robot-1-0 | core")))
    assert split == {frozenset(("core", "zone-1")): "cut"}  # zone-0 is in no group: keeps its link
    flap = D.edge_states(g, f(("flap", "zone-0-robot-0-0")))  # names with '-' joined by '-'
    assert flap == {frozenset(("zone-0", "robot-0-0")): "cut"}
    spike = D.edge_states(g, f(("latency_spike", "all"), ("isolate", "robot-0-0")))
    assert spike[frozenset(("zone-0", "robot-0-0"))] == "cut"  # cut wins over degraded
    assert sum(v == "degraded" for v in spike.values()) == 3


def test_curve_bands_mean_and_band_across_seeds():
    rows = []
    for run, scale in (("a", 1.0), ("b", 3.0)):
        for step in range(0, 101, 10):
            rows.append({"run_id": run, "algo": "x", "metric": "return", "step": step, "wall_s": step / 10,
                         "value": scale * step})
    rows.append({"run_id": "c", "algo": "x", "metric": "return", "step": 0, "wall_s": 0.0, "value": 0.0})
    rows.append({"run_id": "c", "algo": "x", "metric": "return", "step": 50, "wall_s": 5.0, "value": 50.0})
    b = D.curve_bands(pd.DataFrame(rows), x="step", points=11)
    at = b.set_index("x")
    assert at.loc[50.0, "n"] == 3 and at.loc[100.0, "n"] == 2  # run c stopped at 50
    assert at.loc[100.0, "mean"] == pytest.approx(200.0)
    assert at.loc[100.0, "lo"] == 100.0 and at.loc[100.0, "hi"] == 300.0
    s = D.curve_bands(pd.DataFrame(rows), x="wall_s", band="std", points=11).set_index("x")
    assert s.loc[10.0, "hi"] - s.loc[10.0, "mean"] == pytest.approx(np.std([100.0, 300.0]))
    assert D.curve_bands(pd.DataFrame()).empty


def test_conservation_rows_and_check():
    c = D.conservation({"messages": {"sent": 10, "duplicated": 1, "delivered": 7,
                                     "dropped": {"loss": 2, "partition": 1}, "in_flight": 1}})
    assert list(c["term"]) == ["sent", "duplicated", "delivered", "dropped: loss", "dropped: partition", "in flight"]
    assert D.conservation_ok(c)
    c.loc[c.term == "delivered", "count"] = 6
    assert not D.conservation_ok(c)
    assert D.conservation({}) is None


def test_store_version_moves_with_runs_and_while_running():
    done = [{"run_id": "a", "status": "complete", "started_at": 1, "finished_at": 2}]
    assert D.store_version(done, now=0) == D.store_version(done, now=100)
    live = done + [{"run_id": "b", "status": "running", "started_at": 3, "finished_at": None}]
    assert D.store_version(live, now=0) != D.store_version(done, now=0)
    assert D.store_version(live, now=0) != D.store_version(live, now=10)


def test_a_burst_of_what_ifs_queues_instead_of_running_at_once(tmp_path, monkeypatch):
    """A page left open cannot exhaust the machine: at most MAX_JOBS what-ifs simulate at once (1 by
    default), the rest wait their turn, and every one still finishes."""
    import threading

    from desim.dashboards import whatif as W

    monkeypatch.setattr(W, "_SLOTS", threading.BoundedSemaphore(1))
    base = Path(__file__).resolve().parents[1] / "scenarios" / "warehouse-tiny-event.toml"
    jobs = [W.start_job(base, tmp_path / "s.duckdb", {"robots": r}, seed=1, until=200.0) for r in (1, 3, 4)]
    most = 0
    while not all(j.done for j in jobs):
        running = sum(j.status in ("baseline", "variant") for j in jobs)
        most = max(most, running)
        assert running <= 1, [j.status for j in jobs]
        time.sleep(0.005)
    assert most == 1 and all(j.status == "done" for j in jobs), [(j.status, j.error) for j in jobs]
    assert sum(W.queued_ahead(j) for j in jobs) == 0


def test_a_what_if_longer_than_the_limit_is_refused(tmp_path):
    from desim.dashboards import whatif as W

    base = Path(__file__).resolve().parents[1] / "scenarios" / "warehouse-tiny-event.toml"
    with pytest.raises(ValueError, match="at most"):
        W.start_job(base, tmp_path / "s.duckdb", {"robots": 3}, until=W.MAX_UNTIL + 1)
