"""The failure suite: ``desim eval SCENARIO --suite faults``.

A case is the scenario plus one fault (tool faults from ``[[tool_faults]]``, network faults from
``[[faults]]``, or a changed setting: a lagging replica, coarse locks, a rogue brain), active in one
window (from 25 % of the run for 40 % of it). Every case runs with the seed of the clean baseline
(common random numbers: the same orders arrive at the same times, robots draw the same delays), so
a difference from the baseline is the fault's, not chance's.

Each case is run in *arms*: guard on (the scenario's ``[guard]``), and with ``guard="both"`` guard
off as well (``[guard] enabled = false``), each against its own baseline; cases about stale data
(stale replica, the two partitions) also run with belief off (``[belief] enabled = false``). Per arm:

- **invariants**, which every arm must keep (else the case fails): the run ends (the simulated clock
  reaches ``until``, no exception), no order is lost (``created == completed + failed + pending``,
  with every failure carrying its reason: the model's ``pipeline_conserved`` and ``lost``), and
  retries are bounded (at most ``max_retries`` per guarded call, and at most the tools' retry
  tokens: ``ratio`` per call plus ``burst`` per tool);
- **safeguards**, guard-on arms only: each case says which of the guard's mechanisms must fire
  (retries, the breaker opening and closing again, rejections of a given class, the kill switch,
  the retry-token budget, the safe default) and, for the network-only cases, which must *not*
  (no breaker opening when the tools are healthy). A safeguard that does not fire fails the case.
  Each case also checks that its fault took effect (calls were hit, reads were stale), so a
  case cannot pass by testing nothing;
- **figures**: throughput and order latency against the arm's baseline, retries, deadlocks,
  orders completed / failed / pending / lost, and the harm a fault did (unauthorized restocks
  executed, orders at a wrong price).

:func:`run_suite` returns one result dict per (case, arm), each with ``passed``, and, given a store,
records them as one ``eval`` run (tables ``eval_cases``, ``eval_guard``: the guard's decisions in
every arm, those that are not a call going through; ``eval_windows``: each case's fault window).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import pyarrow as pa

from desim.app.runner import prepare, run
from desim.app.scenario import load_data
from desim.guard.config import GuardCfg
from desim.scenario import ScenarioError, validate
from desim.store import declare_table

EVAL_CASES = declare_table(  # one row per (case, arm); safeguards and harm are JSON text
    "eval_cases", {"case": pa.string(), "arm": pa.string(), "guard": pa.bool_(), "belief": pa.bool_(),
                   "what": pa.string(), "passed": pa.bool_(), "failures": pa.string(),
                   "throughput": pa.float64(), "base_throughput": pa.float64(),
                   "latency_p50": pa.float64(), "base_latency_p50": pa.float64(),
                   "latency_p95": pa.float64(), "base_latency_p95": pa.float64(),
                   "retries": pa.int64(), "retry_bound": pa.int64(), "deadlocks": pa.int64(),
                   "created": pa.int64(), "completed": pa.int64(), "failed": pa.int64(), "pending": pa.int64(),
                   "failed_reasons": pa.string(), "lost": pa.int64(), "unauthorized_executed": pa.int64(), "mispriced": pa.int64(),
                   "stale_reads": pa.int64(), "safeguards": pa.string(), "fault_start": pa.float64(),
                   "fault_end": pa.float64(), "trace_hash": pa.string()},
    required=("case", "arm", "passed"))
EVAL_GUARD = declare_table(  # the guard's decisions in every arm (the guard table's columns plus case and arm)
    "eval_guard", {"case": pa.string(), "arm": pa.string(), "t": pa.float64(), "agent": pa.string(),
                   "tool": pa.string(), "decision": pa.string(), "reason": pa.string(), "delay": pa.float64(),
                   "breaker": pa.string()},
    required=("case", "arm", "t", "decision"))
EVAL_WINDOWS = declare_table(  # when each case's fault was active
    "eval_windows", {"case": pa.string(), "start": pa.float64(), "end": pa.float64(), "kind": pa.string()},
    required=("case", "start", "end"))

SUITES = ("faults",)
FAULT_START, FAULT_SPAN = 0.25, 0.40  # the fault window, as fractions of the run
BASELINE = "baseline"


# -- what a case is -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ctx:
    """What a case needs to place its fault: the window and the network's names."""

    at: float
    duration: float
    until: float
    zone_controller: str  # the last zone's controller
    core: str
    tool_links: tuple[tuple[str, str], ...]  # the links to the tool services and the inventory nodes
    primary: str


