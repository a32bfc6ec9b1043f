"""The kernel: named RNG streams, messages, agents, determinism."""
import dataclasses

import numpy as np
import pytest

from desim import Agent, Message, RngStreams, Simulation
from desim.network import DelayDist, Fault, LinkSpec, LossModel, Network, schedule
from desim.network import topology as T


def test_streams_are_stable_by_name():
    a = RngStreams(7)
    first = a.stream("link:x->y").random(5)
    b = RngStreams(7)
    b.stream("something-else").random(100)  # a new component drawing first
    b.stream("another")
    assert np.array_equal(b.stream("link:x->y").random(5), first)
    assert a.stream("link:x->y") is a.stream("link:x->y")


def test_streams_differ_by_name_and_seed():
    s = RngStreams(1)
    assert not np.array_equal(s.stream("a").random(4), s.stream("b").random(4))
    assert not np.array_equal(RngStreams(1).stream("a").random(4), RngStreams(2).stream("a").random(4))


def test_message_is_immutable():
    m = Message("a", "b", "ping", {"x": 1}, size=10, sent_at=1.5, seq=3, policy_version=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.dst = "c"
    assert (m.src, m.dst, m.kind, m.size, m.sent_at, m.seq, m.policy_version) == ("a", "b", "ping", 10, 1.5, 3, 2)


class Pinger(Agent):
    def __init__(self, sim, name, peer):
        self.peer = peer
        self.got = []
        super().__init__(sim, name)

    def behaviour(self):
        rng = self.sim.rng.stream(f"pinger:{self.name}")
        while True:
            yield self.sim.env.timeout(rng.exponential(0.05))
            self.send(self.peer, "ping", size=int(rng.integers(50, 1500)))
            while len(self.inbox.items):
                self.got.append((yield self.inbox.get()))


def test_agents_are_mesa_agents_and_exchange_messages():
    sim = Simulation(3)
    Network(sim, T.line(2), LinkSpec(delay=DelayDist("constant", 0.01)))
    a, b = Pinger(sim, "n0", "n1"), Pinger(sim, "n1", "n0")
    sim.run(5)
    assert len(sim.model.agents) == 2 and set(sim.agents) == {"n0", "n1"}
    assert a.got and b.got
    assert all(m.dst == "n0" and m.src == "n1" for m in a.got)
    # per-destination sequence numbers count up from zero
    assert [m.seq for m in a.got] == list(range(len(a.got)))
    assert all(m.sent_at + 0.01 <= sim.now for m in a.got)


def _busy_run(seed: int) -> str:
    sim = Simulation(seed)
    g = T.warehouse(2, 3)
    spec = LinkSpec(delay=DelayDist("lognormal", 0.01, 0.008, correlation=0.2), loss=LossModel("gilbert_elliott", 0.05, 0.3),
                    bandwidth=1e6, duplicate=0.01, corrupt=0.01)
    net = Network(sim, g, spec, jitter_buffer=True)
    names = [n for n, d in g.nodes(data=True) if d["role"] != "switch"]
    for i, n in enumerate(names):
        Pinger(sim, n, names[(i + 1) % len(names)])
    schedule(net, [Fault(2.0, "isolate", 1.0, nodes=("zone-0",)), Fault(4.0, "latency_spike", 1.0, extra_delay=0.1)])
    sim.run(8)
    assert sim.recorder.events > 500
    return sim.trace_hash


def test_same_seed_same_trace_hash_different_seed_different_hash():
    h1, h2, h3 = _busy_run(11), _busy_run(11), _busy_run(12)
    assert h1 == h2
    assert h1 != h3


def test_trace_hash_independent_of_keep_trace():
    def run(keep):
        sim = Simulation(5, keep_trace=keep)
        Network(sim, T.line(2), LinkSpec(delay=DelayDist("uniform", 0.02, 0.01)))
        Pinger(sim, "n0", "n1"), Pinger(sim, "n1", "n0")
        sim.run(3)
        return sim
    kept, hashed_only = run(True), run(False)
    assert kept.trace_hash == hashed_only.trace_hash
    assert kept.recorder.records() and not hashed_only.recorder.records()
