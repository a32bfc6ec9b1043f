"""Sweeps: one base scenario, parameters varied by dotted path, replications with common random numbers.

A sweep file (TOML) names a base scenario and what to vary::

    name = "robots-small"
    base = "../warehouse-small-event.toml"   # relative to the sweep file
    until = 900.0                           # optional: overrides the base's length
    replications = 5                        # per point
    seed = 1                                # replication r runs with seed + r in EVERY point (CRN)
    metrics = ["throughput_per_hour", "order_latency.p99", "deadlocks"]

    [grid]                                  # every combination (a full factorial) ...
    "warehouse.robots" = [2, 4, 8, 16, 32, 64]

    [lhs]                                   # ... or a Latin hypercube over ranges
    points = 20
    seed = 7
    "links.wireless.delay.mean" = [0.001, 0.2]
    "warehouse.robots" = [2, 32]            # two integers: integers are drawn

Every point is validated (and its run length checked against the event budget)
before anything runs. Tasks (point, replication) run on a backend: a local
process pool or Ray (:mod:`desim.app.sweep_backends`); the coordinator, never a
worker, writes each finished task to the store (table ``sweep_points``) as it
arrives, so an interrupted sweep loses no finished point and running the same
sweep again resumes it: finished tasks are skipped.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
import time
import tomllib
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from desim.analysis import blowup, knee, mean_ci, mean_ci_nonneg, paired_diff_ci, rise_from_zero
from desim.app.runner import prepare, run
from desim.app.sweep_backends import backend  # noqa: F401  (re-exported: desim.app.sweep.backend(name, ...))
from desim.scenario import MAX_SEED, MAX_UNTIL, ScenarioError, error_of, validate
from desim.store import declare_table

SWEEP_POINTS = "sweep_points"
DEFAULT_METRICS = ("throughput_per_hour", "order_latency.p99", "deadlocks")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?)*$")


SWEEP_TABLE = declare_table(SWEEP_POINTS, {"point": pa.int64(), "rep": pa.int64(), "seed": pa.int64(), "params": pa.string(),
                                 "metrics": pa.string(), "trace_hash": pa.string(), "wall_s": pa.float64()},
                  required=("point", "rep", "seed", "params", "metrics"))


# -- the sweep file ----------------------------------------------------------------------
class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class LhsCfg(_Spec):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, strict=True)
    points: int = Field(ge=2, le=10_000)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class SweepSpec(_Spec):
    name: str = Field(min_length=1, max_length=200)
    base: str = Field(min_length=1, description="the base scenario file, relative to the sweep file")
    until: Optional[float] = Field(None, gt=0, le=MAX_UNTIL)
    replications: int = Field(3, ge=1, le=1000)
    seed: int = Field(1, ge=0, le=MAX_SEED - 1000)
    metrics: list[str] = Field(list(DEFAULT_METRICS), min_length=1, max_length=50)
    grid: dict[str, list[Any]] = {}
    lhs: Optional[LhsCfg] = None

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in v.items():
            if not values:
                raise ValueError(f"{path}: give at least one value")
            if len(values) > 10_000:
                raise ValueError(f"{path}: at most 10,000 values")
        return v

    @model_validator(mode="after")
    def _one_design(self):
        if bool(self.grid) == (self.lhs is not None):
            raise ValueError("give exactly one of [grid] (values per path) or [lhs] (ranges per path)")
        if self.lhs is not None:
            ranges = self.lhs_ranges()
            if not ranges:
                raise ValueError("[lhs] needs at least one \"dotted.path\" = [low, high]")
            for path, r in ranges.items():
                if not (isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                   and math.isfinite(x) for x in r) and r[0] < r[1]):
                    raise ValueError(f"lhs.{path}: a range is [low, high] with low < high, got {r!r}")
        for path in self.paths():
            if not _PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted path like \"warehouse.robots\" or \"faults[0].duration\"")
        n = self.n_points()
        if n * self.replications > 100_000:
            raise ValueError(f"{n:,} points x {self.replications} replications is more than 100,000 runs")
        return self

    def lhs_ranges(self) -> dict[str, list]:
        return dict(self.lhs.model_extra or {}) if self.lhs is not None else {}

    def paths(self) -> list[str]:
        return list(self.grid) if self.grid else list(self.lhs_ranges())

    def n_points(self) -> int:
        return math.prod(len(v) for v in self.grid.values()) if self.grid else self.lhs.points


@dataclass(frozen=True)
class Task:
    """One run of a sweep: point ``point``'s scenario (plain data) with replication ``rep``'s seed."""

    point: int
    rep: int
    seed: int
    params: dict[str, Any]
    data: dict[str, Any]
    file: str
    base_dir: str
    until: float


@dataclass
class Sweep:
    """A checked sweep: its spec, points (parameter values) and tasks, and its identity (``key``)."""

    spec: SweepSpec
    file: str
    base_file: str
    base_text: str
    points: list[dict[str, Any]]
    tasks: list[Task]
    key: str = ""
    until: float = 0.0


def set_path(data: dict, path: str, value: Any) -> None:
    """Set ``data``'s field at the dotted ``path`` (``faults[0].duration``), creating tables on the way."""
    parts = path.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?", part)
        name, index = m.group(1), m.group(2)
        last = i == len(parts) - 1
        if index is None:
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
                if not isinstance(node, dict):
                    raise ScenarioError("", path, f"{name} is not a table")
        else:
            arr = node.get(name)
            k = int(index)
            if not isinstance(arr, list) or k >= len(arr):
                raise ScenarioError("", path, f"{name} has no entry [{k}] in the base scenario")
            if last:
                arr[k] = value
            else:
                node = arr[k]


