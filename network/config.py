"""The network's scenario sections, and how a scenario becomes a wired network.

Sections (registered by :mod:`desim.network.plugin`): ``[topology]``,
``[links]`` (``default``, ``wireless``, ``[[links.override]]``),
``[jitter_buffer]``, ``[reliable]``, ``[[traffic]]`` and ``[[faults]]``.

The wiring layer calls :func:`build_graph` (or takes a model's own graph),
:func:`check_wiring` (names, links and flows against that graph) and
:func:`attach` (a :class:`~desim.network.transport.Network` on a simulation,
with the links, the jitter buffer, retries and the fault schedule).
"""
from __future__ import annotations

from typing import Annotated, Literal

import networkx as nx
from pydantic import Field, StringConstraints, model_validator

from desim.network import topology as T
from desim.network.distributions import LOGNORMAL_MAX_RATIO, DelayDist
from desim.network.faults import Fault, schedule
from desim.network.flows import Flow
from desim.network.link import LinkSpec
from desim.network.loss import LossModel
from desim.scenario import MAX_UNTIL, FieldError, PathField, ScenarioError, Section

MAX_DELAY = 3600.0  # seconds: a link delay, a retry interval, a fault's extra delay
MAX_NODES = 100_000  # nodes a [topology] may ask for
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Pair = Annotated[tuple[Name, Name], Field(strict=False)]  # a TOML array of two names (sections are strict otherwise)


class DelayCfg(Section):
    dist: Literal["constant", "uniform", "normal", "lognormal", "pareto"] = "constant"
    mean: float = Field(0.0, ge=0, le=MAX_DELAY, description="mean propagation delay, seconds")
    jitter: float = Field(0.0, ge=0, le=MAX_DELAY, description="spread: std (normal, lognormal) or half-width (uniform)")
    correlation: float = Field(0.0, ge=0, lt=1)
    alpha: float = Field(3.0, gt=1, le=1000, description="pareto shape")

    @model_validator(mode="after")
    def _consistent(self):
        for name in ("mean", "jitter"):
            v = getattr(self, name)
            if 0 < v < 1e-9:
                raise ValueError(f"{name}: below a nanosecond ({v:g} s) is not a meaningful delay: use 0 or at least 1e-9")
        if self.dist == "lognormal" and self.jitter > LOGNORMAL_MAX_RATIO * self.mean:
            raise ValueError(f"lognormal jitter may be at most {LOGNORMAL_MAX_RATIO:g} times its mean, got {self.jitter:g} for a mean of {self.mean:g}")
        self.to_dist()
        return self

    def to_dist(self):
        return DelayDist(self.dist, self.mean, self.jitter, self.correlation, self.alpha)


class LossCfg(Section):
    model: Literal["none", "bernoulli", "gilbert_elliott"] = "none"
    p: float = Field(0.0, ge=0, le=1)
    r: float = Field(1.0, ge=0, le=1)
    loss_good: float = Field(0.0, ge=0, le=1)
    loss_bad: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self):
        self.to_model()
        return self

    def to_model(self):
        return LossModel(self.model, self.p, self.r, self.loss_good, self.loss_bad)


class LinkCfg(Section):
    delay: DelayCfg = DelayCfg()
    loss: LossCfg = LossCfg()
    bandwidth: float = Field(0.0, ge=0, le=1e15, description="bits/s; 0 = unlimited")
    duplicate: float = Field(0.0, ge=0, le=1)
    corrupt: float = Field(0.0, ge=0, le=1)
    queue_limit: int = Field(0, ge=0, le=1_000_000)

    def to_spec(self):
        return LinkSpec(self.delay.to_dist(), self.loss.to_model(), self.bandwidth, self.duplicate, self.corrupt, self.queue_limit)