@dataclass(frozen=True)
class Check:
    """A safeguard expected to fire (``fire=True``) or not (``fire=False``) in a guard-on arm, or a
    check that the case's fault took effect (``effect=True``: in every arm)."""

    name: str
    test: Callable[["Figures"], bool]
    fire: bool = True
    effect: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    change: Callable[[dict, Ctx], None]  # edits the scenario data in place
    checks: tuple[Check, ...]
    belief: bool = False  # also run with belief off
    kind: str = ""


@dataclass
class Figures:
    """One run's numbers, read from its summary and its guard table."""

    summary: dict
    guard_rows: list[dict] = field(default_factory=list)

    def get(self, path: str, default: Any = 0) -> Any:
        node: Any = self.summary
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def g(self, decision: str) -> int:
        return int(self.get(f"pipeline.guard_{decision}", 0) or 0)

    def rows(self, decision: str, reason: str = "") -> int:
        return sum(1 for r in self.guard_rows if r["decision"] == decision and reason in (r["reason"] or ""))

    def status(self, code: str) -> int:
        return int(self.get("pipeline.tool_status", {}).get(code, 0))

    def fault(self, kind: str) -> int:
        return int(self.get("pipeline.tool_faults", {}).get(kind, 0))


def set_path(data: dict, path: str, value: Any) -> None:
    """Set ``data``'s field at the dotted ``path`` (``guard.retry.max_retries``), creating tables on the way."""
    *head, last = path.split(".")
    for part in head:
        data = data.setdefault(part, {})
    data[last] = value


def _tool_fault(data: dict, ctx: Ctx, **f) -> None:
    data.setdefault("tool_faults", []).append({"at": ctx.at, "duration": ctx.duration, **f})


def _net_fault(data: dict, ctx: Ctx, **f) -> None:
    data.setdefault("faults", []).append({"at": ctx.at, "duration": ctx.duration, **f})


def _set(**paths) -> Callable[[dict, Ctx], None]:
    def change(data: dict, ctx: Ctx) -> None:
        for p, v in paths.items():
            set_path(data, p.replace("__", "."), v)

    return change


def _both(*changes) -> Callable[[dict, Ctx], None]:
    def change(data: dict, ctx: Ctx) -> None:
        for c in changes:
            c(data, ctx)

    return change


RETRIED = Check("retried", lambda f: f.g("retry") > 0)
SAFE_DEFAULT = Check("safe default", lambda f: f.g("fallback") > 0)
BREAKER_OPENED = Check("breaker opened", lambda f: f.g("breaker_open") > 0)
BREAKER_CLOSED = Check("breaker closed again", lambda f: f.g("breaker_closed") > 0)
NO_FALSE_ALARM = Check("no breaker opened", lambda f: f.g("breaker_open") == 0, fire=False)
NOT_QUARANTINED = Check("nobody quarantined", lambda f: f.g("quarantine") == 0, fire=False)
PARTITIONED = Check("messages cut", lambda f: f.get("messages.dropped.partition", 0) > 0, effect=True)

