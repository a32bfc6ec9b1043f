"""Routing: lowest expected latency over uncut links, cached and recomputed on faults.

The network routes with networkx's Dijkstra; ``_reference_routes`` below is the
hand-written Dijkstra it replaced, kept here so the tie-breaking between
equal-cost routes (which the trace hashes depend on) stays pinned exactly.
"""
import heapq
import math

import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desim import Simulation
from desim.network import DelayDist, Fault, LinkSpec, Network


def _graph(edges: dict[tuple[str, str], float]) -> nx.Graph:
    g = nx.Graph()
    for (u, v), lat in edges.items():
        g.add_edge(u, v, link=LinkSpec(delay=DelayDist("constant", lat)))
    for n in g:
        g.nodes[n]["role"] = "agent"
    return g


def _cut(net: Network, fid: int, links) -> None:
    links = tuple(links)
    net.set_fault(fid, Fault(0, "flap", duration=1.0, links=links), {frozenset(e) for e in links})


def _cost(net: Network, path: list[str]) -> float:
    return sum(net.links[a, b].expected_latency for a, b in zip(path, path[1:]))


def _reference_routes(net: Network, dst: str) -> dict[str, str]:
    """The pre-networkx routing, verbatim: Dijkstra from ``dst``, neighbours in
    sorted order, heap ties by push order, a 1e-9 per-hop cost, strict improvement."""
    cut, links = net.cut, net.links
    adj = {n: sorted(net.graph.neighbors(n)) for n in net.graph.nodes}
    best = {dst: 0.0}
    nxt: dict[str, str] = {}
    heap = [(0.0, 0, dst)]
    tie = 1
    done = set()
    while heap:
        d, _t, v = heapq.heappop(heap)
        if v in done:
            continue
        done.add(v)
        for u in adj[v]:
            if u in done or (cut and frozenset((u, v)) in cut):
                continue
            nd = d + links[u, v].expected_latency + 1e-9
            if nd < best.get(u, math.inf):
                best[u] = nd
                nxt[u] = v
                heapq.heappush(heap, (nd, tie, u))
                tie += 1
    return nxt


def _diamond() -> Network:
    # a -b- d is slow, a -c- d is fast; e hangs off d
    g = _graph({("a", "b"): 0.1, ("b", "d"): 0.1, ("a", "c"): 0.01, ("c", "d"): 0.01, ("d", "e"): 0.05})
    return Network(Simulation(0), g)


def test_prefers_lower_expected_latency_over_fewer_hops():
    g = _graph({("a", "d"): 0.5, ("a", "b"): 0.1, ("b", "c"): 0.1, ("c", "d"): 0.1})
    net = Network(Simulation(0), g)
    assert net.path("a", "d") == ["a", "b", "c", "d"]
    assert net.path("d", "a") == ["d", "c", "b", "a"]


def test_equal_latency_prefers_fewer_hops():
    g = _graph({("a", "d"): 0.2, ("a", "b"): 0.1, ("b", "d"): 0.1})
    assert Network(Simulation(0), g).path("a", "d") == ["a", "d"]


def test_routes_avoid_cut_links_and_recover_after_heal():
    net = _diamond()
    assert net.path("a", "e") == ["a", "c", "d", "e"]
    _cut(net, 0, [("c", "d")])
    assert net.path("a", "e") == ["a", "b", "d", "e"]
    assert net.next_hop("c", "e") == "a"  # around through a and b
    _cut(net, 1, [("a", "b")])
    assert net.path("a", "e") is None and net.next_hop("a", "e") is None
    assert net.path("b", "e") == ["b", "d", "e"]
    net.clear_fault(0)
    assert net.path("a", "e") == ["a", "c", "d", "e"]
    _cut(net, 2, [("d", "e")])
    assert net.path("a", "e") is None
    net.heal_all()
    assert not net.cut
    assert net.path("a", "e") == ["a", "c", "d", "e"]


def test_latency_spike_reroutes_and_its_end_restores():
    net = _diamond()
    assert net.path("a", "d") == ["a", "c", "d"]
    net.set_fault(0, Fault(0, "latency_spike", links=(("a", "c"),), extra_delay=1.0), set())
    assert net.path("a", "d") == ["a", "b", "d"]
    net.clear_fault(0)
    assert net.path("a", "d") == ["a", "c", "d"]