class LinkOverride(Section):
    """One link's own model: the fields it gives replace its base's, every field it leaves out is
    its base's (None here means "not given": TOML has no null, so a file cannot write one).

    The base is ``[links.wireless]`` for a link whose edge kind is ``wireless`` when the scenario
    has that section, else ``[links.default]``: the link the override would have had without it.
    ``delay`` and ``loss`` are replaced whole (a delay is one distribution: its fields are read
    together, and what a table leaves out is the built-in default, as in ``[links.default]``)."""

    between: Pair
    delay: DelayCfg | None = None
    loss: LossCfg | None = None
    bandwidth: float | None = Field(None, ge=0, le=1e15, description="bits/s; 0 = unlimited")
    duplicate: float | None = Field(None, ge=0, le=1)
    corrupt: float | None = Field(None, ge=0, le=1)
    queue_limit: int | None = Field(None, ge=0, le=1_000_000)

    def given(self) -> dict:
        """The link fields this override sets (``between`` aside)."""
        return {f: v for f in LinkCfg.model_fields if (v := getattr(self, f)) is not None}

    def over(self, base: LinkCfg) -> LinkCfg:
        """``base`` with this override's fields in place of its own."""
        return base.model_copy(update=self.given())


class LinksCfg(Section):
    default: LinkCfg = LinkCfg()
    wireless: LinkCfg | None = Field(None, description="links whose edge kind is 'wireless' (robot to controller)")
    override: list[LinkOverride] = []

    def base(self, edge: dict) -> LinkCfg:
        """The link model an edge (its networkx data) has before any override."""
        if edge.get("kind") == "wireless" and self.wireless is not None:
            return self.wireless
        return self.default


class TopologyCfg(Section):
    kind: Literal["star", "line", "ring", "grid", "mesh", "warehouse", "graphml", "edgelist"] = "warehouse"
    nodes: int = Field(4, ge=1, le=MAX_NODES, description="star/line/ring/mesh size")
    rows: int = Field(2, ge=1, le=MAX_NODES)
    cols: int = Field(2, ge=1, le=MAX_NODES)
    zones: int = Field(3, ge=1, le=1000)
    robots_per_zone: int = Field(4, ge=0, le=MAX_NODES)
    services: list[Name] = Field(["inventory", "orders", "procurement"], max_length=100)
    path: PathField = Field(None, description="graphml / edgelist file, relative to the scenario file")

    @model_validator(mode="after")
    def _path_needed(self):
        if self.kind in ("graphml", "edgelist") and not self.path:
            raise ValueError(f"topology kind {self.kind!r} needs 'path'")
        if self.kind == "grid" and self.rows * self.cols > MAX_NODES:
            raise ValueError(f"a grid of {self.rows} x {self.cols} has more than {MAX_NODES:,} nodes")
        if self.kind == "mesh" and self.nodes > 1000:
            raise ValueError(f"a full mesh of {self.nodes} nodes has {self.nodes * (self.nodes - 1) // 2:,} links (at most 1,000 nodes)")
        if self.kind == "warehouse" and self.zones * (self.robots_per_zone + 1) > MAX_NODES:
            raise ValueError(f"{self.zones} zones of {self.robots_per_zone} robots is more than {MAX_NODES:,} nodes")
        if len(set(self.services)) != len(self.services):
            raise ValueError("services: each service is named once")
        return self


class JitterCfg(Section):
    enabled: bool = False
    alpha: float = Field(15 / 16, gt=0, lt=1)


class ReliableCfg(Section):
    retry_interval: float = Field(0.5, ge=1e-4, le=MAX_DELAY)
    retry_budget: int = Field(10, ge=0, le=1000)


class TrafficCfg(Section):
    src: str | list[str] = Field("robot", alias="from")
    dst: str | list[str] = Field("own_controller", alias="to")
    rate: float = Field(1.0, gt=0, le=1e6, description="messages per second per sender (Poisson)")
    size: int = Field(256, ge=1, le=1_000_000_000, description="mean size in bytes (exponential)")
    kind: Name = "status"
    reliable: bool = False
    reply: bool = False