CASES: tuple[Case, ...] = (
    Case("500_storm", "90% of calls to every tool answer 500",
         lambda d, c: _tool_fault(d, c, tool="all", kind="error_500", rate=0.9),
         (Check("calls hit", lambda f: f.fault("error_500") > 0, effect=True), RETRIED, BREAKER_OPENED,
          BREAKER_CLOSED, SAFE_DEFAULT), kind="tool"),
    Case("429_throttling", "inventory lookups throttled to 0.2 calls/s (429)",
         lambda d, c: _tool_fault(d, c, tool="inventory_lookup", kind="throttle", limit=0.2),
         (Check("calls throttled", lambda f: f.status("429") > 0, effect=True),
          Check("429 retried", lambda f: f.rows("retry", "status 429") > 0)), kind="tool"),
    Case("timeouts", "half the calls to every tool never answer",
         lambda d, c: _tool_fault(d, c, tool="all", kind="timeout", rate=0.5),
         (Check("calls hit", lambda f: f.fault("timeout") > 0, effect=True),
          Check("timeouts retried", lambda f: f.rows("retry", "timeout") > 0)), kind="tool"),
    Case("corrupt_payloads", "half the answers malformed (wrong types, missing fields, NaN, huge, smuggled "
                             "instructions); the pipeline's brain obeys instructions it reads",
         _both(lambda d, c: _tool_fault(d, c, tool="all", kind="malformed", payload="any", rate=0.5),
               _set(pipeline__brain="gullible")),
         (Check("calls hit", lambda f: f.fault("malformed") > 0, effect=True),
          Check("payloads rejected", lambda f: f.g("reject") > 0),
          Check("smuggling rejected", lambda f: f.rows("reject", "smuggling") > 0),
          Check("no smuggled order executed", lambda f: f.get("pipeline.unauthorized_executed") == 0)), kind="tool"),
    Case("byzantine", "half the inventory lookups well-formed but wrong by up to 10x",
         lambda d, c: _tool_fault(d, c, tool="inventory_lookup", kind="byzantine", rate=0.5, factor=10.0),
         (Check("calls hit", lambda f: f.fault("byzantine") > 0, effect=True),
          Check("implausible values rejected", lambda f: f.rows("reject", "implausible") > 0)), belief=True,
         kind="tool"),
    Case("stale_replica", "replication lag of ~60 s: replica reads far behind the primary",
         _set(inventory__lag={"dist": "lognormal", "mean": 60.0, "jitter": 20.0}),
         (Check("stale reads", lambda f: f.get("pipeline.stale_reads") > 0, effect=True),), belief=True,
         kind="data"),
    Case("lock_contention", "one lock for the whole table, held 0.9 s per write, 0.1 s lock timeout",
         _set(inventory__lock={"granularity": "table", "hold": {"dist": "constant", "mean": 0.9}, "timeout": 0.1}),
         (Check("lock timeouts", lambda f: f.get("pipeline.lock_timeouts") > 0, effect=True),
          Check("lock timeouts retried", lambda f: f.rows("retry", "status 503") > 0)), kind="data"),
    Case("zone_partition", "the last zone's controller isolated: its robots get no commands, the rest goes on",
         lambda d, c: _net_fault(d, c, kind="isolate", nodes=[c.zone_controller]),
         (PARTITIONED, NO_FALSE_ALARM),
         belief=True, kind="network"),
    Case("primary_partition", "the inventory primary isolated: reads from replicas, no reservation can commit",
         lambda d, c: _net_fault(d, c, kind="isolate", nodes=[c.primary]),
         (PARTITIONED, SAFE_DEFAULT,
          BREAKER_OPENED), belief=True, kind="network"),
    Case("latency_spike", "+0.6 s on every link to the tools and the inventory (round trips over the guard's timeout)",
         lambda d, c: _net_fault(d, c, kind="latency_spike", extra_delay=0.6, links=[list(e) for e in c.tool_links]),
         (Check("calls timed out", lambda f: f.rows("error", "timeout") + f.rows("direct", "timeout") > 0, effect=True),
          Check("timeouts retried", lambda f: f.rows("retry", "timeout") > 0)), kind="network"),
    Case("kill_switch", "a rogue pipeline brain bursts three unauthorized restocks every 5th order",
         _set(pipeline__brain="rogue", guard__kill_switch__quarantine=60.0),
         (Check("unauthorized calls made", lambda f: f.get("pipeline.unauthorized_attempts") > 0, effect=True),
          Check("agent quarantined", lambda f: f.g("quarantine") > 0),
          Check("no unauthorized call executed", lambda f: f.get("pipeline.unauthorized_executed") == 0)),
         kind="agent"),
    Case("cascading_retries", "95% 503s on inventory lookups with an eager client (10 retries per call)",
         _both(lambda d, c: _tool_fault(d, c, tool="inventory_lookup", kind="error_503", rate=0.95),
               _set(guard__retry__max_retries=10, guard__breaker__failure_threshold=1000)),
         (Check("calls hit", lambda f: f.fault("error_503") > 0, effect=True), RETRIED,
          Check("retry tokens ran out", lambda f: f.rows("give_up", "retry tokens") > 0)), kind="tool"),
    Case("slow_responses", "half the answers of every tool 2 s late (over the guard's timeout)",
         lambda d, c: _tool_fault(d, c, tool="all", kind="slow", rate=0.5, extra_delay=2.0),
         (Check("calls hit", lambda f: f.fault("slow") > 0, effect=True),
          Check("timeouts retried", lambda f: f.rows("retry", "timeout") > 0), NOT_QUARANTINED), kind="tool"),
)
CASE_NAMES = tuple(c.name for c in CASES)


