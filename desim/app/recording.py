"""Runs a scenario inside a store transaction: the run row, its tables, its status.

A run that raises is marked ``failed`` and one interrupted by Ctrl-C
``interrupted`` (by the store's context manager); only a run that finished
and passed its conservation checks is ``complete``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from desim.network.tables import network_tables
from desim.scenario import Scenario
from desim.store import DEFAULT_STORE, Store


def record_run(sc: Scenario, scenario_path: Path, store_path: Path | None, *, seed: int | None = None,
               until: float | None = None, progress: Callable[[float], None] | None = None,
               overrides: dict | None = None) -> dict:
    """Run ``sc`` and record it in the store; returns the run's summary."""
    from desim.app.runner import run as run_scenario

    store = Store(store_path or DEFAULT_STORE)
    seed_used = sc.seed if seed is None else seed
    brain = (overrides or {}).get("brain") or (sc.warehouse or {}).get("brain")
    text = Path(scenario_path).read_text()
    config = {"until": until or sc.until, "overrides": overrides or {}, "path": str(scenario_path)}
    with store.run("run", scenario=sc.name, scenario_text=text, seed=seed_used, brain=brain, config=config) as handle:
        result = run_scenario(sc, seed_used, until, file=str(scenario_path), record_delays=True, run_id=handle.run_id,
                              progress=progress, overrides=overrides)
        tables = network_tables(result.network)
        if result.model is not None:
            for name, rows in result.model.tables().items():
                if name in tables:
                    for k in tables[name]:
                        tables[name][k] = list(tables[name][k]) + list(rows[k])
                else:
                    tables[name] = rows
        for name, rows in tables.items():
            if rows and len(next(iter(rows.values()))):
                handle.append(name, rows)
        handle.summary.update(result.summary)
    return result.summary
