"""Runs a scenario inside a store transaction: the run row, its tables, its status.

A run that raises is marked ``failed`` and one interrupted by Ctrl-C
``interrupted`` (by the store's context manager); only a run that finished
and passed its conservation checks is ``complete``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import tomli_w

from desim.network.tables import network_tables
from desim.app import rules
from desim.app.runner import build, check_budget, execute
from desim.scenario import ScenarioBase, to_data
from desim.store import DEFAULT_STORE, Store


def record_run(sc: ScenarioBase, scenario_path: Path | None, store_path: Path | None, *, seed: int | None = None,
               until: float | None = None, progress: Callable[[float], None] | None = None,
               brain: Any = None, scenario_text: str | None = None) -> dict:
    """Run ``sc`` and record it in the store; returns the run's summary.

    The world is built (and the brain resolved) before the run's row is written, so a bad
    ``brain`` spec is one ScenarioError line and nothing is recorded. ``scenario_text``: the TOML
    to store when the scenario did not come from ``scenario_path`` as is (the what-if page)."""
    file = str(scenario_path) if scenario_path is not None else "<scenario>"
    seed_used = sc.seed if seed is None else seed
    until_used = sc.until if until is None else until
    world = build(sc, seed_used, file=file, record_delays=True, brain=brain)
    if until_used != sc.until:
        check_budget(world.plan, until_used, "--until")  # before the run's row is written
    text = scenario_text if scenario_text is not None else (Path(scenario_path).read_text() if scenario_path else tomli_w.dumps(to_data(sc)))
    config = {"until": until_used, "brain": brain if isinstance(brain, str) else None, "path": file}
    store = Store(store_path or DEFAULT_STORE)
    with store.run("run", scenario=sc.name, scenario_text=text, seed=seed_used, brain=world.brain_spec,
                   config=config) as handle:
        result = execute(world, until_used, run_id=handle.run_id, progress=progress)
        tables = network_tables(result.network)
        if result.model is not None:  # checked (desim.app.rules) before a row is written: a bad table fails the run
            own = rules.check_tables(world.plan.model_name, result.model.tables(), file)
            for name, rows in own.items():
                if name in tables:  # a shared table (events): the model's rows after the network's
                    tables[name] = {k: list(tables[name][k]) + list(rows[k]) for k in tables[name]}
                else:
                    tables[name] = rows
        for name, rows in tables.items():
            if rows and len(next(iter(rows.values()))):
                handle.append(name, rows)
        handle.summary.update(result.summary)
    return result.summary
