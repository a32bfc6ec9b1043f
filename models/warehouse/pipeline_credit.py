"""Credit in the order pipeline: which agent's decisions made the difference to each order.

API (the caller in the wiring layer is :func:`desim.app.pipeline_study.pipeline_credit`, which
passes the runner; this module is in the models layer and cannot import ``desim.app``)::

    pipeline_credit(scenario, seed, *, runner, until=None, file="<scenario>", agents=AGENTS,
                    defaults=None) -> PipelineCredit
    replay(scenario, seed, *, runner, until=None, file="<scenario>", replace=None,
           defaults=None) -> Outcomes                      # one run, one agent (or nobody) replaced
    PipelineCredit: .orders (list[OrderCredit]), .totals {agent: {true, assigned_global,
           assigned_local}}, .traceability {"global": r, "local": r} (nan = undefined),
           .completed / .failed / .pending / .created (the real run), .without {agent: counts},
           .trace_hash, .rows() -> {column: list} for the ``pipeline_credit`` store table
    Runner = (scenario, seed, until, setup) -> (model, trace_hash); ``setup(model)`` is called on
           the built model before the run (it swaps brains, it draws nothing)
    AGENTS = ("orders", "procurement", "floor"); DEFAULTS: their default brains
    PIPELINE_CREDIT: the store table (seed, order, outcome, reason, agent, true,
           assigned_global, assigned_local)

**What is measured.** The scenario is run once as written (the real run) and every order's
outcome is kept by its id: 1 when it was completed (delivered) by ``until``, 0 when it failed
or is still pending. Then, for each agent ``a``, the same scenario is re-run with the same
seed, ``a``'s decisions replaced by a default decision and everything else as written. The
true contribution of ``a`` to order ``o`` is

    true[o, a] = outcome_real(o) - outcome_without_a(o)        (in {-1, 0, 1})

``+1``: without ``a``'s decisions the order would not have been completed (``a`` made the
difference); ``-1``: it would have been, ``a``'s decisions cost it; ``0``: no difference.
Closed loop: the other agents decide again on what they see in the re-run (unlike the robots'
open-loop replay in :mod:`~desim.models.warehouse.contribution`: here the agents are of
different kinds and talk through messages, so the question asked is "what if this agent had
not used its judgement", with the others reacting as they would).

**The defaults** (what each agent does with its judgement taken away; brains in
:data:`DEFAULTS`, swapped in on the built model, so no scenario's own behaviour changes):

- ``orders`` (the order pipeline agent, :class:`ProceedBrain`): always ``proceed``, never
  ``backorder`` nor ``reject``, and ``ignore`` instructions found in payloads (the safe
  choice, not the hostile one). The agent still makes its three tool calls; the inventory
  primary's reservation stays the authority on stock (a 409 when there is none). So the
  pipeline's contribution is that of its judgement (backordering on a read that shows no
  stock, rejecting a price off the quote), not of the tools' checks; a default that never
  proceeds would only re-measure that no order gets through without a pipeline.
- ``procurement`` (:class:`NoRestockBrain`): never restocks (quantity 0). It still looks the
  SKU up when told it is low; no purchase order is placed.
- ``floor`` (the robots and their dispatch, :class:`NoopBrain`): every robot NOOP, the
  default action of the robots' own counterfactuals (:data:`~desim.models.warehouse.counterfactual.NOOP`).
  Nothing is delivered, so the floor's true contribution is every completed order: the
  reference against which the two pipeline agents' figures read.

**Common random numbers.** Every random component draws from its own stream, named and
seeded by the run's seed (:mod:`desim.rng`): order arrivals and their SKUs (``orders``),
prices, lead times, tool latencies and faults, link delays. So every re-run sees the same
orders (same id, time and shelf: checked, a mismatch raises) and the same supplier. With
nobody replaced a re-run reproduces every order's outcome and the trace hash exactly
(``tests/test_pipeline_credit.py``). With an agent replaced, a stream is still drawn in the
same order, but once the event sequence diverges a draw may land on another message.

**Assigned credit** (from the real run alone: what a learner would be paid without
re-simulating), per (order, agent):

- ``global``: the team reward: every agent gets the order's outcome (1 when completed);
- ``local``: what the agent visibly did for the order: ``orders`` 1 when it admitted the order
  (all three checks passed, stock reserved); ``procurement`` 1 when the order was admitted and
  a purchase order of procurement's for the order's SKU had landed on the primary before the
  admission (the stock the order took may be what it bought); ``floor`` 1 when the order was
  delivered.

:func:`~desim.models.warehouse.contribution.traceability` (pooled Pearson over every
(order, agent) point) says how well each scheme follows the true contributions; ``nan`` is
undefined (no spread on a side), never 0.

Cost: ``1 + len(agents)`` runs of ``until`` simulated seconds per seed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from desim.models.warehouse.contribution import traceability
from desim.models.warehouse.counterfactual import NOOP
from desim.models.warehouse.pipeline import Services
from desim.scenario import ScenarioError
from desim.store import declare_table

__all__ = ["AGENTS", "DEFAULTS", "NoRestockBrain", "NoopBrain", "OrderCredit", "Outcomes", "PIPELINE_CREDIT",
           "PipelineCredit", "ProceedBrain", "Runner", "pipeline_credit", "replay"]

PIPELINE_CREDIT = declare_table(  # per (seed, order, agent): the true contribution beside each scheme's credit
    "pipeline_credit", {"seed": pa.int64(), "order": pa.int64(), "outcome": pa.string(), "reason": pa.string(),
                        "agent": pa.string(), "true": pa.float64(), "assigned_global": pa.float64(),
                        "assigned_local": pa.float64()},
    required=("seed", "order", "agent"))

Runner = Callable[[Any, int, float, Callable[[Any], None]], tuple[Any, str]]
"""``runner(scenario, seed, until, setup) -> (model, trace_hash)``: build the world, call ``setup(model)``
on the built warehouse model, run it to ``until``; the wiring layer provides it."""

AGENTS = ("orders", "procurement", "floor")
SCHEMES = ("global", "local")


# -- the default brains -----------------------------------------------------------------------------
class ProceedBrain:
    """The order pipeline without its judgement: ``proceed`` at every stock and price decision,
    ``ignore`` at a payload (never obey)."""

    policy_version = 0
    name = "proceed"

    def act(self, observations: Sequence[dict]) -> list[str]:
        return ["ignore" if o["stage"] == "payload" else "proceed" for o in observations]


class NoRestockBrain:
    """Procurement without its judgement: orders nothing, ever."""

    policy_version = 0
    name = "no_restock"

    def act(self, observations: Sequence[dict]) -> list[int]:
        return [0] * len(observations)


class NoopBrain:
    """The floor without its judgement: every robot NOOP."""

    policy_version = 0
    name = "noop"

    def act(self, observations: Sequence) -> list[int]:
        return [NOOP] * len(observations)


DEFAULTS: dict[str, Callable[[], Any]] = {"orders": ProceedBrain, "procurement": NoRestockBrain, "floor": NoopBrain}


# -- one run ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcomes:
    """One run's orders, by id: ``created``/``shelf`` (the CRN check), ``outcome`` (completed | failed |
    pending), ``reason`` (a failure's), ``admitted`` (when the pipeline admitted it, or None),
    ``restocked`` (procurement's landed purchase orders before the admission), ``trace_hash``."""

    replaced: str | None
    created: tuple[float, ...]
    shelf: tuple[int, ...]
    outcome: tuple[str, ...]
    reason: tuple[str, ...]
    admitted: tuple[float | None, ...]
    restocked: tuple[bool, ...]
    trace_hash: str

    def completed(self) -> list[int]:
        """1 per completed order, else 0 (failed or pending)."""
        return [1 if x == "completed" else 0 for x in self.outcome]

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for x in self.outcome if x == k) for k in ("completed", "failed", "pending")}