# -- running -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    name: str
    guard: bool
    belief: bool


def _ctx(data: dict, sc, until: float, file: str) -> Ctx:
    graph = prepare(sc).graph
    zones = sorted({d["zone"] for _, d in graph.nodes(data=True) if "zone" in d})
    last = zones[-1] if zones else None
    controllers = sorted(n for n, d in graph.nodes(data=True) if d.get("role") == "controller" and d.get("zone") == last)
    if not controllers:
        raise ScenarioError(file, "topology", "the faults suite needs a topology with zone controllers")
    primary = "inventory"
    svc = [n for n, d in graph.nodes(data=True) if d.get("role") == "service"
           and (n.startswith("tool-") or n.startswith(primary))]
    core = "core" if "core" in graph else next(iter(graph.neighbors(primary)))
    links = tuple(sorted((core, n) for n in svc if graph.has_edge(core, n)))
    return Ctx(FAULT_START * until, FAULT_SPAN * until, until, controllers[0], core, links, primary)


def _arm_data(base: dict, arm: Arm) -> dict:
    data = copy.deepcopy(base)
    set_path(data, "guard.enabled", arm.guard)
    set_path(data, "belief.enabled", arm.belief)
    return data


def _run_one(data: dict, file: str, base_dir: Path, seed: int, until: float) -> Figures:
    """Validate and run one arm: its summary and its guard table's rows."""
    sc = validate(data, file, base_dir)
    res = run(sc, seed, until, file=file)
    tables = res.model.tables() if res.model is not None and hasattr(res.model, "tables") else {}
    g = tables.get("guard") or {}
    rows = [dict(zip(g, vals)) for vals in zip(*g.values())] if g else []
    return Figures(res.summary, rows)


def load_base(path: str | Path) -> tuple[dict, str, Path, Any]:
    """The scenario file's data, name and folder; ScenarioError unless it has the order pipeline."""
    data, _text, sc = load_data(path)  # wiring, the event budget: refused before anything runs
    if getattr(sc, "pipeline", None) is None:
        raise ScenarioError(str(path), "pipeline", "the faults suite needs a scenario with the order pipeline ([pipeline])")
    return data, str(path), Path(path).parent, sc


def arms_for(guard: str, case: Case | None) -> list[Arm]:
    """The arms of one case (``None``: the baselines) for ``guard`` in on | off | both."""
    arms = []
    if guard in ("on", "both"):
        arms.append(Arm("guard on", True, True))
    if guard in ("off", "both"):
        arms.append(Arm("guard off", False, True))
    if case is not None and case.belief and guard in ("on", "both"):
        arms.append(Arm("belief off", True, False))
    return arms


def plan(cases: Iterable[str] | None, guard: str) -> list[tuple[Case | None, Arm]]:
    """Every (case, arm) to run, baselines first."""
    chosen = [c for c in CASES if cases is None or c.name in set(cases)]
    out: list[tuple[Case | None, Arm]] = [(None, a) for a in arms_for(guard, None)]
    if any(c.belief for c in chosen) and guard in ("on", "both"):
        out.append((None, Arm("belief off", True, False)))
    for c in chosen:
        out += [(c, a) for a in arms_for(guard, c)]
    return out


def _retry_bound(f: Figures, data: dict) -> int:
    """The most retries the guard may make: per call, and by the tools' retry tokens."""
    r = GuardCfg.model_validate(data.get("guard", {})).retry  # the section's own defaults
    max_retries, ratio, burst = r.max_retries, r.ratio, r.burst
    calls = f.g("allowed")
    tools = max(1, len({row["tool"] for row in f.guard_rows}))
    return int(min(max_retries * calls, math.floor(ratio * calls + burst * tools)))


