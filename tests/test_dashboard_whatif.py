"""Unit tests of the dashboard's plain functions: the what-if scenario builder, its TOML
writer, and the data shaping the pages rely on (fault windows, cut edges, bands)."""
from __future__ import annotations

import math
import tomllib
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from desim.dashboards import data as D
from desim.dashboards.whatif import Partition, build_scenario, defaults, describe, dumps_toml, loss_rate

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def base(name: str = "warehouse-small-event.toml") -> dict:
    return tomllib.loads((SCENARIOS / name).read_text())


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_toml_round_trip(path):
    data = tomllib.loads(path.read_text())
    assert tomllib.loads(dumps_toml(data)) == data


def test_toml_writer_handles_odd_values():
    data = {"name": 'a "quoted"\nname', "x": 1.5e-9, "big": 10**12, "flag": False, "empty": [], "inf": math.inf,
            "t": {"odd key": 1, "nested": {"deep": [1, 2]}}, "rows": [{"a": 1, "sub": {"b": 2}}, {"a": 2}]}
    assert tomllib.loads(dumps_toml(data)) == data


def test_defaults_read_the_knobs():
    d = defaults(base())
    assert d["robots"] == 4 and d["zones"] == 2 and d["order_rate"] == 180.0 and d["brain"] == "greedy"
    assert d["mean_latency"] == 0.020 and d["jitter"] == 0.015
    assert d["loss"] == pytest.approx(0.01 / (0.01 + 0.3))  # Gilbert-Elliott stationary loss
    assert d["partition"] == Partition(1200.0, 60.0, 1)


def test_no_changes_is_the_base_renamed():
    b = base()
    out = build_scenario(b)
    assert out["name"] == "warehouse-small-event-whatif"
    assert {k: v for k, v in out.items() if k not in ("name", "description")} == \
        {k: v for k, v in b.items() if k not in ("name", "description")}
    assert b["name"] == "warehouse-small-event"  # the base is not modified


def test_every_knob_lands_in_a_valid_scenario():
    from desim.app.runner import check_wiring
    from desim.scenario import parse
    from desim.models.warehouse.scenario import parse_section

    out = build_scenario(base(), robots=7, order_rate=400.0, mean_latency=0.05, jitter=0.01, loss=0.1,
                         partition=Partition(30.0, 45.0, 0), brain="epsilon_greedy", name="custom")
    sc = parse(dumps_toml(out))
    g = check_wiring(sc)  # nodes, faults and the warehouse section all check out
    w = parse_section(sc)
    assert sc.name == "custom" and w.robots == 7 and w.brain == "epsilon_greedy"
    assert w.orders.rate_per_hour == 400.0 and w.orders.peaks  # the peak survives
    assert sum(d.get("role") == "robot" for _, d in g.nodes(data=True)) == 7
    assert sc.links.wireless.delay.mean == 0.05 and sc.links.wireless.delay.jitter == 0.01
    assert sc.links.wireless.loss.model == "gilbert_elliott"  # burstiness kept...
    assert sc.links.wireless.loss.to_model().rate == pytest.approx(0.1)  # ...at the asked loss rate
    assert sc.links.wireless.loss.r == 0.3
    assert [(f.kind, f.nodes, f.at, f.duration) for f in sc.faults] == [("isolate", ["zone-0"], 30.0, 45.0)]
    assert sc.links.default.delay.mean == 0.002  # wired links untouched
    assert "robots=7" in out["description"] and "partition=zone-0@30s+45s" in out["description"]


def test_loss_without_a_bursty_model_is_bernoulli_and_zero_is_none():
    b = base()
    b["links"]["wireless"]["loss"] = {"model": "bernoulli", "p": 0.2}
    assert build_scenario(b, loss=0.05)["links"]["wireless"]["loss"] == {"model": "bernoulli", "p": 0.05}
    assert build_scenario(b, loss=0.0)["links"]["wireless"]["loss"] == {"model": "none"}
    assert loss_rate({"model": "none"}) == 0.0


def test_latency_on_a_base_without_wireless_copies_the_default_link():
    b = base()
    del b["links"]["wireless"]
    out = build_scenario(b, mean_latency=0.1)
    assert out["links"]["wireless"]["delay"]["mean"] == 0.1
    assert out["links"]["wireless"]["bandwidth"] == b["links"]["default"]["bandwidth"]


def test_describe_changes_in_words():
    assert describe({"robots": 6, "mean_latency": 0.05, "loss": 0.1, "partition": Partition(60, 30, 1)}) == \
        "robots = 6, mean latency = 50 ms, loss = 10 %, zone-1 cut off at 60 s for 30 s"
    assert describe({"partition": "none", "order_rate": 300.0}) == "no faults, orders = 300/h"


def test_partition_none_removes_faults():
    assert build_scenario(base(), partition="none")["faults"] == []


@pytest.mark.parametrize("kw,msg", [
    ({"robots": 1}, "at least the number of zones"),
    ({"partition": Partition(10, 5, 2)}, "does not exist"),
    ({"partition": Partition(10, 0, 0)}, "duration > 0"),
    ({"brain": "telepathy"}, "brain must be one of"),
    ({"loss": 1.0}, "loss must be in"),
    ({"order_rate": 0}, "order_rate must be > 0"),
    ({"mean_latency": -1}, "mean_latency must be >= 0"),
])
def test_bad_knobs_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        build_scenario(base(), **kw)


def test_network_only_scenario_refuses_warehouse_knobs():
    with pytest.raises(ValueError, match="no \\[warehouse\\]"):
        build_scenario(base("network-partition.toml"), robots=3)


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


def test_topology_from_links_and_scenario():
    links = pd.DataFrame({"src": ["core", "zone-0"], "dst": ["zone-0", "core"], "sent": [3, 4],
                          "mean_delay": [0.002, None], "expected_delay": [0.002, 0.004]})
    g = D.topology(links)
    assert g.edges["core", "zone-0"]["latency"] == pytest.approx(0.003) and g.edges["core", "zone-0"]["sent"] == 7
    assert g.nodes["core"]["role"] == "switch" and g.nodes["zone-0"]["role"] == "controller"
    g2 = D.topology(links, (SCENARIOS / "network-partition.toml").read_text())
    assert g2.number_of_nodes() == 1 + 3 + 12 + 3 and g2.nodes["inventory"]["role"] == "service"
    pos = D.layout(g2)
    nodes, edges = D.topology_frames(g2, pos, {frozenset(("core", "zone-0")): "cut"})
    assert len(nodes) == 19 and len(edges) == g2.number_of_edges()
    assert edges.loc[(edges.u.isin(["core", "zone-0"])) & (edges.v.isin(["core", "zone-0"])), "state"].item() == "cut"


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
