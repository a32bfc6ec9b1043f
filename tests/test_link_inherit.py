"""Link overrides inherit from their base field by field; the `cut` fault cuts one link (issue 25).

Every scenario here is a TOML file read by `desim.app.scenario.load`, and every link is checked as the
run built it (`runner.build(...).network.links[(u, v)].spec`), so the tests see what a run sees.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tomli_w

from desim.app import runner
from desim.app.scenario import load
from desim.network.config import LinkCfg, LinkOverride
from desim.scenario import ScenarioError, to_data, validate

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial" / "clientserver.toml"

# a default with every field away from its built-in value, so an inherited field is told from a default one
DEFAULT = """
[links.default]
delay = { dist = "lognormal", mean = 0.002, jitter = 0.0005, correlation = 0.2 }
loss = { model = "bernoulli", p = 0.01 }
bandwidth = 1e9
duplicate = 0.001
corrupt = 0.002
queue_limit = 64
"""
# what an override may give instead, field by field (each differs from DEFAULT's)
OTHER = {
    "delay": 'delay = { dist = "pareto", mean = 0.01, alpha = 2.5 }',
    "loss": 'loss = { model = "gilbert_elliott", p = 0.05, r = 0.4 }',
    "bandwidth": "bandwidth = 1e6",
    "duplicate": "duplicate = 0.1",
    "corrupt": "corrupt = 0.2",
    "queue_limit": "queue_limit = 5",
}


def scenario(tmp_path: Path, body: str, topology: str = 'kind = "ring"\nnodes = 4', until: float = 10.0):
    path = tmp_path / "s.toml"
    path.write_text(f'name = "t"\nuntil = {until}\n\n[topology]\n{topology}\n{body}')
    return load(path), str(path)


def links(tmp_path: Path, body: str, **kw):
    sc, file = scenario(tmp_path, body, **kw)
    return runner.build(sc, 1, file=file).network.links


def spec_of(tmp_path: Path, body: str, **kw):
    """The spec of the default link (n2-n3) and of the overridden one (n0-n1), as built."""
    ls = links(tmp_path, body, **kw)
    assert ls["n0", "n1"].spec == ls["n1", "n0"].spec  # an override is both directions
    return ls["n2", "n3"].spec, ls["n0", "n1"].spec


def override(*lines: str, between=("n0", "n1")) -> str:
    return "\n[[links.override]]\nbetween = [" + ", ".join(f'"{n}"' for n in between) + "]\n" + "\n".join(lines) + "\n"


# -- inheritance --------------------------------------------------------------
def test_a_gigabit_default_stays_a_gigabit_under_an_override_that_changes_only_the_delay(tmp_path):
    body = """
[links.default]
delay = { dist = "lognormal", mean = 0.002, jitter = 0.0005 }
bandwidth = 1e9
""" + override('delay = { dist = "lognormal", mean = 0.020, jitter = 0.005 }')
    default, over = spec_of(tmp_path, body)
    assert default.bandwidth == over.bandwidth == 1e9
    assert (over.delay.dist, over.delay.mean, over.delay.jitter) == ("lognormal", 0.020, 0.005)


def test_the_tutorials_slower_server_link_keeps_its_gigabit(tmp_path):
    """The issue's case: docs/tutorial/clientserver.toml's override gives only a delay. Its topology is
    a plain star written as an edge list, the same names the tutorial's plugin gives its nodes."""
    head, _, rest = TUTORIAL.read_text().partition("[clientserver]")  # the network sections without the model
    text = head + rest[rest.index("[links.default]"):]
    (tmp_path / "g.txt").write_text("switch server-0\nswitch server-1\nswitch client-0\n")
    path = tmp_path / "cs.toml"
    path.write_text(text.replace("[links.default]", '[topology]\nkind = "edgelist"\npath = "g.txt"\n\n[links.default]'))
    net = runner.build(load(path), 1, file=str(path)).network
    assert net.links["switch", "server-1"].spec.bandwidth == 1e9
    assert net.links["switch", "server-1"].spec.delay.mean == 0.020
    assert net.links["switch", "server-0"].spec.delay.mean == 0.002


@pytest.mark.parametrize("given", sorted(OTHER))
def test_every_field_an_override_leaves_out_is_the_defaults(tmp_path, given):
    default, over = spec_of(tmp_path, DEFAULT + override(OTHER[given]))
    for f in dataclasses.fields(default):
        if f.name != given:
            assert getattr(over, f.name) == getattr(default, f.name), f.name
    assert getattr(over, given) != getattr(default, given)


def test_explicit_fields_win_even_at_their_built_in_values(tmp_path):
    """An override that writes a field's built-in value (bandwidth 0 = unlimited, no loss) means it."""
    body = DEFAULT + override("bandwidth = 0", "queue_limit = 0", 'loss = { model = "none" }', "duplicate = 0.0",
                              "corrupt = 0.0", 'delay = { dist = "constant", mean = 0.0 }')
    default, over = spec_of(tmp_path, body)
    assert (over.bandwidth, over.queue_limit, over.loss.model, over.duplicate, over.corrupt) == (0.0, 0, "none", 0.0, 0.0)
    assert (over.delay.dist, over.delay.mean) == ("constant", 0.0)
    assert default.bandwidth == 1e9 and default.queue_limit == 64  # the other links keep the default


