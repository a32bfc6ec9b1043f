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

from desim.analysis import blowup, knee, mean_ci
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


def summarise(sweep: Sweep | dict, run_id: str, results: list[dict], level: float = 0.95) -> dict:
    """The sweep's figures: per point and headline metric, the mean and its ``level`` interval across
    replications; for a one-path numeric sweep, the saturation point of the first metric (the knee
    where adding more stops adding output) and where the others blow up."""
    cfg = sweep if isinstance(sweep, dict) else {"name": sweep.spec.name, "paths": sweep.spec.paths(),
                                                "metrics": list(sweep.spec.metrics), "points": sweep.points,
                                                "replications": sweep.spec.replications}
    rows = rows_of(results)
    metrics, paths = list(cfg["metrics"]), list(cfg["paths"])
    points = []
    for i, params in enumerate(cfg["points"]):
        mine = [r for r in rows if r["point"] == i]
        figures = {}
        for m in metrics:
            c = mean_ci([r.get(m) for r in mine], level)
            figures[m] = {"mean": _finite(c.mean), "low": _finite(c.low), "high": _finite(c.high), "n": c.n,
                          "half_width": c.half_width}
        points.append({"point": i, "params": params, "n": len(mine), "metrics": figures})
    out = {"sweep_id": run_id, "name": cfg.get("name", ""), "paths": paths, "metrics": metrics, "points": points,
           "runs": len(results), "replications": cfg.get("replications"), "level": level, "findings": []}
    varied = varied_paths(cfg["points"], paths)
    out["varied"] = varied
    if len(varied) == 1 and all(isinstance(pt["params"][varied[0]], (int, float)) for pt in points):
        x = varied[0]
        order = sorted(points, key=lambda pt: pt["params"][x])
        xs = [float(pt["params"][x]) for pt in order]
        first = metrics[0]
        ys = [pt["metrics"][first]["mean"] for pt in order]
        if all(y is not None for y in ys):
            k = knee(xs, ys)
            out["knee"] = None if k is None else {"path": x, "metric": first, "x": k.x, "y": k.y, "method": k.method,
                                                  "peak_x": k.peak_x, "peak_y": k.peak_y}
            if k is not None:
                out["findings"].append(f"saturation: {first} stops growing at {x} = {k.x:g} ({first} {k.y:,.4g}); "
                                       f"its peak is {k.peak_y:,.4g} at {x} = {k.peak_x:g} ({k.method})")
        for m in metrics[1:]:
            ms = [pt["metrics"][m]["mean"] for pt in order]
            if all(v is not None for v in ms):
                b = blowup(xs, ms)
                if b is not None:
                    out.setdefault("blowups", {})[m] = b
                    out["findings"].append(f"{m} blows up (more than 3x its value at {x} = {xs[0]:g}) from {x} = {b:g}")
    return out


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None
