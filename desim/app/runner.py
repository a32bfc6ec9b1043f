"""Wires a scenario into a simulation and runs it.

The runner is where desim meets its domain packages. The network is wired
for every scenario; a domain model (the warehouse, or any other) is found in
the model registry by the section the scenario has, so a new model needs no
edit here. A run goes through three steps, each done once:

1. :func:`prepare` (a :class:`Plan`): the graph (the model's own, or the
   ``[topology]`` section's), the network's wiring checks and flows, the
   model's checks (which build what it needs, e.g. the warehouse's layout).
   :func:`desim.app.scenario.load` prepares every scenario it reads, and the
   plan is kept with the scenario object, so a loaded scenario is never
   checked twice.
2. :func:`build` (a :class:`World`): a fresh simulation, the network on a copy
   of the graph, the brain resolved once from its spec (or injected), the model.
3. :func:`execute`: run to ``until``, check conservation, summarise.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx

import math
import os

from desim.network.config import attach, build_graph, check_graph, check_wiring, events as network_events, start_traffic
from desim.network.flows import Flow
from desim.policies.spec import check_brain, make_brain
from desim.registry import ModelSpec, models, sections
from desim.rng import RngStreams
from desim.scenario import ScenarioBase, ScenarioError


@dataclass
class Plan:
    """A checked scenario, ready to build: its graph, flows and model (with what the model prepared)."""

    scenario: ScenarioBase
    file: str
    graph: nx.Graph
    flows: list[Flow]
    model: ModelSpec | None = None
    prepared: Any = None

    @property
    def brain_spec(self) -> str | None:
        """The brain the scenario's model section names (None: the model has no brain)."""
        if self.model is None or self.model.brain_field is None:
            return None
        return getattr(getattr(self.scenario, self.model.section), self.model.brain_field)


EVENT_BUDGET = 1e9
"""Events a run may take (about an hour or more of wall time); ``DESIM_EVENT_BUDGET`` sets another."""


def event_budget() -> float:
    raw = os.environ.get("DESIM_EVENT_BUDGET")
    try:
        budget = float(raw) if raw else EVENT_BUDGET
    except ValueError:
        raise ScenarioError("DESIM_EVENT_BUDGET", "", f"must be a number, got {raw!r}") from None
    return budget if math.isfinite(budget) and budget > 0 else EVENT_BUDGET


def estimated_events(plan: "Plan", until: float) -> float:
    """About how many events a run of ``until`` simulated seconds takes (an over-estimate)."""
    total = network_events(plan.scenario, plan.graph, plan.flows, until)
    if plan.model is not None and plan.model.rate is not None:
        total += plan.model.rate(plan.scenario, plan.prepared) * until
    return total


def check_budget(plan: "Plan", until: float, field: str = "until") -> None:
    """ScenarioError (one line) when a run of ``until`` seconds could not finish within the event budget."""
    n, budget = estimated_events(plan, until), event_budget()
    if n > budget:
        raise ScenarioError(plan.file, field, f"a run of {until:g} s would take about {n:.2g} events, more than the "
                            f"{budget:.2g} a run may take; shorten it or lower the rates")


def model_of(sc: ScenarioBase, file: str = "<scenario>") -> ModelSpec | None:
    """The registered model whose section the scenario has (None: a network-only scenario)."""
    found = [spec for _name, spec in models.items() if getattr(sc, spec.section, None) is not None]
    if len(found) > 1:
        raise ScenarioError(file, "", f"one model per scenario, got sections {', '.join(s.section for s in found)}")
    return found[0] if found else None


def check_requires(sc: ScenarioBase, file: str = "<scenario>") -> None:
    """A section written without the section it works on (``[pipeline]`` in a network-only file) is an
    error, not silently ignored."""
    for name, sec in sections.items():
        if sec.requires and getattr(sc, name, None) not in (None, []) and getattr(sc, sec.requires, None) is None:
            raise ScenarioError(file, name, f"needs a [{sec.requires}] section (it works on that model)")


def prepare(sc: ScenarioBase, file: str = "<scenario>") -> Plan:
    """Check a scenario against its graph, once: a scenario that was prepared before returns its plan."""
    cached = sc._plan
    if cached is not None and cached[0] == id(sc):
        return cached[1]
    spec = model_of(sc, file)
    check_requires(sc, file)
    g = spec.topology(sc, file) if spec is not None and spec.topology is not None else build_graph(sc.topology, file)
    check_graph(g, file)
    flows = check_wiring(sc, g, file)
    prepared = spec.check(sc, g, file) if spec is not None and spec.check is not None else None
    plan = Plan(sc, file, g, flows, spec, prepared)
    if plan.brain_spec is not None:
        try:
            check_brain(plan.brain_spec)  # the spec only; the brain is built once, per run
        except ValueError as e:
            raise ScenarioError(file, f"{spec.section}.{spec.brain_field}", str(e)) from None
    check_budget(plan, sc.until)
    sc._plan = (id(sc), plan)  # remembered by this object only (a model_copy is a new scenario)
    return plan


