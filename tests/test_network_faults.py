"""Topologies, routing, faults, and message conservation under random schedules."""
import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desim import Agent, Simulation
from desim.network import DelayDist, Fault, LinkSpec, LossModel, Network, schedule
from desim.network import topology as T


class Counter_(Agent):
    def __init__(self, sim, name, peers=(), rate=20.0, reliable=False):
        self.peers, self.rate, self.reliable = list(peers), rate, reliable
        self.received = 0
        super().__init__(sim, name)

    def behaviour(self):
        if not self.peers:
            return
        rng = self.sim.rng.stream(f"t:{self.name}")
        while True:
            yield self.sim.env.timeout(rng.exponential(1 / self.rate))
            self.send(self.peers[int(rng.integers(len(self.peers)))], "x", size=int(rng.integers(40, 3000)),
                      reliable=self.reliable and bool(rng.random() < 0.5))

    def deliver(self, msg):
        self.received += 1


@pytest.mark.parametrize("g", [T.star(5), T.line(5), T.ring(6), T.grid(3, 3), T.mesh(4), T.warehouse(3, 2)],
                         ids=["star", "line", "ring", "grid", "mesh", "warehouse"])
def test_builders_give_connected_graphs_with_roles(g):
    T.check(g)
    assert all("role" in d for _, d in g.nodes(data=True))