def test_a_delay_table_replaces_the_delay_whole(tmp_path):
    """A delay (or loss) is one distribution: the fields its table leaves out are the built-in ones,
    not the default's (docs/scenarios.md says so)."""
    default, over = spec_of(tmp_path, DEFAULT + override("delay = { mean = 0.02 }", 'loss = { model = "gilbert_elliott" }'))
    assert (over.delay.dist, over.delay.mean, over.delay.jitter, over.delay.correlation) == ("constant", 0.02, 0.0, 0.0)
    assert (over.loss.model, over.loss.p, over.loss.r) == ("gilbert_elliott", 0.0, 1.0)
    assert over.bandwidth == default.bandwidth and over.queue_limit == default.queue_limit


def test_an_override_of_a_wireless_link_inherits_from_links_wireless(tmp_path):
    wireless = '\n[links.wireless]\ndelay = { dist = "constant", mean = 0.015 }\nbandwidth = 54e6\n'
    topo = 'kind = "warehouse"\nzones = 2\nrobots_per_zone = 1'
    both = override("delay = { mean = 0.05 }", between=("zone-0", "robot-0-0")) + \
        override("delay = { mean = 0.05 }", between=("core", "zone-0"))
    ls = links(tmp_path, DEFAULT + wireless + both, topology=topo)
    robot, wired = ls["zone-0", "robot-0-0"].spec, ls["core", "zone-0"].spec
    assert robot.bandwidth == 54e6 and robot.queue_limit == 0 and robot.loss.model == "none"  # [links.wireless]'s
    assert wired.bandwidth == 1e9 and wired.queue_limit == 64 and wired.loss.model == "bernoulli"  # [links.default]'s
    assert robot.delay.mean == wired.delay.mean == 0.05
    assert ls["zone-1", "robot-1-0"].spec.delay.mean == 0.015  # the other wireless link is [links.wireless]
    # without [links.wireless] every wireless link is a default link, and so is its override's base
    ls = links(tmp_path, DEFAULT + both, topology=topo)
    assert ls["zone-0", "robot-0-0"].spec.bandwidth == 1e9 and ls["zone-0", "robot-0-0"].spec.delay.mean == 0.05


def test_an_override_survives_the_round_trip_through_tomli_w(tmp_path):
    """Scenarios are written back with their defaults left out (the dashboard's what-if, recordings):
    an explicit `bandwidth = 0` must stay explicit, not turn into "inherit"."""
    sc, file = scenario(tmp_path, DEFAULT + override("bandwidth = 0", "delay = { mean = 0.02 }"))
    again = validate(tomllib_roundtrip(sc), file)
    assert again.links.override == sc.links.override
    net = runner.build(again, 1, file=file).network
    assert net.links["n0", "n1"].spec.bandwidth == 0.0 and net.links["n0", "n1"].spec.queue_limit == 64


def tomllib_roundtrip(sc) -> dict:
    import tomllib
    return tomllib.loads(tomli_w.dumps(to_data(sc)))


def test_link_override_has_every_link_field_with_the_same_bounds():
    """LinkOverride mirrors LinkCfg (optional fields: None = inherit), so a new link field cannot be
    forgotten by overrides."""
    assert set(LinkOverride.model_fields) == set(LinkCfg.model_fields) | {"between"}
    for name, f in LinkCfg.model_fields.items():
        o = LinkOverride.model_fields[name]
        assert o.default is None and o.metadata == f.metadata, name


def test_two_overrides_of_one_link_are_one_line(tmp_path):
    with pytest.raises(ScenarioError) as e:
        scenario(tmp_path, DEFAULT + override("bandwidth = 1e6") + override("queue_limit = 3", between=("n1", "n0")))
    assert str(e.value) == (f"{tmp_path / 's.toml'}: links.override[1].between: the link 'n1'-'n0' is overridden already by "
                            "links.override[0]: give its fields there")


# -- the cut fault ------------------------------------------------------------
RING = """
[links.default]
delay = { dist = "constant", mean = 0.05 }

[[traffic]]
from = "n0"
to = "n1"
rate = 50.0

[[traffic]]
from = "n1"
to = "n0"
rate = 50.0
"""


def cut(between=("n0", "n1"), at=2.0, duration: float | None = 3.0, extra: str = "") -> str:
    d = f"\nduration = {duration}" if duration is not None else ""
    return f'\n[[faults]]\nat = {at}\nkind = "cut"\nbetween = ["{between[0]}", "{between[1]}"]{d}\n{extra}'