def evaluate(case: Case | None, arm: Arm, f: Figures, base: Figures | None, data: dict, until: float,
             error: str, window: tuple[float, float] | None) -> dict:
    """One (case, arm)'s result row: figures, invariants, safeguards, ``passed``."""
    failures: list[str] = []
    pipe = f.get("pipeline", {}) or {}
    failed = pipe.get("failed", {}) or {}
    if error:
        failures.append(f"run failed: {error}")
    elif f.get("sim_time", 0.0) < until - 1e-9:
        failures.append(f"the run stopped at {f.get('sim_time'):g} s, before {until:g} s")
    lost = int(pipe.get("lost", 0) or 0)
    if not error and (lost != 0 or f.get("pipeline_conserved") is not True):
        failures.append(f"{lost} orders lost")
    if not error and "" in failed:
        failures.append("orders failed without a reason")
    retries = f.g("retry")
    bound = _retry_bound(f, data) if arm.guard else 0
    if retries > bound:
        failures.append(f"{retries} retries, over the bound of {bound}")
    safeguards = []
    for chk in (case.checks if case is not None else ()):
        if chk.effect or arm.guard:
            ok = bool(chk.test(f)) if not error else False
            safeguards.append({"name": chk.name, "expected": "effect" if chk.effect else ("fires" if chk.fire else "quiet"),
                               "ok": ok})
            if not ok and (chk.effect or arm.name == "guard on"):
                failures.append(f"{chk.name}: " + ("the fault did not take effect" if chk.effect else
                                                   "did not fire" if chk.fire else "fired"))
    lat = f.get("order_latency", {}) or {}
    blat = (base.get("order_latency", {}) or {}) if base is not None else {}
    floor_deadlocks = int(f.get("deadlocks", 0) or 0)
    return {
        "case": case.name if case is not None else BASELINE, "arm": arm.name, "guard": arm.guard, "belief": arm.belief,
        "what": case.what if case is not None else "no fault", "passed": not failures, "failures": "; ".join(failures),
        "throughput": f.get("throughput_per_hour", None), "base_throughput": base.get("throughput_per_hour", None) if base else None,
        "latency_p50": lat.get("p50"), "base_latency_p50": blat.get("p50"),
        "latency_p95": lat.get("p95"), "base_latency_p95": blat.get("p95"),
        "retries": retries, "retry_bound": bound,
        "deadlocks": floor_deadlocks + int(pipe.get("deadlocks", 0) or 0),
        "created": int(pipe.get("created", 0) or 0), "completed": int(pipe.get("completed", 0) or 0),
        "failed": int(sum(failed.values())), "failed_reasons": dict(sorted(failed.items())),
        "pending": int(pipe.get("pending", 0) or 0), "lost": lost,
        "unauthorized_executed": int(pipe.get("unauthorized_executed", 0) or 0),
        "mispriced": int(pipe.get("mispriced", 0) or 0), "stale_reads": int(pipe.get("stale_reads", 0) or 0),
        "safeguards": safeguards,
        "fault_start": window[0] if window else None, "fault_end": window[1] if window else None,
        "trace_hash": f.get("trace_hash", ""),
    }


class Suite(NamedTuple):
    """What :func:`run_suite` gives back."""

    results: list[dict]  # one row per (case, arm), each with ``passed``
    guard_rows: list[dict]  # the guard's decisions in every arm (what went wrong: see ``run_suite``)
    windows: list[dict]  # each case's fault window
    scenario: Any  # the base scenario, validated
    run_id: str | None  # the store's eval run, when one was given