def _services(model) -> Services:
    for c in getattr(model, "components", ()):
        if isinstance(c, Services):
            return c
    raise RuntimeError("the built model has no order pipeline (pipeline.Services)")


def _check(scenario, seed: int, until: float | None, file: str, agents: Sequence[str],
           defaults: Mapping[str, Callable[[], Any]]) -> float:
    if getattr(scenario, "pipeline", None) is None:
        raise ScenarioError(file, "pipeline", "pipeline credit needs a scenario with the order pipeline ([pipeline])")
    wh = getattr(scenario, "warehouse", None)
    if wh is None or getattr(wh, "orders", None) is None:
        raise ScenarioError(file, "warehouse.orders", "pipeline credit needs arriving orders ([warehouse] orders = {...}): "
                            "without them no order goes through the pipeline")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    u = float(scenario.until if until is None else until)
    if not (math.isfinite(u) and u > 0):
        raise ValueError(f"until must be a positive number of seconds, got {until!r}")
    unknown = [a for a in agents if a not in defaults]
    if unknown or not agents or len(set(agents)) != len(agents):
        raise ValueError(f"agents must be distinct names among {', '.join(defaults)}, got {list(agents)!r}")
    return u


def _run(scenario, seed: int, until: float, runner: Runner, replace: str | None,
         defaults: Mapping[str, Callable[[], Any]]) -> Outcomes:
    admitted: dict[int, float] = {}

    def setup(model) -> None:
        svc = _services(model)
        admit = svc.admit

        def admit_and_note(order) -> None:  # the same call, with its time noted (draws nothing, schedules nothing)
            admitted[order.oid] = svc.sim.now
            admit(order)

        svc.admit = admit_and_note
        if replace == "orders":
            svc.pipeline.brain = defaults["orders"]()
        elif replace == "procurement":
            svc.procurement.brain = defaults["procurement"]()
        elif replace == "floor":
            model.tempo.brain = defaults["floor"]()

    model, trace_hash = runner(scenario, seed, until, setup)
    svc = _services(model)
    ours = {r[3] for r in svc.procurement.orders}  # procurement's own purchase orders (po numbers)
    landed: dict[int, list[float]] = {}
    for t, po, sku, _qty in svc.tools["restock"].delivered:
        if po in ours:
            landed.setdefault(int(sku), []).append(float(t))
    orders = model.book.orders
    outcome = tuple("completed" if o.delivered is not None else "failed" if o.failed is not None else "pending"
                    for o in orders)
    adm = tuple(admitted.get(o.oid) for o in orders)
    restocked = tuple(a is not None and any(t <= a for t in landed.get(o.shelf, ())) for o, a in zip(orders, adm))
    return Outcomes(replace, tuple(o.created for o in orders), tuple(o.shelf for o in orders), outcome,
                    tuple(o.reason or "" for o in orders), adm, restocked, trace_hash)


