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

from desim.app import rules
from desim.network.config import attach, build_graph, check_graph, check_wiring, events as network_events, start_traffic
from desim.network.flows import Flow
from desim.policies.spec import check_brain, make_brain
from desim.registry import ModelSpec, models, sections
from desim.rng import RngStreams
from desim.scenario import NotANode, ScenarioBase, ScenarioError


@dataclass
class Plan:
    """A checked scenario, ready to build: its graph, flows and model (with what the model prepared)."""

    scenario: ScenarioBase
    file: str
    graph: nx.Graph
    flows: list[Flow]
    model: ModelSpec | None = None
    prepared: Any = None
    model_name: str | None = None
    measured_rate: float | None = None  # events per simulated second of a model without a ``rate`` (a trial run)

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


TRIAL_SECONDS = 10.0
"""Simulated seconds of the trial run that measures the rate of a model without a declared ``rate``."""
TRIAL_EVENTS = 20_000
"""Kernel events after which that trial stops (whichever comes first)."""
TRIAL_MARGIN = 2.0
"""The measured rate is multiplied by this: a trial sees the run's start, not its busiest minute."""


def model_rate(plan: "Plan") -> float:
    """Events per simulated second the model makes: its declared ``rate``, or one measured on a trial run
    (``TRIAL_SECONDS`` simulated, at most ``TRIAL_EVENTS`` events, times ``TRIAL_MARGIN``), once per plan."""
    if plan.model is None:
        return 0.0
    if plan.model.rate is not None:
        return float(plan.model.rate(plan.scenario, plan.prepared))
    if plan.measured_rate is None:
        plan.measured_rate = _trial_rate(plan) * TRIAL_MARGIN
    return plan.measured_rate


def _trial_rate(plan: "Plan") -> float:
    """A short run of the model on a fresh simulation (its seed), counting kernel events per simulated second.

    The network's own traffic is estimated separately (``network_events``), so it is not started here."""
    sc = plan.scenario
    sim = _simulation(sc.seed, keep_trace=False)
    net = attach(sim, sc, plan.graph.copy())
    brain = resolve_brain(plan, sc.seed)
    _build_model(plan, sim, net, brain)
    horizon = min(TRIAL_SECONDS, sc.until)
    env, n = sim.env, 0
    while n < TRIAL_EVENTS:
        t = env.peek()
        if t > horizon:
            break
        env.step()
        n += 1
    elapsed = env.now if n >= TRIAL_EVENTS else horizon
    return n / max(elapsed, 1e-9)


def estimated_events(plan: "Plan", until: float) -> float:
    """About how many events a run of ``until`` simulated seconds takes (an over-estimate)."""
    return network_events(plan.scenario, plan.graph, plan.flows, until) + model_rate(plan) * until


def check_budget(plan: "Plan", until: float, field: str = "until") -> None:
    """ScenarioError (one line) when a run of ``until`` seconds could not finish within the event budget."""
    n, budget = estimated_events(plan, until), event_budget()
    if n > budget:
        raise ScenarioError(plan.file, field, f"a run of {until:g} s would take about {n:.2g} events, more than the "
                            f"{budget:.2g} a run may take; shorten it or lower the rates")


def model_of(sc: ScenarioBase, file: str = "<scenario>") -> ModelSpec | None:
    """The registered model whose section the scenario has (None: a network-only scenario)."""
    named = named_model_of(sc, file)
    return named[1] if named else None


def named_model_of(sc: ScenarioBase, file: str = "<scenario>") -> tuple[str, ModelSpec] | None:
    """``(name, spec)`` of the registered model whose section the scenario has (None: network only)."""
    found = [(name, spec) for name, spec in models.items() if getattr(sc, spec.section, None) is not None]
    if len(found) > 1:
        raise ScenarioError(file, "", f"one model per scenario, got sections {', '.join(s.section for _, s in found)}")
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
    named = named_model_of(sc, file)
    name, spec = named if named else (None, None)
    check_requires(sc, file)
    g = spec.topology(sc, file) if spec is not None and spec.topology is not None else build_graph(sc.topology, file)
    check_graph(g, file)
    flows = check_wiring(sc, g, file)
    prepared = spec.check(sc, g, file) if spec is not None and spec.check is not None else None
    if spec is not None:
        rules.check_declared(name, spec, sc, prepared, file)  # reserved figures and tables, before anything runs
    plan = Plan(sc, file, g, flows, spec, prepared, name)
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
    plan = sc if isinstance(sc, Plan) else prepare(sc, file)
    b = resolve_brain(plan, seed, brain)
    sim = _simulation(seed, keep_trace=keep_trace)
    net = attach(sim, plan.scenario, plan.graph.copy(), record_delays=record_delays)
    model = None
    if plan.model is not None:
        model = _build_model(plan, sim, net, b)
    else:
        start_traffic(sim, net.graph, plan.flows)
    spec = brain if isinstance(brain, str) else (plan.brain_spec if brain is None else getattr(brain, "name", None))
    return World(plan, seed, sim, net, model, b, spec if b is not None else None)


def _simulation(seed: int, keep_trace: bool) -> Any:
    """A fresh Simulation (the one door to desim.sim here)."""
    from desim.sim import Simulation  # lazy: Mesa costs ~1 s that `desim validate` skips

    return Simulation(seed, keep_trace=keep_trace)


def _build_model(plan: Plan, sim: Any, net: Any, brain: Any) -> Any:
    """The model on ``sim``; an agent that is not a node of the topology is one ScenarioError line."""
    try:
        return plan.model.build(sim, net, plan.scenario, plan.prepared, brain)
    except NotANode as e:
        raise ScenarioError(plan.file, plan.model.section, str(e)) from None


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
    sim, net, model, plan = world.sim, world.network, world.model, world.plan
    if not cons["ok"]:
        raise rules.ModelRuleError(plan.file, "", "message conservation violated: sent + duplicated != delivered + "
                                   f"dropped + in flight ({ {k: cons[k] for k in cons if k != 'ok'} })")
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
        spec = plan.model
        # the model's figures, checked against the rules (reserved names, ``_conserved`` balances: desim.app.rules);
        # those in ``spec.refines`` replace the runner's (the warehouse adds its robots' retries)
        figures = rules.check_figures(plan.model_name, spec, plan.scenario, plan.prepared, model.summary(), plan.file)
        summary.update(figures)
        summary["model"] = plan.model_name
        if world.brain_spec is not None:
            summary["brain"] = world.brain_spec
        headline = rules.headline_of(spec, summary)
        if headline:
            summary["headline"] = headline
    return RunResult(summary, sim, net, model)