def run_suite(path: str | Path, *, suite: str = "faults", guard: str = "on", seed: int | None = None,
              until: float | None = None, cases: Iterable[str] | None = None,
              progress: Callable[[int, int, str], None] | None = None, store=None) -> Suite:
    """Run the suite, and with ``store`` record it there as one ``eval`` run (begun before the first
    case, so a crash or a Ctrl-C leaves it failed or interrupted, never complete).

    ``guard``: on | off | both; ``seed`` / ``until``: override the scenario's (every arm shares them);
    ``cases``: a subset by name. ScenarioError (one line) for a bad scenario, case name or value."""
    if suite not in SUITES:
        raise ScenarioError(str(path), "--suite", f"unknown suite {suite!r} (expected one of {', '.join(SUITES)})")
    if guard not in ("on", "off", "both"):
        raise ScenarioError(str(path), "--guard", f"expected on, off or both, not {guard!r}")
    if cases is not None:
        cases = list(cases)
        unknown = [c for c in cases if c not in CASE_NAMES]
        if unknown:
            raise ScenarioError(str(path), "--case", f"unknown case {unknown[0]!r} (expected one of {', '.join(CASE_NAMES)})")
    base, file, base_dir, sc = load_base(path)
    seed = sc.seed if seed is None else int(seed)
    until = sc.until if until is None else float(until)
    ctx = _ctx(base, sc, until, file)
    todo = plan(cases, guard)
    if store is None:
        return Suite(*_run_all(todo, base, file, base_dir, seed, until, ctx, progress), sc, None)
    config = {"suite": suite, "guard": guard, "until": until,
              "cases": list(dict.fromkeys(c.name for c, _ in todo if c is not None))}
    with store.run("eval", scenario=sc.name, scenario_text=Path(path).read_text(), seed=seed, config=config) as h:
        results, guard_rows, windows = _run_all(todo, base, file, base_dir, seed, until, ctx, progress)
        _write(h, results, guard_rows, windows)
        return Suite(results, guard_rows, windows, sc, h.run_id)


def _run_all(todo, base: dict, file: str, base_dir: Path, seed: int, until: float, ctx: Ctx, progress):
    """Every (case, arm) of ``todo`` in order: (result rows, guard rows, windows)."""
    results, guard_rows, windows = [], [], []
    baselines: dict[tuple[bool, bool], Figures] = {}
    for i, (case, arm) in enumerate(todo):
        label = f"{case.name if case else BASELINE} ({arm.name})"
        if progress is not None:
            progress(i, len(todo), label)
        data = _arm_data(base, arm)
        window = None
        error = ""
        if case is not None:
            case.change(data, ctx)
            window = (ctx.at, min(until, ctx.at + ctx.duration))
        try:
            f = _run_one(data, file, base_dir, seed, until)
        except ScenarioError:  # a case that makes the scenario invalid: the suite's bug, said in one line
            raise
        except Exception as e:  # a case that crashes the model is a failed case, not a crashed suite
            f, error = Figures({}), " ".join(f"{type(e).__name__}: {e}".split())[:300]
        if case is None:
            baselines[(arm.guard, arm.belief)] = f
        b = baselines.get((arm.guard, arm.belief))
        row = evaluate(case, arm, f, b, data, until, error, window)
        results.append(row)
        for r in f.guard_rows:
            if r["decision"] in ("allowed", "pass") or (r["decision"] == "direct" and not r["reason"]):
                continue  # the routine ones (calls that went through): counted in the summary
            guard_rows.append({"case": row["case"], "arm": arm.name, "t": r["t"], "agent": r["agent"],
                               "tool": r["tool"], "decision": r["decision"], "reason": r["reason"],
                               "delay": r["delay"], "breaker": r["breaker"]})
        if case is not None and window and not any(w["case"] == case.name for w in windows):
            windows.append({"case": case.name, "start": window[0], "end": window[1], "kind": case.kind})
    if progress is not None:
        progress(len(todo), len(todo), "done")
    return results, guard_rows, windows


def _write(h, results: list[dict], guard_rows: list[dict], windows: list[dict]) -> None:
    """The suite's tables and headline figures, into the store run ``h``."""
    rows = [{**r, "safeguards": json.dumps(r["safeguards"]), "failed_reasons": json.dumps(r["failed_reasons"])}
            for r in results]
    passed = sum(r["passed"] for r in results)
    h.append("eval_cases", rows)
    if guard_rows:
        h.append("eval_guard", guard_rows)
    if windows:
        h.append("eval_windows", windows)
    h.summary.update({"suite": "faults", "cases": len({r["case"] for r in results} - {BASELINE}), "arms": len(results),
                      "passed": passed, "failed": len(results) - passed})