def replay(scenario, seed: int, *, runner: Runner, until: float | None = None, file: str = "<scenario>",
           replace: str | None = None, defaults: Mapping[str, Callable[[], Any]] | None = None) -> Outcomes:
    """One run of ``scenario`` at ``seed`` with ``replace``'s decisions (None: nobody's) on its default brain."""
    d = {**DEFAULTS, **(defaults or {})}
    u = _check(scenario, seed, until, file, list(d), d)
    if replace is not None and replace not in d:
        raise ValueError(f"replace must be one of {', '.join(d)} or None, got {replace!r}")
    return _run(scenario, seed, u, runner, replace, d)


# -- the study ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderCredit:
    """One (order, agent) point: the real run's outcome, the true contribution, each scheme's credit."""

    order: int
    outcome: str
    reason: str
    agent: str
    true: float
    assigned_global: float
    assigned_local: float


@dataclass
class PipelineCredit:
    """Per-order credit of the pipeline's agents for one seed (see the module docstring)."""

    seed: int
    until: float
    agents: tuple[str, ...]
    orders: list[OrderCredit]
    totals: dict[str, dict[str, float]]
    traceability: dict[str, float]
    completed: int
    failed: int
    pending: int
    created: int
    trace_hash: str
    without: dict[str, dict[str, int]] = field(default_factory=dict)

    def rows(self) -> dict[str, list]:
        """Column lists for the ``pipeline_credit`` store table (one row per order and agent)."""
        cols: dict[str, list] = {c: [] for c in PIPELINE_CREDIT.columns}
        for r in self.orders:
            for c, v in (("seed", self.seed), ("order", r.order), ("outcome", r.outcome), ("reason", r.reason),
                         ("agent", r.agent), ("true", r.true), ("assigned_global", r.assigned_global),
                         ("assigned_local", r.assigned_local)):
                cols[c].append(v)
        return cols

    def flips(self, agent: str) -> list[int]:
        """Orders whose outcome ``agent``'s replacement flipped (true contribution not 0)."""
        return [r.order for r in self.orders if r.agent == agent and r.true != 0]


