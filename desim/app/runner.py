"""Wires a scenario into a simulation and runs it.

The runner is where desim meets its domain packages: network for every
scenario, and a model (the warehouse) when the scenario has one.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx

from desim.scenario import Scenario, ScenarioError, TrafficCfg



def build_graph(sc: Scenario, file: str = "<scenario>") -> nx.Graph:
    from desim.network import topology as T

    t = sc.topology
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
        elif sc.warehouse is not None:  # the floor decides how many robots and zones the network has
            from desim.models.warehouse.scenario import parse_section

            if t.kind != "warehouse":
                raise ScenarioError(file, "topology.kind", "a scenario with a [warehouse] needs the 'warehouse' topology")
            w = parse_section(sc, file)
            g = T.warehouse(w.zones, 0, tuple(t.services), robots=w.robots)
        elif t.kind == "warehouse":
            g = T.warehouse(t.zones, t.robots_per_zone, tuple(t.services))
        elif t.kind == "graphml":
            g = T.from_graphml(t.path)
        else:
            g = T.from_edgelist(t.path)
    except FileNotFoundError:
        raise ScenarioError(file, "topology.path", f"no such file {t.path!r}") from None
    except ScenarioError:
        raise
    except Exception as e:  # a user's graph file: any parse error is their input's fault
        raise ScenarioError(file, "topology", f"cannot build topology: {e}") from None
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


def _flow(g: nx.Graph, i: int, t: TrafficCfg, file: str):
    from desim.network.flows import Flow

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


def check_wiring(sc: Scenario, file: str = "<scenario>") -> nx.Graph:
    """Semantic checks that need the topology: node names, edges, flows."""
    g = build_graph(sc, file)
    for i, o in enumerate(sc.links.override):
        for n in o.between:
            if n not in g:
                raise ScenarioError(file, f"links.override[{i}].between", f"unknown node {n!r}")
        if not g.has_edge(*o.between):
            raise ScenarioError(file, f"links.override[{i}].between", f"no link between {o.between[0]!r} and {o.between[1]!r}")
    for i, f in enumerate(sc.faults):
        for n in f.to_fault().named_nodes():
            if n not in g:
                raise ScenarioError(file, f"faults[{i}]", f"unknown node {n!r}")
        for u, v in f.links:
            if not g.has_edge(u, v):
                raise ScenarioError(file, f"faults[{i}].links", f"no link between {u!r} and {v!r}")
    for i, t in enumerate(sc.traffic):
        _flow(g, i, t, file)
    if sc.warehouse is not None:
        from desim.models.warehouse.scenario import check_section

        check_section(sc, g, file)
    return g


@dataclass
class RunResult:
    """What a run produced: headline figures (``summary``) and the live objects."""

    summary: dict[str, Any]
    sim: Any  # desim.sim.Simulation
    network: Any
    model: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def run(sc: Scenario, seed: int | None = None, until: float | None = None, *, file: str = "<scenario>",
        keep_trace: bool = False, record_delays: bool = False, run_id: str | None = None,
        progress: Callable[[float], None] | None = None, overrides: dict | None = None) -> RunResult:
    """Build and run a scenario; returns the summary the CLI prints with ``--json``."""
    seed = sc.seed if seed is None else seed
    until = sc.until if until is None else until
    sim, net, model = build(sc, seed, file=file, keep_trace=keep_trace, record_delays=record_delays, overrides=overrides)
    t0 = time.perf_counter()
    sim.run(until, progress=progress)
    wall = time.perf_counter() - t0
    if model is not None:
        model.finish()
    cons = net.conservation()
    return _summarise(sc, seed, sim, net, model, cons, wall, run_id)


def build(sc: Scenario, seed: int, *, file: str = "<scenario>", keep_trace: bool = False, record_delays: bool = False,
          overrides: dict | None = None, brain: Any = None):
    """Wire a scenario into a fresh simulation without running it: ``(sim, network, model or None)``."""
    from desim.sim import Simulation
    from desim.network import Network, schedule
    from desim.network.traffic import Node

    g = check_wiring(sc, file)
    for o in sc.links.override:
        g.edges[o.between]["link"] = o.to_spec()
    if sc.links.wireless is not None:
        wireless = sc.links.wireless.to_spec()
        for u, v, d in g.edges(data=True):
            if d.get("kind") == "wireless" and "link" not in d:
                d["link"] = wireless
    sim = Simulation(seed, keep_trace=keep_trace)
    net = Network(sim, g, sc.links.default.to_spec(), jitter_buffer=sc.jitter_buffer.enabled,
                  retry_interval=sc.reliable.retry_interval, retry_budget=sc.reliable.retry_budget,
                  record_delays=record_delays, jitter_alpha=sc.jitter_buffer.alpha)
    schedule(net, [f.to_fault() for f in sc.faults])
    model = None
    if sc.warehouse is not None:
        from desim.models.warehouse.scenario import build_model

        model = build_model(sim, net, sc, g, overrides or {}, file, brain=brain)
    else:
        flows = [_flow(g, i, t, file) for i, t in enumerate(sc.traffic)]
        for n, d in sorted(g.nodes(data=True)):
            if d.get("role") != "switch":
                Node(sim, n, d["role"], flows)
    return sim, net, model


def _summarise(sc, seed, sim, net, model, cons, wall, run_id) -> RunResult:
    if not cons["ok"]:
        raise AssertionError(f"message conservation violated: {cons}")
    summary: dict[str, Any] = {
        "run_id": run_id or f"r-{uuid.uuid4().hex[:12]}",
        "scenario": sc.name,
        "seed": seed,
        "sim_time": sim.now,
        "wall_s": round(wall, 4),
        "events": sim.recorder.events,
        "trace_hash": sim.trace_hash,
        "messages": {k: cons[k] for k in ("sent", "delivered", "dropped", "in_flight", "duplicated")},
        "conservation_ok": cons["ok"],
        "retries": net.retries,
        "jitter_buffer": net.jitter_stats(),
        "faults": [list(x) for x in net.fault_log],
    }
    if model is not None:
        summary.update(model.summary())
        if not summary["orders_conserved"]:
            raise AssertionError(f"order conservation violated: {summary['orders']}")
    return RunResult(summary, sim, net, model)
