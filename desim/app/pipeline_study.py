"""Credit in the order pipeline, wired: :func:`pipeline_credit` runs the study on the desim runner.

The measurement lives in the models layer (:mod:`desim.models.warehouse.pipeline_credit`), which
cannot import the wiring; this module hands it the runner. API::

    pipeline_credit(scenario, seed, *, until=None, file="<scenario>") -> PipelineCredit
    replay(scenario, seed, *, until=None, file="<scenario>", replace=None) -> Outcomes
    runner(file="<scenario>") -> Runner   # (scenario, seed, until, setup) -> (model, trace_hash)
"""
from __future__ import annotations

from typing import Any

from desim.app.runner import build, execute
from desim.models.warehouse import pipeline_credit as _pc
from desim.models.warehouse.pipeline_credit import (AGENTS, DEFAULTS, PIPELINE_CREDIT, Outcomes, PipelineCredit,
                                                    Runner)

__all__ = ["AGENTS", "DEFAULTS", "PIPELINE_CREDIT", "Outcomes", "PipelineCredit", "pipeline_credit", "replay",
           "runner"]


def runner(file: str = "<scenario>") -> Runner:
    """A :data:`~desim.models.warehouse.pipeline_credit.Runner` on desim's runner: build (the scenario is
    prepared once, its checks and event budget included), ``setup(model)``, run to ``until`` with the
    runner's conservation checks; returns the model and the run's trace hash."""

    def run_one(scenario: Any, seed: int, until: float, setup) -> tuple[Any, str]:
        world = build(scenario, seed, file=file)
        setup(world.model)
        res = execute(world, until)
        return res.model, res.summary["trace_hash"]

    return run_one


def pipeline_credit(scenario, seed: int, *, until: float | None = None, file: str = "<scenario>") -> PipelineCredit:
    """Each pipeline agent's true contribution to each order (counterfactual re-runs, common random numbers)
    beside its global and local credit; ScenarioError (one line) for a scenario without ``[pipeline]``."""
    return _pc.pipeline_credit(scenario, seed, runner=runner(file), until=until, file=file)


def replay(scenario, seed: int, *, until: float | None = None, file: str = "<scenario>",
           replace: str | None = None) -> Outcomes:
    """One run's order outcomes with ``replace``'s decisions (None: nobody's) on its default brain."""
    return _pc.replay(scenario, seed, runner=runner(file), until=until, file=file, replace=replace)
