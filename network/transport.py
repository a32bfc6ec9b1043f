"""The network: carries messages hop by hop over a topology of links."""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import networkx as nx

from desim.message import Message
from desim.network.faults import Fault
from desim.network.jitter import JitterBuffer
from desim.network.link import Link, LinkSpec
from desim.network.topology import check

FLOW_BIN = 1.0  # seconds per bin of the recorded message counts (readers re-bin to their own window)
LATENCY_CAP = 1 << 17  # latency samples kept at most: past it, every other one goes and the stride doubles


class FlowLog:
    """What a recording run keeps of the traffic over time, small whatever the run's length.

    ``counts``: messages per (1 s bin, source role, destination role, outcome), outcome
    ``sent``, ``delivered`` or ``drop:<reason>`` (a jitter buffer's late drops are
    ``drop:late``), roles from the graph's node ``role``. ``latency``: end-to-end
    latency samples of delivered messages with their send time and role pair, one
    in ``stride`` delivered messages (the stride doubles each time the buffer fills,
    so the samples stay evenly spread over the run). ``delay_t``: per directed link,
    the send time of each of the link's recorded delay samples (``Link.delays``).
    Reads the simulation's clock and nothing else: no draws, no events.
    """

    def __init__(self, graph: nx.Graph) -> None:
        self.role = {n: str(d.get("role") or "node") for n, d in graph.nodes(data=True)}
        self.bin = FLOW_BIN
        self.counts: Counter = Counter()
        self.lat_t: list[float] = []
        self.lat: list[float] = []
        self.lat_pair: list[tuple[str, str]] = []
        self.stride, self._seen = 1, 0
        self.delay_t: dict[tuple[str, str], list[float]] = {}

    def count(self, now: float, msg: Message, outcome: str) -> None:
        self.counts[int(now // self.bin), self.role.get(msg.src, "node"), self.role.get(msg.dst, "node"), outcome] += 1

    def delivered(self, now: float, msg: Message) -> None:
        self.count(now, msg, "delivered")
        self._seen += 1
        if self._seen % self.stride:
            return
        self.lat_t.append(msg.sent_at)
        self.lat.append(now - msg.sent_at)
        self.lat_pair.append((self.role.get(msg.src, "node"), self.role.get(msg.dst, "node")))
        if len(self.lat) >= LATENCY_CAP:
            self.lat_t, self.lat, self.lat_pair = self.lat_t[1::2], self.lat[1::2], self.lat_pair[1::2]
            self.stride *= 2


class Network:
    """Attaches to a :class:`desim.Simulation` and carries every message it sends.

    A message's copies each end in exactly one way: delivered, or dropped with
    a reason (``partition``, ``loss``, ``queue_full``, ``late``, ``duplicate``);
    until then they are in flight. :meth:`conservation` checks
    ``sent + duplicated == delivered + dropped + in_flight``.
    """

    def __init__(self, sim, graph: nx.Graph, default_link: LinkSpec | None = None,
                 jitter_buffer: bool = False, retry_interval: float = 0.5, retry_budget: int = 10,
                 record_delays: bool = False, jitter_alpha: float = 15 / 16):
        check(graph)
        self.sim, self.env, self.graph = sim, sim.env, graph
        self.recorder = sim.recorder
        default_link = default_link or LinkSpec()
        self.links: dict[tuple[str, str], Link] = {}
        for u, v, data in sorted(graph.edges(data=True)):
            spec = data.get("link") or default_link
            for a, b in ((u, v), (v, u)):
                self.links[a, b] = Link(a, b, spec, sim.rng.stream(f"link:{a}->{b}"), record_delays)
        # Routing runs Dijkstra from a destination over this graph: each node's
        # neighbours in sorted order, so equal-cost routes break ties the same
        # whatever order the user's topology was built in.
        self._routing = nx.DiGraph()
        self._routing.add_nodes_from(sorted(graph.nodes))
        for n in sorted(graph.nodes):
            self._routing.add_edges_from((n, m) for m in sorted(graph.neighbors(n)))
        self.retry_interval, self.retry_budget = retry_interval, retry_budget
        self.jitter_enabled, self.jitter_alpha = jitter_buffer, jitter_alpha
        self.jitter: dict[tuple[str, str], JitterBuffer] = {}
        self.cut: set[frozenset] = set()
        self.active: dict[int, tuple[Fault, set]] = {}
        self.fault_log: list[tuple[float, str, str, str]] = []
        self._next_hop: dict[str, dict[str, str]] = {}
        self._live: dict[int, Message] = {}
        self._ids = itertools.count()
        self.sent = self.delivered = self.duplicated = self.retries = 0
        self.dropped: Counter[str] = Counter()
        self.flow: FlowLog | None = FlowLog(graph) if record_delays else None
        sim.network = self

    @property
    def recording(self) -> bool:
        """A recording run: the traffic over time is kept too (``flow``), and models may keep more."""
        return self.flow is not None

    # -- a message's life -------------------------------------------------
    def send(self, msg: Message) -> None:
        if msg.dst not in self.sim.agents:
            raise ValueError(f"unknown destination {msg.dst!r}")
        self.sent += 1
        token = next(self._ids)
        self._live[token] = msg
        self.recorder.record(self.env.now, "send", msg.src, msg.dst, msg.kind, msg.seq)
        if self.flow is not None:
            self.flow.count(self.env.now, msg, "sent")
        self._soon(self._hop, msg, token, msg.src, 0)

    # A message's journey is a chain of callbacks on kernel events, not a SimPy
    # process: the same events at the same times in the same order as a process
    # that starts on an urgent event and yields a timeout per hop (so traces are
    # unchanged), without a generator, a Process and its end event per message.
    def _soon(self, fn, *args) -> None:
        """Call ``fn(*args)`` at the current time, as a process's first step would run."""
        self.sim.call_soon(lambda _ev: fn(*args))

    def _after(self, delay: float, fn, *args) -> None:
        """Call ``fn(*args)`` after ``delay`` seconds."""
        self.env.timeout(delay).callbacks.append(lambda _ev: fn(*args))

    def _hop(self, msg: Message, token: int, node: str, retries: int) -> None:
        """From ``node`` towards ``msg.dst``: route, queue, serialise, then propagate (``_landed``)."""
        if node == msg.dst:
            return self._arrive(msg, token)
        nxt = self.next_hop(node, msg.dst)
        if nxt is None:  # no path: the network is split
            if msg.reliable and retries < self.retry_budget:
                self.retries += 1
                return self._after(self.retry_interval, self._hop, msg, token, node, retries + 1)
            return self._drop(msg, token, "partition")
        link = self.links[node, nxt]
        delay = link.transmit(self.env.now, msg.size)
        if delay is None:
            return self._drop(msg, token, "queue_full")
        if self.flow is not None:  # the send time of the delay sample the link just recorded
            self.flow.delay_t.setdefault((node, nxt), []).append(self.env.now)
        if link.loss.lost():
            return self._drop(msg, token, "loss")
        if link.duplicated():
            self._spawn_copy(msg, nxt, delay)
        if link.corrupted() and not msg.corrupted:
            msg = replace(msg, corrupted=True)
        self._after(delay, self._landed, msg, token, node, nxt, retries)

    def _landed(self, msg: Message, token: int, node: str, nxt: str, retries: int) -> None:
        if frozenset((node, nxt)) in self.cut:  # cut while on the wire
            if msg.reliable and retries < self.retry_budget:
                self.retries += 1
                return self._hop(msg, token, node, retries + 1)
            return self._drop(msg, token, "partition")
        self._hop(msg, token, nxt, retries)

    def _spawn_copy(self, msg: Message, at: str, after: float) -> None:
        self.duplicated += 1
        token = next(self._ids)
        self._live[token] = msg
        self.recorder.record(self.env.now, "dup", msg.src, msg.dst, msg.seq)
        if after:
            self._soon(self._after, after, self._hop, msg, token, at, 0)
        else:
            self._soon(self._hop, msg, token, at, 0)

    def _arrive(self, msg: Message, token: int) -> None:
        if not self.jitter_enabled:
            return self._deliver(msg, token)
        key = (msg.src, msg.dst)
        jb = self.jitter.get(key)
        if jb is None:
            jb = self.jitter[key] = JitterBuffer(self.env, self._deliver, self._drop, alpha=self.jitter_alpha)
        jb.arrive(msg, token)

    def _deliver(self, msg: Message, token: int) -> None:
        del self._live[token]
        self.delivered += 1
        self.recorder.record(self.env.now, "deliver", msg.src, msg.dst, msg.seq)
        if self.flow is not None:
            self.flow.delivered(self.env.now, msg)
        self.sim.agents[msg.dst].deliver(msg)

    def _drop(self, msg: Message, token: int, reason: str) -> None:
        del self._live[token]
        self.dropped[reason] += 1
        self.recorder.record(self.env.now, "drop", msg.src, msg.dst, msg.seq, reason)
        if self.flow is not None:
            self.flow.count(self.env.now, msg, "drop:" + reason)

    # -- routing ----------------------------------------------------------
    def next_hop(self, node: str, dst: str) -> str | None:
        """Next node on the lowest-expected-latency path over uncut links."""
        table = self._next_hop.get(dst)
        if table is None:
            table = self._next_hop[dst] = self._routes_to(dst)
        return table.get(node)

    def _routes_to(self, dst: str) -> dict[str, str]:
        """For every node that can reach ``dst`` over uncut links, its next hop on
        the lowest-expected-latency path: one Dijkstra from ``dst`` (networkx).

        Reproduces the hand-written Dijkstra this replaced, tie for tie: the
        routing graph lists each node's neighbours in sorted order (the order
        networkx relaxes them), networkx settles equal distances first-pushed
        first and keeps the first predecessor that reached a node's best
        distance, and :class:`_HopCost` adds a hop's cost to a distance in the
        same floating-point order as before."""
        cut, links = self.cut, self.links

        def weight(v, u, _data):  # relaxing u -> v, with v already settled
            if cut and frozenset((u, v)) in cut:
                return None  # networkx skips the link
            return _HopCost(links[u, v].expected_latency)

        pred, _dist = nx.dijkstra_predecessor_and_distance(self._routing, dst, weight=weight)
        return {u: vs[0] for u, vs in pred.items() if vs}

    def path(self, src: str, dst: str) -> list[str] | None:
        out, node = [src], src
        while node != dst:
            node = self.next_hop(node, dst)
            if node is None:
                return None
            out.append(node)
        return out

    # -- faults -----------------------------------------------------------
    def set_fault(self, fid: int, fault: Fault, cuts: set) -> None:
        self.active[fid] = (fault, cuts)
        self.fault_log.append((self.env.now, "start", fault.kind, _describe(fault)))
        self._apply()

    def clear_fault(self, fid: int) -> None:
        entry = self.active.pop(fid, None)
        if entry is not None:
            self.fault_log.append((self.env.now, "end", entry[0].kind, _describe(entry[0])))
            self._apply()

    def heal_all(self) -> None:
        for fid in list(self.active):
            self.clear_fault(fid)
        self.fault_log.append((self.env.now, "heal", "heal", ""))

    def _apply(self) -> None:
        self.cut = set().union(*(c for _f, c in self.active.values())) if self.active else set()
        for link in self.links.values():
            link.extra_delay, link.delay_scale, link.bw_scale = 0.0, 1.0, 1.0
        for fault, _c in self.active.values():
            if fault.kind not in ("latency_spike", "slow_link"):
                continue
            targets = [self.links[a, b] for u, v in fault.links for a, b in ((u, v), (v, u))] if fault.links else self.links.values()
            for link in targets:
                if fault.kind == "latency_spike":
                    link.extra_delay += fault.extra_delay
                    link.delay_scale *= fault.delay_scale
                else:
                    link.bw_scale *= fault.bandwidth_scale
        self._next_hop.clear()
        self.recorder.record(self.env.now, "topology", len(self.cut), len(self.active))

    # -- accounting -------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._live)

    def conservation(self) -> dict:
        """The message balance; ``ok`` is False if any copy is unaccounted for."""
        dropped = sum(self.dropped.values())
        return {"sent": self.sent, "duplicated": self.duplicated, "delivered": self.delivered,
                "dropped": dict(sorted(self.dropped.items())), "in_flight": self.in_flight,
                "ok": self.sent + self.duplicated == self.delivered + dropped + self.in_flight}

    def jitter_stats(self) -> dict:
        bufs = list(self.jitter.values())
        released = sum(b.released for b in bufs)
        return {"streams": len(bufs), "released": released, "late": sum(b.late for b in bufs),
                "duplicates": sum(b.duplicates for b in bufs),
                "mean_added_delay": sum(b.added_delay for b in bufs) / released if released else 0.0}


class _HopCost:
    """A hop's routing cost, its link's expected latency plus a tiny per-hop
    cost that breaks ties toward fewer hops. Added to a path's distance ``d`` it
    gives ``(d + latency) + 1e-9``, rounded in that order, so route choices and
    ties (and hence traces) match the routing this replaced bit for bit; a
    plain float ``latency + 1e-9`` would round ``d + (latency + 1e-9)`` and can
    flip near-ties between routes that mix fast and slow links."""

    __slots__ = ("latency",)

    def __init__(self, latency: float):
        self.latency = latency

    def __radd__(self, d: float) -> float:
        return d + self.latency + 1e-9

    __add__ = __radd__


def _describe(f: Fault) -> str:
    if f.between:
        return f"{f.between[0]}-{f.between[1]}"  # a cut: written as flap's links are
    if f.nodes:
        return ",".join(f.nodes)
    if f.groups:
        return " | ".join(",".join(g) for g in f.groups)
    if f.links:
        return ",".join(f"{u}-{v}" for u, v in f.links)
    return "all"