def resolve_brain(plan: Plan, seed: int, brain: Any = None):
    """The brain for a run, built once: ``brain`` if it is one, else the spec it names (or the scenario's).

    It draws from the run's ``brain`` stream (a stream depends only on the seed and its name). ValueError
    / ScenarioError (one line) for a bad spec."""
    if plan.model is None or plan.model.brain_field is None:
        if brain is not None:
            raise ScenarioError(plan.file, "", "this scenario has no agents with brains")
        return None
    if brain is not None and not isinstance(brain, str):
        return brain
    spec = brain or plan.brain_spec
    try:
        return make_brain(spec, RngStreams(seed).stream("brain"))
    except ValueError as e:
        field = "--brain" if brain else f"{plan.model.section}.{plan.model.brain_field}"
        raise ScenarioError(plan.file, field, str(e)) from None


@dataclass
class World:
    """A wired simulation, not yet run."""

    plan: Plan
    seed: int
    sim: Any  # desim.sim.Simulation
    network: Any
    model: Any = None
    brain: Any = None
    brain_spec: str | None = None


def build(sc: ScenarioBase | Plan, seed: int, *, file: str = "<scenario>", keep_trace: bool = False,
          record_delays: bool = False, brain: Any = None) -> World:
    """Wire a scenario into a fresh simulation without running it."""
    from desim.sim import Simulation  # lazy: Mesa costs ~1 s that `desim validate` skips

    plan = sc if isinstance(sc, Plan) else prepare(sc, file)
    b = resolve_brain(plan, seed, brain)
    sim = Simulation(seed, keep_trace=keep_trace)
    net = attach(sim, plan.scenario, plan.graph.copy(), record_delays=record_delays)
    model = None
    if plan.model is not None:
        model = plan.model.build(sim, net, plan.scenario, plan.prepared, b)
    else:
        start_traffic(sim, net.graph, plan.flows)
    spec = brain if isinstance(brain, str) else (plan.brain_spec if brain is None else getattr(brain, "name", None))
    return World(plan, seed, sim, net, model, b, spec if b is not None else None)


@dataclass
class RunResult:
    """What a run produced: headline figures (``summary``) and the live objects."""

    summary: dict[str, Any]
    sim: Any
    network: Any
    model: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def execute(world: World, until: float, *, run_id: str | None = None,
            progress: Callable[[float], None] | None = None) -> RunResult:
    """Run a built world to ``until``; check message (and the model's) conservation; summarise."""
    if until != world.plan.scenario.until:  # the scenario's own length was checked when it was prepared
        check_budget(world.plan, until, "--until")
    t0 = time.perf_counter()
    world.sim.run(until, progress=progress)
    wall = time.perf_counter() - t0
    if world.model is not None:
        world.model.finish()
    return _summarise(world, world.network.conservation(), wall, run_id)


def run(sc: ScenarioBase, seed: int | None = None, until: float | None = None, *, file: str = "<scenario>",
        keep_trace: bool = False, record_delays: bool = False, run_id: str | None = None,
        progress: Callable[[float], None] | None = None, brain: Any = None) -> RunResult:
    """Build and run a scenario; returns the summary the CLI prints with ``--json``.

    ``brain``: a brain spec or a brain object replacing the one the scenario names."""
    seed = sc.seed if seed is None else seed
    until = sc.until if until is None else until
    world = build(sc, seed, file=file, keep_trace=keep_trace, record_delays=record_delays, brain=brain)
    return execute(world, until, run_id=run_id, progress=progress)


def _summarise(world: World, cons: dict, wall: float, run_id: str | None) -> RunResult:
    sim, net, model = world.sim, world.network, world.model
    if not cons["ok"]:
        raise AssertionError(f"message conservation violated: {cons}")
    summary: dict[str, Any] = {
        "run_id": run_id or f"r-{uuid.uuid4().hex[:12]}",
        "scenario": world.plan.scenario.name,
        "seed": world.seed,
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
        figures = model.summary()  # may refine the runner's figures (the warehouse adds its own retries)
        summary.update(figures)
        broken = [k for k, v in figures.items() if k.endswith("_conserved") and v is not True]
        if broken:  # a model proves its own balances (orders, requests ...) with ``<thing>_conserved`` flags
            raise AssertionError(f"conservation violated: {', '.join(broken)} ({ {k: figures.get(k.removesuffix('_conserved')) for k in broken} })")
        if world.brain_spec is not None:
            summary["brain"] = world.brain_spec
    return RunResult(summary, sim, net, model)
