"""The rules a model's results follow, checked by the wiring layer (``docs/models.md``).

A model hands the runner three things after a run: ``summary()`` (headline figures, merged into the
run's summary beside the runner's own), ``tables()`` (rows for the store) and, through its
:class:`~desim.registry.ModelSpec`, how to print and headline them. The runner owns some names, so:

- **Reserved figures** (:data:`RUNNER_FIGURES`): a model figure of that name is refused, unless the
  model's spec lists it in ``refines`` (the warehouse adds its robots' retries to ``retries``).
  A model that declares its ``figures`` has a clash refused when the scenario is checked, before
  anything runs; otherwise when the run ends, before it is recorded as complete (it is ``failed``).
- **Balances**: a figure whose name ends in ``_conserved`` is the model's proof of a balance of its
  own (orders created = completed + failed + pending ...). It must be ``true`` or ``false``; ``false``
  fails the run with one line naming the figure and the figure it balances.
- **Reserved tables** (:data:`NETWORK_TABLES`): the network writes these for every run. A model
  table of the same name is refused, except ``events``, which is shared: a model may add rows whose
  columns are some of ``t, kind, agent, detail`` (``t`` and ``kind`` included).
- **Tables** are ``{name: {column: list}}`` with columns of equal length.

Every refusal is a :class:`ModelRuleError`: one line, naming the model, the figure or table and what to do.
"""
from __future__ import annotations

import math
from typing import Any

from desim.network.tables import EVENTS, NET_DELAYS, NET_FLOW, NET_LATENCY, NET_LINKS, NET_NODES
from desim.scenario import ScenarioError

RUNNER_FIGURES = frozenset({
    "run_id", "scenario", "seed", "sim_time", "wall_s", "events", "trace_hash", "messages", "conservation_ok",
    "retries", "jitter_buffer", "faults", "brain", "model", "headline",
})
"""Summary keys the runner writes for every run (a model figure may not take one of these names)."""

NETWORK_TABLES = frozenset(t.name for t in (NET_NODES, NET_LINKS, NET_DELAYS, NET_FLOW, NET_LATENCY, EVENTS))
"""Tables the network writes for every recorded run."""

SHARED_TABLES = {EVENTS.name: EVENTS}
"""Network tables a model may add rows to (with some of their columns)."""

MAX_PRINTED = 40
"""Model figures ``desim run`` prints by default (the rest: ``--json`` or ``desim runs show``)."""


class ModelRuleError(ScenarioError):
    """A model's results break one of the rules above; ``str()`` is one line."""


def declared(value: Any, sc: Any, prepared: Any) -> list[str] | None:
    """A spec's ``figures`` / ``tables`` declaration as a list of names (None: not declared)."""
    if value is None:
        return None
    names = value(sc, prepared) if callable(value) else value
    return [str(n) for n in names]


def check_declared(name: str, spec: Any, sc: Any, prepared: Any, file: str) -> None:
    """Before the run: the model's declared figures and tables against the reserved names."""
    figures = declared(spec.figures, sc, prepared)
    if figures is not None:
        for key in figures:
            _check_figure_name(name, spec, key, file)
    tables = declared(spec.tables, sc, prepared)
    if tables is not None:
        for table in tables:
            if table in NETWORK_TABLES and table not in SHARED_TABLES:
                raise ModelRuleError(file, "", _table_clash(name, table))


def _check_figure_name(name: str, spec: Any, key: Any, file: str) -> None:
    if not isinstance(key, str) or not key:
        raise ModelRuleError(file, "", f"model {name!r}: summary figure names are non-empty strings, got {key!r}")
    if key in RUNNER_FIGURES and key not in spec.refines:
        raise ModelRuleError(file, "", f"model {name!r}: summary figure {key!r} is the runner's (reserved: "
                             f"{', '.join(sorted(RUNNER_FIGURES))}); rename it, or put the model's figures under a key of its own")


def _table_clash(name: str, table: str) -> str:
    return (f"model {name!r}: table {table!r} is the network's (reserved: {', '.join(sorted(NETWORK_TABLES))}; "
            f"a model may add rows to 'events' with columns t, kind, agent, detail); rename it")


def check_figures(name: str, spec: Any, sc: Any, prepared: Any, figures: Any, file: str) -> dict:
    """After the run, before it is recorded: the model's summary against the rules; returns it."""
    if not isinstance(figures, dict):
        raise ModelRuleError(file, "", f"model {name!r}: summary() must return a dict, got {type(figures).__name__}")
    allowed = declared(spec.figures, sc, prepared)
    for key, value in figures.items():
        _check_figure_name(name, spec, key, file)
        if allowed is not None and key not in allowed:
            raise ModelRuleError(file, "", f"model {name!r}: summary figure {key!r} is not among the figures its "
                                 "ModelSpec declares; declare it (figures=...) or leave it out")
        if key.endswith("_conserved"):
            if not isinstance(value, bool):
                raise ModelRuleError(file, "", f"model {name!r}: {key} must be true or false (a balance the model "
                                     f"proves), got {_short(value)}")
            if not value:
                base = key.removesuffix("_conserved")
                shown = f" ({base} = {_short(figures[base])})" if base in figures else ""
                raise ModelRuleError(file, "", f"conservation violated: model {name!r} reports {key} = false{shown}")
    return figures