def test_cache_is_used_until_the_topology_changes():
    net = _diamond()
    assert net.next_hop("a", "d") == "c"
    table = net._next_hop["d"]
    assert net.next_hop("b", "d") == "d" and net._next_hop["d"] is table  # not recomputed
    _cut(net, 0, [("a", "c")])
    assert "d" not in net._next_hop  # invalidated
    assert net.next_hop("a", "d") == "b" and net._next_hop["d"] is not table


def test_ties_follow_sorted_neighbour_order_whatever_the_insertion_order():
    # four equal-cost two-hop routes from s to t; the tie goes to the same
    # neighbour however the user's graph was built
    edges = {(m, x): 0.01 for m in ("p", "q", "r", "m") for x in ("s", "t")}
    picks = set()
    keys = sorted(edges)
    for order in (keys, keys[::-1], keys[1::2] + keys[::2]):
        g = _graph({e: edges[e] for e in order})
        net = Network(Simulation(0), g)
        picks.add(net.next_hop("s", "t"))
        assert net._routes_to("t") == _reference_routes(net, "t")
    assert len(picks) == 1


def test_mixed_fast_and_slow_near_ties_match_the_reference():
    # routes whose latencies are equal on paper but add up in different orders:
    # float rounding decides, and must decide as the reference did
    lats = [0.1, 0.2, 0.3, 0.7, 0.01, 0.03]
    edges = {}
    for i, (x, y) in enumerate([("a", "b"), ("b", "f"), ("a", "c"), ("c", "f"), ("a", "d"), ("d", "e"), ("e", "f"),
                                ("b", "c"), ("d", "f")]):
        edges[x, y] = lats[i % len(lats)]
    net = Network(Simulation(0), _graph(edges))
    for dst in net.graph:
        assert net._routes_to(dst) == _reference_routes(net, dst)


NAMES = [f"n{i}" for i in range(7)]
LATENCIES = st.sampled_from([0.001, 0.002, 0.003, 0.01, 0.1, 0.2, 0.3, 0.7])


@st.composite
def small_networks(draw):
    """A connected graph on up to 7 nodes (a random spanning tree plus extra
    edges), latencies from a small set so equal-cost routes are common, and a
    random set of cut links."""
    n = draw(st.integers(2, 7))
    nodes = NAMES[:n]
    order = draw(st.permutations(nodes))
    edges = set()
    for i in range(1, n):
        j = draw(st.integers(0, i - 1))
        edges.add(tuple(sorted((order[i], order[j]))))
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
    edges |= set(draw(st.lists(st.sampled_from(pairs), max_size=8)))
    edges = sorted(edges)
    lat = {e: draw(LATENCIES) for e in edges}
    cut = draw(st.lists(st.sampled_from(edges), max_size=len(edges), unique=True))
    return lat, cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_networks())
def test_routes_match_brute_force_on_random_small_graphs(case):
    lat, cut = case
    net = Network(Simulation(0), _graph(lat))
    if cut:
        _cut(net, 0, cut)
    cutset = {frozenset(e) for e in cut}
    up = nx.Graph([e for e in lat if frozenset(e) not in cutset])
    up.add_nodes_from(net.graph)
    for dst in net.graph:
        assert net._routes_to(dst) == _reference_routes(net, dst)  # ties included
        for src in net.graph:
            if src == dst:
                continue
            path = net.path(src, dst)
            if not nx.has_path(up, src, dst):
                assert path is None
                continue
            assert path is not None and path[0] == src and path[-1] == dst
            assert all(frozenset(h) not in cutset for h in zip(path, path[1:]))
            assert len(set(path)) == len(path)
            best = min(_cost(net, p) + 1e-9 * (len(p) - 1) for p in nx.all_simple_paths(up, src, dst))
            assert _cost(net, path) + 1e-9 * (len(path) - 1) <= best + 1e-12
    net.heal_all()
    for dst in net.graph:
        for src in net.graph:
            if src != dst:
                assert net.path(src, dst) is not None  # the topology is connected again