def _local(agent: str, real: Outcomes, i: int) -> float:
    if agent == "orders":
        return float(real.admitted[i] is not None)
    if agent == "procurement":
        return float(real.restocked[i])
    return float(real.outcome[i] == "completed")  # floor: it delivered the order


def pipeline_credit(scenario, seed: int, *, runner: Runner, until: float | None = None, file: str = "<scenario>",
                    agents: Sequence[str] = AGENTS,
                    defaults: Mapping[str, Callable[[], Any]] | None = None) -> PipelineCredit:
    """Each agent's true contribution to each order of one seed, beside its global and local credit.

    ``scenario``: a validated scenario object with ``[pipeline]`` and ``[warehouse] orders``
    (ScenarioError, one line, otherwise); ``runner``: see :data:`Runner`; ``until``: the run's
    length (default: the scenario's); ``agents``: whose decisions are replaced, one re-run each;
    ``defaults``: default brains by agent (a factory each), over :data:`DEFAULTS`."""
    d = {**DEFAULTS, **(defaults or {})}
    agents = tuple(agents)
    u = _check(scenario, seed, until, file, agents, d)
    real = _run(scenario, seed, u, runner, None, d)
    y_real = real.completed()
    n = len(y_real)
    cf: dict[str, Outcomes] = {}
    for a in agents:
        o = _run(scenario, seed, u, runner, a, d)
        if o.created != real.created or o.shelf != real.shelf:  # the same orders in every run, or no comparison
            raise RuntimeError(f"common random numbers broken: the run without {a!r} saw other orders "
                               f"({len(o.created)} against {n})")
        cf[a] = o
    rows: list[OrderCredit] = []
    totals = {a: {"true": 0.0, "assigned_global": 0.0, "assigned_local": 0.0} for a in agents}
    assigned: dict[str, list[float]] = {s: [] for s in SCHEMES}
    truth: list[float] = []
    y_without = {a: cf[a].completed() for a in agents}
    for i in range(n):
        for a in agents:
            t = float(y_real[i] - y_without[a][i])
            g, loc = float(y_real[i]), _local(a, real, i)
            rows.append(OrderCredit(i, real.outcome[i], real.reason[i], a, t, g, loc))
            totals[a]["true"] += t
            totals[a]["assigned_global"] += g
            totals[a]["assigned_local"] += loc
            truth.append(t)
            assigned["global"].append(g)
            assigned["local"].append(loc)
    trace = {s: traceability(assigned[s], truth) for s in SCHEMES}
    counts = real.counts()
    return PipelineCredit(int(seed), u, agents, rows, totals, trace, counts["completed"], counts["failed"],
                          counts["pending"], n, real.trace_hash, {a: cf[a].counts() for a in agents})