def test_cut_cuts_exactly_one_link_both_ways_routes_around_and_heals(tmp_path):
    sc, file = scenario(tmp_path, RING + cut())
    world = runner.build(sc, 1, file=file, keep_trace=True)
    net, sim = world.network, world.sim
    direct = {(a, b): net.path(a, b) for a in net.graph for b in net.graph if a != b}
    assert direct["n0", "n1"] == ["n0", "n1"] and direct["n1", "n0"] == ["n1", "n0"]
    sim.run(3.0)
    assert net.cut == {frozenset(("n0", "n1"))}
    assert net.path("n0", "n1") == ["n0", "n3", "n2", "n1"] and net.path("n1", "n0") == ["n1", "n2", "n3", "n0"]
    for (a, b), p in direct.items():  # every route that did not cross n0-n1 is as it was
        if frozenset(("n0", "n1")) not in {frozenset(e) for e in zip(p, p[1:])}:
            assert net.path(a, b) == p, (a, b)
    sim.run(10.0)
    assert net.cut == set() and net.path("n0", "n1") == ["n0", "n1"]
    assert net.fault_log == [(2.0, "start", "cut", "n0-n1"), (5.0, "end", "cut", "n0-n1")]
    # both directions kept being delivered over the other path during the cut
    assert sim.recorder.trace_hash  # (reading the hash flushes the last records into the trace)
    trace = sim.recorder.trace
    during = [(src, dst) for t, kind, src, dst, *_ in (r for r in trace if r[1] == "deliver") if 2.5 < t < 5.0]
    assert during.count(("n0", "n1")) > 50 and during.count(("n1", "n0")) > 50
    assert net.links["n0", "n3"].sent > 0 and net.links["n3", "n0"].sent > 0
    # what was on the wire of n0-n1 when it was cut was dropped as a partition, and only that
    c = net.conservation()
    assert c["ok"] and 0 < c["dropped"]["partition"] < 20 and set(c["dropped"]) == {"partition"}
    drops = [t for t, kind, *_ in trace if kind == "drop"]
    assert all(2.0 <= t <= 2.05 + 1e-9 for t in drops)


def test_cut_without_a_duration_lasts_until_heal(tmp_path):
    sc, file = scenario(tmp_path, RING + cut(duration=None) + '\n[[faults]]\nat = 6.0\nkind = "heal"\n')
    world = runner.build(sc, 1, file=file)
    world.sim.run(5.9)
    assert world.network.cut == {frozenset(("n0", "n1"))}
    world.sim.run(10.0)
    assert world.network.cut == set()
    assert world.network.fault_log == [(2.0, "start", "cut", "n0-n1"), (6.0, "end", "cut", "n0-n1"), (6.0, "heal", "heal", "")]


def test_cut_on_a_line_leaves_no_path(tmp_path):
    sc, file = scenario(tmp_path, RING + cut(), topology='kind = "line"\nnodes = 3')
    res = runner.execute(runner.build(sc, 1, file=file), 10.0)
    assert res.summary["messages"]["dropped"]["partition"] > 200  # 5 s of 2 x 50 msg/s with no route


def test_cut_on_a_grid_names_its_nodes_n_r_c(tmp_path):
    sc, file = scenario(tmp_path, cut(between=("n0_0", "n0_1")), topology='kind = "grid"\nrows = 2\ncols = 2')
    world = runner.build(sc, 1, file=file)
    world.sim.run(3.0)
    assert world.network.path("n0_0", "n0_1") == ["n0_0", "n1_0", "n1_1", "n0_1"]


@pytest.mark.parametrize("fault, problem", [
    (cut(between=("n0", "n9")), "faults[0].between: unknown node 'n9'"),
    (cut(between=("n0", "n2")), "faults[0].between: no link between 'n0' and 'n2' (they are not adjacent)"),
    (cut(between=("n1", "n1")), "faults[0].between: a link joins two different nodes, got 'n1' twice"),
    ('\n[[faults]]\nat = 1.0\nkind = "cut"\n', 'faults[0].between: a cut names its link: between = ["a", "b"], two adjacent nodes'),
    ('\n[[faults]]\nat = 1.0\nkind = "cut"\nbetween = ["n0"]\n', "faults[0].between[1]: required field is missing"),
    ('\n[[faults]]\nat = 1.0\nkind = "cut"\nbetween = "n0"\n', "faults[0].between: Input should be a valid tuple"),
    ('\n[[faults]]\nat = 1.0\nkind = "isolate"\nnodes = ["n0"]\nbetween = ["n0", "n1"]\n',
     "faults[0].between: only a cut takes between (this fault's kind is isolate; flap, latency_spike and slow_link take links)"),
])
def test_a_bad_between_is_one_line(tmp_path, fault, problem):
    path = tmp_path / "s.toml"
    path.write_text(f'name = "t"\n[topology]\nkind = "ring"\nnodes = 4\n{fault}')
    with pytest.raises(ScenarioError) as e:
        load(path)  # load checks the wiring too (desim validate)
    assert str(e.value) == f"{path}: {problem}" and "\n" not in str(e.value)