class FaultCfg(Section):
    at: float = Field(ge=0, le=MAX_UNTIL)
    kind: Literal["isolate", "split", "bridge", "cut", "flap", "latency_spike", "slow_link", "heal"]
    duration: float | None = Field(None, gt=0, le=MAX_UNTIL)
    nodes: list[str] = []
    groups: list[list[str]] = []
    bridge: str | None = None
    between: Pair | None = Field(None, description="cut: the two nodes of the one link it cuts")
    links: list[Pair] = []
    period: float = Field(1.0, ge=1e-3, le=MAX_UNTIL, description="flap: seconds between state changes")
    extra_delay: float = Field(0.0, ge=0, le=MAX_DELAY)
    delay_scale: float = Field(1.0, ge=1e-6, le=1e6)
    bandwidth_scale: float = Field(1.0, ge=1e-6, le=1e6)

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "cut" and self.between is None:
            raise FieldError(("between",), 'a cut names its link: between = ["a", "b"], two adjacent nodes')
        if self.between is not None and self.kind != "cut":
            raise FieldError(("between",), f"only a cut takes between (this fault's kind is {self.kind}; flap, latency_spike and slow_link take links)")
        if self.between is not None and self.between[0] == self.between[1]:
            raise FieldError(("between",), f"a link joins two different nodes, got {self.between[0]!r} twice")
        self.to_fault()
        return self

    def to_fault(self):
        return Fault(self.at, self.kind, self.duration, tuple(self.nodes), tuple(tuple(g) for g in self.groups),
                     self.bridge, tuple(tuple(e) for e in self.links), self.period, self.extra_delay,
                     self.delay_scale, self.bandwidth_scale, tuple(self.between) if self.between else None)


# -- a scenario's network -------------------------------------------------------
def build_graph(topology: TopologyCfg, file: str = "<scenario>") -> nx.Graph:
    """The graph a ``[topology]`` section describes (a model with its own graph skips this)."""
    t = topology
    try:
        if t.kind == "star":
            g = T.star(t.nodes)
        elif t.kind == "line":
            g = T.line(t.nodes)
        elif t.kind == "ring":
            g = T.ring(t.nodes)
        elif t.kind == "grid":
            g = T.grid(t.rows, t.cols)
        elif t.kind == "mesh":
            g = T.mesh(t.nodes)
        elif t.kind == "warehouse":
            g = T.warehouse(t.zones, t.robots_per_zone, tuple(t.services))
        elif t.kind == "graphml":
            g = T.from_graphml(t.path)
        else:
            g = T.from_edgelist(t.path)
    except FileNotFoundError:
        raise ScenarioError(file, "topology.path", f"no such file {t.path!r}") from None
    except Exception as e:  # a user's graph file: any parse error is their input's fault
        raise ScenarioError(file, "topology", f"cannot build topology: {e}") from None
    return g


def check_graph(g: nx.Graph, file: str = "<scenario>") -> nx.Graph:
    """A graph the transport can carry messages over (connected, named roles); ScenarioError if not."""
    try:
        T.check(g)
    except ValueError as e:
        raise ScenarioError(file, "topology", str(e)) from None
    return g


def _select(g: nx.Graph, sel: str | list[str], field: str, file: str) -> list[str]:
    names = [sel] if isinstance(sel, str) else list(sel)
    out: list[str] = []
    for name in names:
        by_role = sorted(n for n, d in g.nodes(data=True) if d.get("role") == name)
        if by_role:
            out += by_role
        elif name in g:
            if g.nodes[name].get("role") == "switch":
                raise ScenarioError(file, field, f"{name!r} is a switch; switches forward but do not talk")
            out.append(name)
        else:
            raise ScenarioError(file, field, f"unknown node or role {name!r}")
    return out


def flow(g: nx.Graph, i: int, t: TrafficCfg, file: str = "<scenario>") -> Flow:
    """``[[traffic]]`` entry ``i`` resolved against the graph: who sends to whom."""
    senders = _select(g, t.src, f"traffic[{i}].from", file)
    dsts: dict[str, tuple[str, ...]] = {}
    for s in senders:
        if t.dst == "own_controller":
            zone = g.nodes[s].get("zone")
            cands = [n for n, d in g.nodes(data=True) if d.get("role") == "controller" and d.get("zone") == zone]
            if zone is None or not cands:
                raise ScenarioError(file, f"traffic[{i}].to", f"{s!r} has no zone controller")
        else:
            cands = [n for n in _select(g, t.dst, f"traffic[{i}].to", file) if n != s]
            if not cands:
                raise ScenarioError(file, f"traffic[{i}].to", f"no destination other than the sender {s!r}")
        dsts[s] = tuple(cands)
    return Flow(tuple(senders), dsts, t.rate, t.size, t.kind, t.reliable, t.reply)


