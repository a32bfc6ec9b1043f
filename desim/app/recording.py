"""Runs a scenario inside a store transaction: the run row, its tables, its status.

A run that raises is marked ``failed`` and one interrupted by Ctrl-C
``interrupted`` (by the store's context manager); only a run that finished
and passed its conservation checks is ``complete``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from desim.scenario import Scenario
from desim.store import DEFAULT_STORE, Store

MAX_DELAYS_PER_LINK = 2000


def network_tables(net) -> dict[str, dict]:
    """Per-link figures, delay samples and the fault log of a finished network."""
    links = {"src": [], "dst": [], "sent": [], "mean_delay": [], "p99_delay": [], "expected_delay": [], "loss_rate": []}
    delays = {"src": [], "dst": [], "delay": []}
    for (u, v), link in sorted(net.links.items()):
        d = np.asarray(link.delays if link.delays is not None else [], dtype=float)
        links["src"].append(u)
        links["dst"].append(v)
        links["sent"].append(link.sent)
        links["mean_delay"].append(float(d.mean()) if d.size else None)
        links["p99_delay"].append(float(np.percentile(d, 99)) if d.size else None)
        links["expected_delay"].append(link.spec.expected_latency())
        links["loss_rate"].append(link.spec.loss.rate)
        if d.size:
            step = max(1, d.size // MAX_DELAYS_PER_LINK)
            sample = d[::step][:MAX_DELAYS_PER_LINK]
            delays["src"] += [u] * sample.size
            delays["dst"] += [v] * sample.size
            delays["delay"] += sample.tolist()
    faults = {"t": [], "kind": [], "agent": [], "detail": []}
    for t, event, kind, detail in net.fault_log:
        faults["t"].append(float(t))
        faults["kind"].append(f"fault_{event}")
        faults["agent"].append("")
        faults["detail"].append(f'{{"fault": "{kind}", "target": "{detail}"}}')
    return {"net_links": links, "net_delays": delays, "events": faults}


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