def test_user_graphs_from_edgelist_and_graphml(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("# my plant\na b\nb c\nc a  # a triangle\nc d\n")
    g = T.from_edgelist(p)
    assert set(g.nodes) == {"a", "b", "c", "d"} and g.number_of_edges() == 4
    q = tmp_path / "g.graphml"
    nx.write_graphml(nx.path_graph(4), q)
    h = T.from_graphml(q)
    assert set(h.nodes) == {"0", "1", "2", "3"}
    with pytest.raises(ValueError, match="disconnected"):
        T.check(nx.Graph([("a", "b"), ("c", "d")]))


def test_routing_prefers_lower_expected_latency_and_reroutes_around_cuts():
    g = nx.Graph()
    g.add_edge("a", "b", link=LinkSpec(delay=DelayDist("constant", 0.1)))
    g.add_edge("b", "d", link=LinkSpec(delay=DelayDist("constant", 0.1)))
    g.add_edge("a", "c", link=LinkSpec(delay=DelayDist("constant", 0.01)))
    g.add_edge("c", "d", link=LinkSpec(delay=DelayDist("constant", 0.01)))
    for n in g:
        g.nodes[n]["role"] = "agent"
    sim = Simulation(0)
    net = Network(sim, g)
    assert net.path("a", "d") == ["a", "c", "d"]
    net.set_fault(0, Fault(0, "isolate", nodes=("c",)), {frozenset(("a", "c")), frozenset(("c", "d"))})
    assert net.path("a", "d") == ["a", "b", "d"]
    net.set_fault(1, Fault(0, "isolate", nodes=("b",)), {frozenset(("a", "b")), frozenset(("b", "d"))})
    assert net.path("a", "d") is None
    net.heal_all()
    assert net.path("a", "d") == ["a", "c", "d"]


def _warehouse_run(faults, reliable=False, until=30.0, seed=3):
    sim = Simulation(seed)
    g = T.warehouse(2, 2)
    net = Network(sim, g, LinkSpec(delay=DelayDist("constant", 0.005)), retry_interval=0.5, retry_budget=100)
    schedule(net, faults)
    robots = [n for n, d in g.nodes(data=True) if d["role"] == "robot"]
    agents = {r: Counter_(sim, r, ["inventory"], reliable=reliable) for r in robots}
    agents["inventory"] = Counter_(sim, "inventory")
    for n in ("zone-0", "zone-1", "orders", "procurement"):
        Counter_(sim, n)
    sim.run(until)
    return net, agents


def test_partition_drops_with_reason_partition_then_heals():
    net, _ = _warehouse_run([Fault(10.0, "isolate", duration=5.0, nodes=("zone-0",))])
    c = net.conservation()
    assert c["ok"] and c["dropped"]["partition"] > 0
    assert [(t, ev) for t, ev, *_ in net.fault_log] == [(10.0, "start"), (15.0, "end")]
    # zone-0's two robots send 20 msg/s for 5 s: about 200 cut off
    assert 150 < c["dropped"]["partition"] < 260


def test_reliable_messages_are_held_and_retried_across_a_partition():
    net, _ = _warehouse_run([Fault(10.0, "split", duration=5.0, groups=(("zone-0", "robot-0-0", "robot-0-1"), ("core",)))],
                            reliable=True)
    c = net.conservation()
    assert c["ok"] and net.retries > 0
    # half the messages were reliable: those survive the 5 s split within the retry budget
    assert 0 < c["dropped"].get("partition", 0) < 200


def test_retry_budget_is_bounded():
    sim = Simulation(0)
    net = Network(sim, T.line(3), LinkSpec(delay=DelayDist("constant", 0.01)), retry_interval=0.1, retry_budget=3)
    a, b, c = (Counter_(sim, n) for n in ("n0", "n1", "n2"))
    schedule(net, [Fault(0.0, "isolate", nodes=("n1",))])
    sim.run(0.01)
    a.send("n2", "x", reliable=True)
    sim.run(1.0)
    assert net.retries == 3 and net.dropped["partition"] == 1 and net.conservation()["ok"]


def test_bridge_keeps_the_bridge_node_connected_to_both_sides():
    sim = Simulation(0)
    net = Network(sim, T.star(4))
    f = Fault(0, "bridge", groups=(("n0", "n1"), ("n2", "n3")), bridge="hub")
    net.set_fault(0, f, f.cuts(net.graph))
    assert net.path("n0", "n3") == ["n0", "hub", "n3"]  # hub belongs to both sides
    g = nx.Graph([("a", "x"), ("x", "b"), ("a", "b")])
    nx.set_node_attributes(g, "agent", "role")
    sim2 = Simulation(0)
    net2 = Network(sim2, g)
    f2 = Fault(0, "bridge", groups=(("a",), ("b",)), bridge="x")
    net2.set_fault(0, f2, f2.cuts(g))
    assert net2.path("a", "b") == ["a", "x", "b"]


def test_latency_spike_and_slow_link_change_delays_then_restore():
    sim = Simulation(0)
    net = Network(sim, T.line(2), LinkSpec(delay=DelayDist("constant", 0.01), bandwidth=8e6))
    link = net.links["n0", "n1"]
    schedule(net, [Fault(1.0, "latency_spike", 1.0, extra_delay=0.2), Fault(3.0, "slow_link", 1.0, bandwidth_scale=0.1)])
    sim.run(1.5)
    assert link.transmit(sim.now, 1000) == pytest.approx(0.001 + 0.21)
    sim.run(3.5)
    link.busy_until = 0
    assert link.transmit(sim.now, 1000) == pytest.approx(0.01 + 0.01)
    sim.run(5)
    link.busy_until = 0
    assert link.transmit(sim.now, 1000) == pytest.approx(0.011)


def test_flap_toggles_a_link():
    sim = Simulation(0)
    net = Network(sim, T.ring(4))
    schedule(net, [Fault(1.0, "flap", 2.0, links=(("n0", "n1"),), period=0.5)])
    states = []
    for t in (0.5, 1.25, 1.75, 2.25, 3.5):
        sim.run(t)
        states.append(net.path("n0", "n1"))
    assert states[0] == ["n0", "n1"] and states[1] == ["n0", "n3", "n2", "n1"]
    assert states[2] == ["n0", "n1"] and states[3] == ["n0", "n3", "n2", "n1"] and states[4] == ["n0", "n1"]


@st.composite
def random_setup(draw):
    n = draw(st.integers(2, 9))
    edges = [(f"n{i}", f"n{draw(st.integers(0, i - 1))}") for i in range(1, n)]  # a random tree: connected
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=6))
    edges += [(f"n{a}", f"n{b}") for a, b in extra if a != b]
    spec = LinkSpec(
        delay=DelayDist(draw(st.sampled_from(["constant", "uniform", "normal", "lognormal", "pareto"])),
                        draw(st.floats(0.001, 0.05)), draw(st.floats(0, 0.001)), draw(st.sampled_from([0.0, 0.5]))),
        loss=draw(st.sampled_from([LossModel(), LossModel("bernoulli", 0.1), LossModel("gilbert_elliott", 0.1, 0.3)])),
        bandwidth=draw(st.sampled_from([0.0, 1e5, 1e7])),
        duplicate=draw(st.sampled_from([0.0, 0.05])),
        corrupt=draw(st.sampled_from([0.0, 0.05])),
        queue_limit=draw(st.sampled_from([0, 5])),
    )
    nodes = [f"n{i}" for i in range(n)]
    faults = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["isolate", "split", "flap", "latency_spike", "slow_link", "heal"]))
        at, dur = draw(st.floats(0, 4)), draw(st.sampled_from([None, 0.5, 2.0]))
        if kind == "isolate":
            faults.append(Fault(at, kind, dur, nodes=(draw(st.sampled_from(nodes)),)))
        elif kind == "split":
            cut = draw(st.integers(1, n - 1)) if n > 1 else 1
            faults.append(Fault(at, kind, dur, groups=(tuple(nodes[:cut]), tuple(nodes[cut:]))))
        elif kind == "flap":
            faults.append(Fault(at, kind, dur or 1.0, links=(edges[0],), period=0.2))
        elif kind == "latency_spike":
            faults.append(Fault(at, kind, dur, extra_delay=0.05))
        elif kind == "slow_link":
            faults.append(Fault(at, kind, dur, bandwidth_scale=0.1))
        else:
            faults.append(Fault(at, "heal"))
    return edges, spec, faults, draw(st.booleans()), draw(st.integers(0, 2**16))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_setup())
def test_conservation_over_random_topologies_and_fault_schedules(setup):
    edges, spec, faults, jitter, seed = setup
    g = nx.Graph(edges)
    nx.set_node_attributes(g, "agent", "role")
    sim = Simulation(seed)
    net = Network(sim, g, spec, jitter_buffer=jitter, retry_interval=0.3, retry_budget=3)
    schedule(net, faults)
    nodes = sorted(g.nodes)
    agents = [Counter_(sim, n, [m for m in nodes if m != n], rate=30, reliable=True) for n in nodes]
    sim.run(5.0)
    c = net.conservation()
    assert c["sent"] > 0
    assert c["ok"], c
    assert sum(a.received for a in agents) == c["delivered"]  # the agents saw exactly what was counted delivered
    if spec.duplicate == 0:
        assert c["duplicated"] == 0