def check_tables(name: str, tables: Any, file: str) -> dict[str, dict[str, list]]:
    """A model's ``tables()`` against the rules; returns them with shared tables' missing columns filled."""
    if not isinstance(tables, dict):
        raise ModelRuleError(file, "", f"model {name!r}: tables() must return a dict of tables, got {type(tables).__name__}")
    out: dict[str, dict[str, list]] = {}
    for table, rows in tables.items():
        if not isinstance(table, str) or not table:
            raise ModelRuleError(file, "", f"model {name!r}: table names are non-empty strings, got {table!r}")
        if not isinstance(rows, dict) or not all(isinstance(c, str) for c in rows):
            raise ModelRuleError(file, "", f"model {name!r}: table {table!r} must be a dict of column name -> list")
        lengths = {c: _length(v) for c, v in rows.items()}
        if None in lengths.values():
            bad = next(c for c, n in lengths.items() if n is None)
            raise ModelRuleError(file, "", f"model {name!r}: table {table!r} column {bad!r} is not a list of values")
        if len(set(lengths.values())) > 1:
            raise ModelRuleError(file, "", f"model {name!r}: table {table!r} has columns of different lengths "
                                 f"({', '.join(f'{c}: {n}' for c, n in lengths.items())})")
        if table in NETWORK_TABLES:
            shared = SHARED_TABLES.get(table)
            if shared is None:
                raise ModelRuleError(file, "", _table_clash(name, table))
            extra = [c for c in rows if c not in shared.columns]
            missing = [c for c in shared.required if c not in rows]
            if extra or missing:
                raise ModelRuleError(file, "", f"model {name!r}: rows added to the shared table {table!r} take its "
                                     f"columns {', '.join(shared.columns)} (required {', '.join(shared.required)}); "
                                     + (f"unknown: {', '.join(extra)}" if extra else f"missing: {', '.join(missing)}"))
            n = next(iter(lengths.values()), 0)
            rows = {c: list(rows[c]) if c in rows else [None] * n for c in shared.columns}
        out[table] = rows
    return out


def _length(v: Any) -> int | None:
    if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__len__"):
        return None
    return len(v)


def _short(v: Any, limit: int = 120) -> str:
    text = " ".join(repr(v).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- what `desim run` prints of a model's figures (when its spec has no printout of its own) ---

def fmt(v: Any) -> str:
    """A figure as a person reads it: thousands separated, at most 4 significant digits after the point."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else ("yes" if v else "no")
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    text = " ".join(str(v).split())
    return text if len(text) <= 200 else text[:199] + "…"


def flatten(d: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Nested figures as ``(dotted.key, value)`` rows; short lists of plain values joined, others counted."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and depth < 4:
            out += flatten(v, key + ".", depth + 1)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float, str)) for x in v) and len(v) <= 8:
            out.append((key, ", ".join(fmt(x) for x in v)))
        elif isinstance(v, (dict, list, tuple)):
            out.append((key, f"{len(v)} items" if v else "-"))
        else:
            out.append((key, v))
    return out


def model_figures(summary: dict) -> dict:
    """The model's own figures in a run's summary (everything the runner did not write)."""
    return {k: v for k, v in summary.items() if k not in RUNNER_FIGURES}


def default_printout(summary: dict, limit: int = MAX_PRINTED) -> list[tuple[str, str]]:
    """Every model figure, flattened, as ``(label, text)`` rows (at most ``limit``, then a count)."""
    rows = [(" ".join(str(k).split()) or repr(k), fmt(v)) for k, v in flatten(model_figures(summary))]
    if len(rows) > limit:
        rows = rows[:limit] + [("…", f"{len(rows) - limit} more figures (desim run --json, desim runs show)")]
    return rows


def printout_of(spec: Any, summary: dict) -> list[tuple[str, str]]:
    """The rows ``desim run`` prints for the model: its spec's ``printout``, or every figure."""
    if spec is not None and spec.printout is not None:
        try:
            return [(str(a), str(b)) for a, b in spec.printout(summary)]
        except Exception:  # a printout bug must not hide a recorded run's figures
            pass
    return default_printout(summary)


def headline_of(spec: Any, summary: dict) -> str | None:
    """A few words for ``desim runs list``: the spec's ``headline``, or None."""
    if spec is None or spec.headline is None:
        return None
    try:
        text = spec.headline(summary)
    except Exception:
        return None
    return " ".join(str(text).split())[:120] if text else None