def _check_link(g: nx.Graph, between, field: str, file: str) -> None:
    for n in between:
        if n not in g:
            raise ScenarioError(file, field, f"unknown node {n!r}")
    if not g.has_edge(*between):
        raise ScenarioError(file, field, f"no link between {between[0]!r} and {between[1]!r} (they are not adjacent)")


def check_wiring(sc, g: nx.Graph, file: str = "<scenario>") -> list[Flow]:
    """Checks that need the graph: override links, fault targets, traffic flows (returned, resolved)."""
    seen: dict[frozenset, int] = {}
    for i, o in enumerate(sc.links.override):
        _check_link(g, o.between, f"links.override[{i}].between", file)
        j = seen.setdefault(frozenset(o.between), i)
        if j != i:
            raise ScenarioError(file, f"links.override[{i}].between",
                                f"the link {o.between[0]!r}-{o.between[1]!r} is overridden already by links.override[{j}]: give its fields there")
    for i, f in enumerate(sc.faults):
        if f.between is not None:
            _check_link(g, f.between, f"faults[{i}].between", file)
        for n in f.to_fault().named_nodes():
            if n not in g:
                raise ScenarioError(file, f"faults[{i}]", f"unknown node {n!r}")
        for u, v in f.links:
            if not g.has_edge(u, v):
                raise ScenarioError(file, f"faults[{i}].links", f"no link between {u!r} and {v!r}")
    return [flow(g, i, t, file) for i, t in enumerate(sc.traffic)]


def events(sc, g: nx.Graph, flows: list[Flow], until: float) -> float:
    """About how many events the network's own traffic and faults make in ``until`` seconds (an
    over-estimate: every message crosses the longest route a sender has, and each reply too)."""
    total = 0.0
    for f in flows:
        hops = max(nx.eccentricity(g, f.senders[0]), 1) if len(g) <= 2000 else 20
        total += len(f.senders) * f.rate * until * (2 if f.reply else 1) * (2 + 2 * hops)
    for fault in sc.faults:
        if fault.kind == "flap":
            total += 2 * min(fault.duration or until, until) / fault.period
    return total + 2 * len(sc.faults)


def attach(sim, sc, g: nx.Graph, *, record_delays: bool = False) -> Network:
    """Wire the scenario's network onto ``sim``: link specs on the graph's edges, the transport, the faults.

    ``g`` is modified (its edges get their ``link`` specs); pass a copy to keep one."""
    from desim.network.transport import Network  # lazy: SciPy and Mesa cost ~1 s that `desim validate` skips
    links = sc.links
    if links.wireless is not None:
        wireless = links.wireless.to_spec()
        for u, v, d in g.edges(data=True):
            if d.get("kind") == "wireless" and "link" not in d:
                d["link"] = wireless
    for o in links.override:  # each on its base, field by field (check_wiring: at most one per link)
        d = g.edges[o.between]
        d["link"] = o.over(links.base(d)).to_spec()
    net = Network(sim, g, sc.links.default.to_spec(), jitter_buffer=sc.jitter_buffer.enabled,
                  retry_interval=sc.reliable.retry_interval, retry_budget=sc.reliable.retry_budget,
                  record_delays=record_delays, jitter_alpha=sc.jitter_buffer.alpha)
    schedule(net, [f.to_fault() for f in sc.faults])
    return net


def start_traffic(sim, g: nx.Graph, flows: list[Flow]) -> None:
    """The network-only workload: one traffic node per talking node of the graph."""
    from desim.network.traffic import Node  # lazy: Mesa's agents, needed only to run
    for n, d in sorted(g.nodes(data=True)):
        if d.get("role") != "switch":
            Node(sim, n, d["role"], flows)