def lhs_points(ranges: dict[str, list], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points of a Latin hypercube over ``ranges`` (one stratum per point on every axis, seeded);
    a range of two integers gives integers (each stratum rounded to its nearest integer)."""
    rng = np.random.default_rng(seed)
    cols = {}
    for path, (lo, hi) in ranges.items():
        u = (rng.permutation(n) + rng.random(n)) / n
        vals = lo + u * (hi - lo)
        if isinstance(lo, int) and isinstance(hi, int):
            cols[path] = [int(round(v)) for v in vals]
        else:
            cols[path] = [float(v) for v in vals]
    return [{p: cols[p][i] for p in ranges} for i in range(n)]


def _fail(file: str, field: str, problem: str):
    raise ScenarioError(file, field, problem)


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file, build every point's scenario and check each (validation, wiring, event budget);
    ScenarioError (one line) on the first problem, before anything runs."""
    p = Path(path)
    file = str(path)
    if not p.is_file():
        _fail(file, "", "no such file")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
        _fail(file, "", f"malformed TOML: {e}")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise error_of(e, file) from None
    base = (p.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
    if not base.is_file():
        _fail(file, "base", f"no such scenario file {spec.base!r}")
    base_text = base.read_text(encoding="utf-8")
    try:
        base_data = tomllib.loads(base_text)
    except tomllib.TOMLDecodeError as e:
        _fail(str(base), "", f"malformed TOML: {e}")
    if spec.grid:
        keys = list(spec.grid)
        points = [dict(zip(keys, combo)) for combo in product(*(spec.grid[k] for k in keys))]
    else:
        points = lhs_points(spec.lhs_ranges(), spec.lhs.points, spec.lhs.seed)
    until = spec.until if spec.until is not None else float(base_data.get("until", 60.0))
    tasks: list[Task] = []
    for i, params in enumerate(points):
        data = json.loads(json.dumps(base_data))  # a deep copy of plain data
        for path, value in params.items():
            try:
                set_path(data, path, value)
            except ScenarioError as e:
                _fail(file, f"{'grid' if spec.grid else 'lhs'}.{path}", e.problem)
        data["until"] = until
        where = f"{file} (point {i}: {_describe(params)})"
        sc = validate(data, where, base.parent)
        prepare(sc, where)  # wiring and the event budget, once per point
        for r in range(spec.replications):
            tasks.append(Task(i, r, spec.seed + r, params, data, str(base), str(base.parent), until))
    key = hashlib.blake2b(json.dumps([spec.model_dump(mode="json"), base_text], sort_keys=True).encode(),
                          digest_size=8).hexdigest()
    return Sweep(spec, file, str(base), base_text, points, tasks, key, until)


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# -- one task, in a worker ---------------------------------------------------------------------
def flat_metrics(summary: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a run summary, by dotted key (``order_latency.p99``); booleans as 0/1. Wall-clock
    times are left out (they are the machine's, not the run's: a run's figures depend only on its seed)."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_metrics(v, key + "."))
        elif isinstance(v, bool):
            out[key] = float(v)
        elif isinstance(v, (int, float)) and key != "seed" and not key.endswith("wall_s"):  # wall time: not a result
            out[key] = float(v)
    return out


def run_task(task: Task) -> dict[str, Any]:
    """Run one task (in a worker: no store, no shared state) and return its result row."""
    sc = validate(task.data, task.file, Path(task.base_dir))
    t0 = time.perf_counter()
    s = run(sc, task.seed, task.until, file=task.file).summary
    return {"point": task.point, "rep": task.rep, "seed": task.seed, "params": json.dumps(task.params, sort_keys=True),
            "metrics": json.dumps(flat_metrics(s), sort_keys=True), "trace_hash": s["trace_hash"],
            "wall_s": time.perf_counter() - t0}


# -- the coordinator ---------------------------------------------------------------------------
def find_resumable(store, sweep: Sweep) -> Optional[str]:
    """The newest sweep run in ``store`` with this sweep's identity (same spec and base), if any."""
    for r in store.list_runs(kind="sweep"):
        if (r.get("config") or {}).get("key") == sweep.key:
            return r["run_id"]
    return None


def finished(store, run_id: str) -> dict[tuple[int, int], dict]:
    """The tasks a sweep run already finished, by (point, rep)."""
    tbl = store.table(SWEEP_POINTS, run_id)
    rows = tbl.to_pylist() if tbl is not None else []
    return {(int(r["point"]), int(r["rep"])): r for r in rows}


def execute(sweep: Sweep, store, backend, *, progress: Callable[[int, int], None] | None = None,
            on_start: Callable[[str, int, int], None] | None = None, fresh: bool = False) -> tuple[str, list[dict]]:
    """Run a sweep's unfinished tasks on ``backend``, recording each result as it arrives.

    A sweep is resumed when the store holds one with the same identity (spec and base scenario text;
    not the code: after changing desim, pass ``fresh=True``, or ``--fresh``, to run everything again).
    Returns (sweep run id, every result row, finished before or now). The sweep's run row is
    'complete' when every task has a result; Ctrl-C marks it 'interrupted' (finished tasks kept)."""
    rid = None if fresh else find_resumable(store, sweep)  # fresh: a new sweep run (e.g. after a code change)
    config = {"key": sweep.key, "file": sweep.file, "base": sweep.base_file, "points": sweep.points,
              "replications": sweep.spec.replications, "seed": sweep.spec.seed, "until": sweep.until,
              "metrics": sweep.spec.metrics, "paths": sweep.spec.paths(), "design": "grid" if sweep.spec.grid else "lhs"}
    if rid is None:
        rid = store.begin_run("sweep", scenario=sweep.spec.name, scenario_text=sweep.base_text, seed=sweep.spec.seed,
                              config=config)
    else:
        store.mark(rid, "running", reason=None)
    done = finished(store, rid)
    todo = [t for t in sweep.tasks if (t.point, t.rep) not in done]
    results = list(done.values())
    n = len(sweep.tasks)
    if on_start is not None:
        on_start(rid, len(done), n)
    try:
        for row in backend.map(run_task, todo):
            store.append(rid, SWEEP_POINTS, [row])  # as it arrives: a killed sweep loses no finished task
            results.append(row)
            if progress is not None:
                progress(len(results), n)
    except KeyboardInterrupt:
        store.mark(rid, "interrupted", reason=f"interrupted after {len(results)} of {n} runs")
        raise
    except BaseException as e:
        store.mark(rid, "failed", reason=f"{type(e).__name__}: {e}")
        raise
    store.finish_run(rid, "complete", summary={"runs": len(results), "points": len(sweep.points)})
    return rid, sorted(results, key=lambda r: (r["point"], r["rep"]))


def rows_of(results: Iterable[dict]) -> list[dict]:
    """Result rows with their parameters and metrics decoded into one flat dict each."""
    out = []
    for r in results:
        row = {"point": int(r["point"]), "rep": int(r["rep"]), "seed": int(r["seed"])}
        row.update(json.loads(r["params"]))
        row.update(json.loads(r["metrics"]))
        out.append(row)
    return out


def varied_paths(points: list[dict[str, Any]], paths: list[str]) -> list[str]:
    """The paths whose value differs between ``points`` (a grid's single-valued axes left out)."""
    return [p for p in paths if len({json.dumps(pt.get(p)) for pt in points}) > 1]


SURVIVORSHIP_MIN_SHARE = 0.9
"""A point's latency percentiles are flagged as survivorship-biased when fewer than this share of
its orders (all replications pooled) were completed: they are computed over completed orders only."""

UNITS: tuple[tuple[str, str], ...] = (  # (fnmatch pattern of a dotted key, unit); the first match wins
    ("throughput_per_hour", "deliveries per hour"),
    ("order_latency.*", "s"),
    ("deadlocks", "per run"), ("deadlocks_by_kind.*", "per run"), ("collisions", "per run"),
    ("deliveries", "per run"), ("blocked_moves", "per run"), ("retries", "per run"),
    ("corrupt_observations", "per run"), ("events", "events per run"),
    ("orders.created", "orders per run"), ("orders.completed", "orders per run"),
    ("orders.pending", "orders at the end of a run"), ("orders.failed.*", "orders per run"),
    ("messages.sent", "messages per run"), ("messages.delivered", "messages per run"),
    ("messages.duplicated", "messages per run"), ("messages.dropped.*", "messages per run"),
    ("robot_time_share.*", "share of robot time"), ("robot_time.*", "robot-seconds"),
    ("longest_stuck_s", "s"), ("longest_still_s", "s"), ("sim_time", "s"), ("robots", "robots"),
    ("warehouse.robots", "robots"), ("warehouse.zones", "zones"), ("topology.robots_per_zone", "robots per zone"),
    ("warehouse.orders.rate_per_hour", "orders per hour"), ("warehouse.orders.max_age", "s"),
    ("warehouse.obs_timeout", "s"), ("warehouse.durations.*", "s"),
    ("faults[[]*[]].duration", "s"), ("faults[[]*[]].at", "s"), ("faults[[]*[]].extra_delay", "s"),
    ("faults[[]*[]].period", "s"),
    ("links.*.delay.mean", "s"), ("links.*.delay.jitter", "s"), ("links.*.bandwidth", "bit/s"),
    ("links.*.loss.p", "probability"), ("links.*.loss.r", "probability"),
    ("until", "s"),
)


def unit_of(key: str) -> str:
    """The unit of a metric or a scenario path (``order_latency.p99`` -> ``"s"``), from :data:`UNITS`;
    ``""`` for a key it does not know (no unit shown rather than a wrong one)."""
    for pattern, unit in UNITS:
        if fnmatch.fnmatchcase(key, pattern):
            return unit
    return ""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _label(group: dict[str, Any]) -> str:
    return ", ".join(f"{p}={v:g}" if isinstance(v, float) else f"{p}={v}" for p, v in group.items())


def _survivorship(mine: list[dict]) -> dict | None:
    """The share of a point's orders completed (replications pooled) and its backlog, or None
    when its runs count no orders; ``flagged`` below :data:`SURVIVORSHIP_MIN_SHARE`."""
    created = [r.get("orders.created") for r in mine if _number(r.get("orders.created"))]
    if not created or sum(created) <= 0:
        return None
    completed = sum(float(r.get("orders.completed") or 0.0) for r in mine)
    pending = [float(r["orders.pending"]) for r in mine if _number(r.get("orders.pending"))]
    failed = [sum(float(v) for k, v in r.items() if k.startswith("orders.failed.") and _number(v)) for r in mine]
    share = completed / float(sum(created))
    return {"completed_share": share, "completed": completed / len(created), "created": sum(created) / len(created),
            "pending": sum(pending) / len(pending) if pending else None, "failed": sum(failed) / len(failed),
            "flagged": share < SURVIVORSHIP_MIN_SHARE}


def summarise(sweep: Sweep | dict, run_id: str, results: list[dict], level: float = 0.95) -> dict:
    """The sweep's figures, as one JSON-able dict.

    - ``points``: per point, its ``params``, and per headline metric the mean and its ``level``
      interval across replications. A metric whose values are all >= 0 (counts, rates, latencies)
      gets the Student-t interval clipped at 0 (:func:`desim.analysis.mean_ci_nonneg`), any other
      the plain Student-t one; ``intervals`` names each metric's. ``survivorship``: the share of
      orders completed and the backlog (``orders.pending``, mean per run), ``flagged`` when under
      :data:`SURVIVORSHIP_MIN_SHARE`: latency percentiles cover completed orders only (None when
      the runs count no orders).
    - ``units``: the unit of every metric and path (``""``: unknown).
    - ``x``: the first numeric varied path (the load axis); ``curves``: one per combination of the
      other varied paths (``group``, e.g. ``{"warehouse.brain": "greedy"}``, ``label``, its point
      indices in x order), each with the ``knee`` of the first metric (saturation), the ``blowups``
      of the others (more than 3x a non-zero value at the smallest x) and their ``rises`` (from 0
      at the smallest x: ``{"from_x", "x", "y"}``). With one curve ``knee`` and ``blowups`` are
      also top-level keys.
    - ``paired``: with several curves, each curve minus the first (baseline) at every x, per
      metric, paired by replication (:func:`desim.analysis.paired_diff_ci`).
    - ``findings``: the sentences a planner reads first; ``cautions``: what limits them (the
      survivorship of latency figures).
    """
    cfg = sweep if isinstance(sweep, dict) else {"name": sweep.spec.name, "paths": sweep.spec.paths(),
                                                "metrics": list(sweep.spec.metrics), "points": sweep.points,
                                                "replications": sweep.spec.replications,
                                                "design": "grid" if sweep.spec.grid else "lhs"}
    rows = rows_of(results)
    metrics, paths = list(cfg["metrics"]), list(cfg["paths"])
    nonneg = {}
    for m in metrics:
        vals = [float(r[m]) for r in rows if _number(r.get(m)) and not math.isnan(r[m])]
        nonneg[m] = bool(vals) and min(vals) >= 0
    points = []
    for i, params in enumerate(cfg["points"]):
        mine = [r for r in rows if r["point"] == i]
        figures = {}
        for m in metrics:
            vals = [r.get(m) for r in mine]
            c = mean_ci_nonneg(vals, level) if nonneg[m] else mean_ci(vals, level)
            figures[m] = {"mean": _finite(c.mean), "low": _finite(c.low) if c.n else None, "high": _finite(c.high),
                          "n": c.n, "half_width": c.half_width}
        points.append({"point": i, "params": params, "n": len(mine), "metrics": figures,
                       "survivorship": _survivorship(mine)})
    varied = varied_paths(cfg["points"], paths)
    out = {"sweep_id": run_id, "name": cfg.get("name", ""), "paths": paths, "metrics": metrics, "points": points,
           "runs": len(results), "replications": cfg.get("replications"), "level": level, "findings": [], "cautions": [],
           "varied": varied, "units": {k: unit_of(k) for k in paths + metrics},
           "intervals": {m: "student-t, clipped at 0" if nonneg[m] else "student-t" for m in metrics},
           "survivorship_min_share": SURVIVORSHIP_MIN_SHARE, "x": None, "curves": [], "paired": []}
    numeric = [p for p in varied if all(_number(pt["params"].get(p)) for pt in points)]
    if numeric and (len(varied) == 1 or cfg.get("design", "grid") == "grid"):
        x = out["x"] = numeric[0]
        others = [p for p in varied if p != x]
        groups: dict[str, list[dict]] = {}
        for pt in points:
            groups.setdefault(json.dumps([pt["params"].get(p) for p in others]), []).append(pt)
        for members in groups.values():
            group = {p: members[0]["params"].get(p) for p in others}
            out["curves"].append(_curve(sorted(members, key=lambda pt: pt["params"][x]), x, group, metrics, out))
        if len(out["curves"]) == 1:
            out["knee"], blowups = out["curves"][0]["knee"], out["curves"][0]["blowups"]
            if blowups:
                out["blowups"] = blowups
        else:
            out["paired"] = _paired(out["curves"], points, rows, x, metrics, level)
    out["findings"].sort(key=lambda f: not f.startswith("saturation"))  # the saturation points first (stable)
    _survivorship_finding(out)
    return out


def _curve(order: list[dict], x: str, group: dict, metrics: list[str], out: dict) -> dict:
    """One curve (the points of one combination of the other varied paths, in x order): its knee,
    blow-ups and rises from 0, with their findings appended to ``out["findings"]``."""
    label = _label(group)
    where = f" ({label})" if label else ""
    xs = [float(pt["params"][x]) for pt in order]
    curve = {"group": group, "label": label, "points": [pt["point"] for pt in order], "knee": None, "blowups": {},
             "rises": {}}
    first = metrics[0]
    ys = [pt["metrics"][first]["mean"] for pt in order]
    fmt = _value_fmt
    if all(y is not None for y in ys):
        k = knee(xs, ys)
        if k is not None:
            curve["knee"] = {"path": x, "metric": first, "x": k.x, "y": k.y, "method": k.method,
                             "peak_x": k.peak_x, "peak_y": k.peak_y}
            out["findings"].append(f"saturation{where}: {first} stops growing at {x} = {k.x:g} ({first} "
                                   f"{fmt(k.y, first)}); its peak is {fmt(k.peak_y, first)} at {x} = {k.peak_x:g} "
                                   f"({k.method})")
    for m in metrics[1:]:
        ms = [pt["metrics"][m]["mean"] for pt in order]
        if not ms or any(v is None for v in ms):
            continue
        if ms[0] == 0:
            r = rise_from_zero(xs, ms)
            if r is not None:
                top = max(range(len(ms)), key=lambda i: ms[i])
                curve["rises"][m] = {"from_x": xs[0], "x": r[0], "y": r[1]}
                tail = f" (and {fmt(ms[top], m)} at {x} = {xs[top]:g})" if xs[top] != r[0] else ""
                out["findings"].append(f"{m}{where} rises from 0 (at {x} = {xs[0]:g}) to {fmt(r[1], m)} at "
                                       f"{x} = {r[0]:g}{tail}")
            continue
        b = blowup(xs, ms)
        if b is not None:
            curve["blowups"][m] = b
            out["findings"].append(f"{m}{where} blows up (more than 3x its {fmt(ms[0], m)} at {x} = {xs[0]:g}) "
                                   f"from {x} = {b:g}")
    return curve


def _value_fmt(v: float, key: str) -> str:
    unit = unit_of(key)
    return f"{v:,.4g}" + (f" {unit}" if unit else "")


def _paired(curves: list[dict], points: list[dict], rows: list[dict], x: str, metrics: list[str],
            level: float) -> list[dict]:
    """Each curve minus the baseline (the first) at every x both have, per metric, paired by replication."""
    base = curves[0]
    base_at = {points[i]["params"][x]: i for i in base["points"]}
    reps = {}
    for r in rows:
        reps.setdefault(r["point"], {})[r["rep"]] = r
    out = []
    for c in curves[1:]:
        for i in c["points"]:
            xv = points[i]["params"][x]
            j = base_at.get(xv)
            if j is None:
                continue
            a_rows, b_rows = reps.get(j, {}), reps.get(i, {})
            common = sorted(set(a_rows) & set(b_rows))
            for m in metrics:
                a = [a_rows[k].get(m) for k in common]
                b = [b_rows[k].get(m) for k in common]
                if len(common) < 2 or any(v is None for v in a + b):
                    continue
                d = paired_diff_ci(a, b, level)
                out.append({"x": xv, "group": c["group"], "label": c["label"], "baseline": base["label"],
                            "point": i, "baseline_point": j, "metric": m, "mean": _finite(d.mean),
                            "low": _finite(d.low), "high": _finite(d.high), "n": d.n,
                            "mean_a": _finite(d.mean_a), "mean_b": _finite(d.mean_b),
                            "unpaired_half_width": _finite(d.unpaired_half_width), "significant": d.significant})
    return out


def _survivorship_finding(out: dict) -> None:
    """A caution naming the points whose latency figures cover too few of their orders."""
    latency = [m for m in out["metrics"] if m.startswith("order_latency.")]
    flagged = [pt for pt in out["points"] if (pt.get("survivorship") or {}).get("flagged")]
    if not latency or not flagged:
        return
    lowest = min(flagged, key=lambda pt: pt["survivorship"]["completed_share"])["survivorship"]
    where = "; ".join(_label({p: pt["params"].get(p) for p in out["varied"]}) or f"point {pt['point']}"
                      for pt in flagged)
    pending = lowest["pending"]
    out["cautions"].append(
        f"survivorship: {', '.join(latency)} at {len(flagged)} of {len(out['points'])} points ({where}) "
        f"cover completed orders only, under {SURVIVORSHIP_MIN_SHARE:.0%} of those created (as few as "
        f"{lowest['completed_share']:.0%}" + (f", backlog {pending:,.0f} pending" if pending is not None else "")
        + "): the orders not delivered are left out, so under a backlog these percentiles understate latency")


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None
