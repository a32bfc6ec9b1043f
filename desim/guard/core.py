"""The guard itself: every tool call of every agent goes through :meth:`Guard.call`.

One call, in order (guard on):

1. **kill switch**: a quarantined agent gets its safe default at once (``quarantined``);
2. **allow rules** (:class:`AllowRules`): may this agent's role call this tool in its current
   state? No: ``blocked``, and the agent's streak of consecutive unauthorized calls grows; the
   ``kill_switch.threshold``-th in a row (3) quarantines it (``quarantine``). An allowed call
   resets the streak, so three blocked calls that are not consecutive never quarantine;
3. **sandbox**: the call runs in the agent's own :class:`Sandbox` (its own streak, counters and
   random stream); entering it costs ``sandbox_latency`` simulated seconds, which shows in the
   call's latency. The request is deep-copied for every attempt (a tool that mutates it changes
   nothing the agent holds) and the answer is rebuilt from JSON types (see :mod:`.sanitize`),
   so no object crosses from a tool to an agent; any exception in the tool's code, in its
   answer or in the guard itself becomes a recorded failure of that one call;
4. **attempts**: the tool's circuit breaker (:mod:`.breaker`) must admit the attempt, else
   ``short_circuit`` and the safe default. ``invoke(request)`` starts the real call; the answer
   is a :class:`Response` (status 200 / 429 / 500 / 503 ..., payload, optional retry-after), or
   nothing within the timeout. A 2xx payload is sanitized (``pass`` or ``reject`` + reason);
   anything else is an ``error`` + reason. Failures count against the breaker;
5. **retries**: a retryable failure (429, 5xx, timeout, exception, rejected payload; for a
   tool that is not idempotent only 429 and 503, which say it did nothing) is retried after a
   backoff (:mod:`.backoff`, ``retry`` + delay) while the call's budget (``max_retries``) and
   the tool's retry-token bucket (``ratio`` tokens per call, at most ``burst``: retries stay a
   bounded share of the traffic, so retries cannot cascade) last; then ``give_up``;
6. **safe default**: when the tool cannot answer (breaker open, budget spent, blocked,
   quarantined) the caller gets the tool's ``fallback`` (``fallback`` row), reported as such.

Guard off (``[guard] enabled = false``): one attempt straight to the tool with the same
timeout; no rules, sandbox, copies, validation, retries or breaker. The raw payload is
returned as is (``direct`` rows), and an exception in the tool is still caught (the run must
go on for the comparison to be measured).

Every decision is a row ``(t, call, agent, role, tool, state, decision, reason, attempt,
delay, breaker, latency)`` (``latency``: on the row that ends a call, ``pass``, ``fallback`` or
``direct``, the call's simulated seconds from start to outcome, sandbox switch included) handed to ``record`` (default: the guard's own :class:`GuardLog`, whose
``columns()`` a model returns as its ``guard`` table, declared in :mod:`desim.guard.tables`).
"""
from __future__ import annotations

import copy
import inspect
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import simpy
from pydantic import BaseModel

from desim.guard.backoff import Backoff
from desim.guard.breaker import Breaker
from desim.guard.config import GuardCfg
from desim.guard.sanitize import Plausibility, Rejected, sanitize
from desim.guard.tables import GUARD  # noqa: F401  (a model using the guard has its store table declared)
from desim.rng import RngStreams

COLUMNS = ("t", "call", "agent", "role", "tool", "state", "decision", "reason", "attempt", "delay", "breaker", "latency")
DECISIONS = ("allowed", "blocked", "quarantine", "quarantined", "released", "pass", "reject", "error", "retry",
             "give_up", "short_circuit", "fallback", "breaker_open", "breaker_half_open", "breaker_closed",
             "direct")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DID_NOTHING_STATUS = frozenset({429, 503})  # the tool refused before doing any work: safe to retry anything


@dataclass(frozen=True)
class Response:
    """A tool's answer: an HTTP-like ``status``, its ``payload``, and an optional ``retry_after`` (s) hint."""

    status: int
    payload: Any = None
    retry_after: float | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A tool the guard knows.

    ``schema``: a :class:`~desim.guard.sanitize.Payload` subclass its 2xx payloads must fit (None:
    only the shape, size and string gates); ``plausible``: an optional rule on the validated value
    and the caller's context; ``fallback``: the safe default, a value (deep-copied per use) or
    ``fallback(request, reason) -> value``; ``timeout``: seconds per attempt (None: ``[guard] timeout``);
    ``idempotent``: False for a tool whose repeat has an effect (a restock), which is then retried
    only on 429 and 503."""

    name: str
    schema: type[BaseModel] | None = None
    plausible: Plausibility | None = None
    fallback: Any = None
    timeout: float | None = None
    idempotent: bool = True


@dataclass(frozen=True)
class Outcome:
    """What the agent gets back from :meth:`Guard.call`.

    ``ok``: ``value`` is the tool's answer (sanitized when the guard is on); otherwise ``value``
    is the safe default (``fallback`` True) or, guard off, None. ``reason``: why not ok.
    ``decision``: what ended the call: ``pass``; ``blocked``, ``quarantined``, ``short_circuit``
    (breaker open), ``give_up`` (not retryable or budget spent), ``error`` (the request could not
    be copied, or the guard itself failed), each with the safe default; guard off ``direct``. ``latency``:
    simulated seconds from the call to this outcome (sandbox switch, attempts and backoffs)."""

    ok: bool
    value: Any
    fallback: bool
    reason: str
    decision: str
    attempts: int
    retries: int
    status: int | None
    started: float
    latency: float


class AllowRules:
    """Which tools an agent of a role may call in a state: ``{role: {state: [tools]}}``.

    The state ``"*"`` holds the tools allowed in every state; a tool ``"*"`` allows every tool.
    A role with no entry may call nothing."""

    def __init__(self, table: Mapping[str, Mapping[str, Iterable[str]]]):
        self.table = MappingProxyType({str(role): MappingProxyType({str(s): frozenset(map(str, tools))
                                                                    for s, tools in states.items()})
                                       for role, states in table.items()})

    def allows(self, role: str, state: str, tool: str) -> bool:
        states = self.table.get(role)
        if states is None:
            return False
        tools = states.get(state, frozenset()) | states.get("*", frozenset())
        return tool in tools or "*" in tools


class GuardLog:
    """The guard's decisions as columns (a model's ``guard`` table)."""

    def __init__(self):
        self.cols: dict[str, list] = {c: [] for c in COLUMNS}

    def __call__(self, row: Mapping[str, Any]) -> None:
        for c in COLUMNS:
            self.cols[c].append(row.get(c))

    def __len__(self) -> int:
        return len(self.cols["t"])

    def columns(self) -> dict[str, list]:
        return {c: list(v) for c, v in self.cols.items()}

    def rows(self) -> list[dict]:
        return [dict(zip(COLUMNS, r)) for r in zip(*(self.cols[c] for c in COLUMNS))]


@dataclass
class Sandbox:
    """One agent's own guard state: nothing in it is shared with another agent."""

    name: str
    role: str
    rng: Any
    streak: int = 0  # consecutive unauthorized calls
    quarantined_at: float | None = None
    quarantined_until: float | None = None  # None while quarantined: for the rest of the run
    calls: int = 0
    failures: int = 0
    last_reason: str = ""
    guard: "Guard | None" = field(default=None, repr=False)

    def quarantined(self, now: float) -> bool:
        return self.quarantined_at is not None and (self.quarantined_until is None or now < self.quarantined_until)

    def call(self, tool: str, invoke: Callable[[Any], Any], *, state: str = "*", request: Any = None,
             context: Mapping[str, Any] | None = None) -> simpy.Process:
        """:meth:`Guard.call` for this agent."""
        return self.guard.call(self.name, tool, invoke, state=state, request=request, context=context)


def _describe(e: BaseException) -> str:
    """``Type: message`` of an exception, safely (a hostile ``__str__`` cannot raise here), one short line."""
    try:
        msg = str(e)
    except Exception:
        msg = "<unprintable>"
    return " ".join(f"{type(e).__name__}: {msg}".split())[:200]


class Guard:
    """The tool guard of one simulation (see the module docstring for a call's steps).

    ``env``: the simulation's SimPy environment; ``cfg``: the ``[guard]`` section; ``rules``: the
    allow rules (None: every call is allowed); ``streams``: the run's RNG streams (each agent's
    backoff jitter draws from its own stream ``guard:<agent>``); ``record``: where decision rows
    go (default: :attr:`log`)."""

    def __init__(self, env: simpy.Environment, cfg: GuardCfg | None = None, rules: AllowRules | None = None,
                 streams: RngStreams | None = None, record: Callable[[Mapping[str, Any]], None] | None = None):
        self.env = env
        self.cfg = cfg if cfg is not None else GuardCfg()
        self.rules = rules
        self.streams = streams if streams is not None else RngStreams(0)
        self.log = GuardLog()
        self.record = record if record is not None else self.log
        self.limits = self.cfg.limits.to_limits()
        self.tools: dict[str, ToolSpec] = {}
        self.breakers: dict[str, Breaker] = {}
        self.tokens: dict[str, float] = {}
        self.boxes: dict[str, Sandbox] = {}
        self.counts: Counter = Counter()
        self._calls = 0
        self._latencies: list[float] = []  # each finished call's latency (summary figures)
        self._ctx: dict[str, Any] = {}

    # -- set-up ------------------------------------------------------------------------------------
    def add_tool(self, spec: ToolSpec) -> ToolSpec:
        if spec.name in self.tools:
            raise ValueError(f"tool {spec.name!r} is already registered with the guard")
        b = self.cfg.breaker
        self.tools[spec.name] = spec
        self.breakers[spec.name] = Breaker(b.failure_threshold, b.cooldown, b.probes,
                                           on_transition=lambda t, old, new, why, tool=spec.name:
                                           self._transition(tool, t, old, new, why))
        self.tokens[spec.name] = self.cfg.retry.burst
        return spec

    def sandbox(self, agent: str, role: str = "agent") -> Sandbox:
        """The agent's sandbox (made on first use); an agent keeps one role."""
        box = self.boxes.get(agent)
        if box is None:
            box = self.boxes[agent] = Sandbox(agent, role, self.streams.stream(f"guard:{agent}"), guard=self)
        elif box.role != role:
            raise ValueError(f"agent {agent!r} already has the role {box.role!r}, not {role!r}")
        return box

    # -- a call ------------------------------------------------------------------------------------
    def call(self, agent: str, tool: str, invoke: Callable[[Any], Any], *, state: str = "*", request: Any = None,
             context: Mapping[str, Any] | None = None, role: str | None = None) -> simpy.Process:
        """Start a guarded call; the returned process's value is an :class:`Outcome` (it never fails).

        ``invoke(request)`` starts the real call and returns a :class:`Response`, a SimPy event
        (a process, or an event the tool's reply triggers) whose value is one, or a generator
        (run as a process). ``state``: the
        agent's current state for the allow rules; ``context``: what the plausibility rule may
        compare against (e.g. ``{"expected": estimate, "tolerance": 3 * std}``)."""
        box = self.boxes.get(agent) or self.sandbox(agent, role or "agent")
        if tool not in self.tools and (not self.cfg.enabled or self._allowed(box, state, tool)):
            raise ValueError(f"tool {tool!r} is not registered with the guard (known: {', '.join(sorted(self.tools)) or 'none'})")
        self._calls += 1
        return self.env.process(self._run(self._calls, box, tool, state, invoke, request, context or {}))

    def _run(self, cid: int, box: Sandbox, tool: str, state: str, invoke, request, context):
        t0 = self.env.now
        box.calls += 1
        try:
            if not self.cfg.enabled:
                out = yield from self._direct(cid, box, tool, state, invoke, request, t0)
            else:
                out = yield from self._guarded(cid, box, tool, state, invoke, request, context, t0)
        except Exception as e:  # the guard's own failure is this call's failure, never the controller's
            why = f"guard error: {_describe(e)}"
            try:
                out = self._fallback(cid, box, tool, state, request, why, "error", 0, 0, None, t0)
            except Exception as again:  # even the safe default or its row failed: no value, but still an outcome
                out = Outcome(False, None, True, f"{why}; then {_describe(again)}", "error", 0, 0, None, t0,
                              self.env.now - t0)
        if not out.ok:
            box.failures += 1
            box.last_reason = out.reason
        return out

    def _guarded(self, cid, box: Sandbox, tool, state, invoke, request, context, t0):
        cfg, env = self.cfg, self.env
        if box.quarantined_at is not None and not box.quarantined(env.now):
            self._row(cid, box, tool, state, "released", "quarantine over", t=box.quarantined_until)
            box.quarantined_at = box.quarantined_until = None
            box.streak = 0
        if box.quarantined(env.now):
            return self._refuse(cid, box, tool, state, request, "quarantined",
                                f"agent quarantined at t={box.quarantined_at:g} s by the kill switch", t0)
        if not self._allowed(box, state, tool):
            box.streak += 1
            why = f"role {box.role!r} may not call {tool!r} in state {state!r} ({box.streak} in a row)"
            self._row(cid, box, tool, state, "blocked", why)
            if box.streak >= cfg.kill_switch.threshold:
                box.quarantined_at = env.now
                q = cfg.kill_switch.quarantine
                box.quarantined_until = env.now + q if q > 0 else None
                self._row(cid, box, tool, state, "quarantine",
                          f"{box.streak} consecutive unauthorized calls" + (f"; for {q:g} s" if q > 0 else "; for the rest of the run"))
            return self._fallback(cid, box, tool, state, request, f"unauthorized: {why}", "blocked", 0, 0, None, t0)
        box.streak = 0
        self._row(cid, box, tool, state, "allowed", "")
        if cfg.sandbox_latency > 0:
            yield env.timeout(cfg.sandbox_latency)
        spec, breaker, rc = self.tools[tool], self.breakers[tool], cfg.retry
        self.tokens[tool] = min(rc.burst, self.tokens[tool] + rc.ratio)
        backoff = Backoff(rc.jitter, rc.base, rc.cap, box.rng)
        attempts = retries = 0
        status = None
        while True:
            try:
                req = copy.deepcopy(request)
            except Exception as e:
                why = f"request could not be copied: {_describe(e)}"
                self._row(cid, box, tool, state, "error", why, attempt=attempts)
                return self._fallback(cid, box, tool, state, request, why, "error", attempts, retries, status, t0)
            if not breaker.allow(env.now):
                return self._refuse(cid, box, tool, state, request, "short_circuit",
                                    f"breaker open for {tool!r}" + (f" (last: {box.last_reason})" if attempts else ""),
                                    t0, attempts, retries, status)
            attempts += 1
            reported = False  # the breaker admitted this attempt: it must hear how it ended, whatever happens
            try:
                status, payload, retry_after, failure = yield from self._attempt(spec, invoke, req)
                kind = "error"
                if failure is None and not 200 <= status < 300:
                    failure = f"status {status}"
                if failure is None:
                    try:
                        value = sanitize(payload, spec.schema, self.limits, spec.plausible, context)
                    except Rejected as r:
                        kind, failure = "reject", str(r)
                    except Exception as e:  # a rule that raised: the payload is not trusted
                        kind, failure = "reject", f"invalid: plausibility rule raised {_describe(e)}"
                    else:
                        breaker.success(env.now)
                        reported = True
                        self._row(cid, box, tool, state, "pass", "", attempt=attempts, latency=env.now - t0)
                        return Outcome(True, value, False, "", "pass", attempts, retries, status, t0, env.now - t0)
                box.last_reason = failure
                self._row(cid, box, tool, state, kind, failure, attempt=attempts)
                reported = True
                breaker.failure(env.now, failure)
            finally:
                if not reported:  # the guard itself failed mid-attempt: a half-open probe slot must not leak
                    breaker.failure(env.now, "the attempt ended without an outcome")
            if not self._retryable(spec, status, failure):
                why = f"not retried: {failure}"
            elif retries >= rc.max_retries:
                why = f"retry budget of {rc.max_retries} spent; last: {failure}"
            elif self.tokens[tool] < 1:
                why = f"retry tokens of {tool!r} spent; last: {failure}"
            else:
                self.tokens[tool] -= 1
                d = backoff.next(retries)
                if retry_after is not None and retry_after > d:
                    d = min(rc.cap, float(retry_after))
                retries += 1
                self._row(cid, box, tool, state, "retry", failure, attempt=attempts, delay=d)
                yield env.timeout(d)
                continue
            self._row(cid, box, tool, state, "give_up", why, attempt=attempts)
            return self._fallback(cid, box, tool, state, request, why, "give_up", attempts, retries, status, t0)

    def _direct(self, cid, box: Sandbox, tool, state, invoke, request, t0):
        """Guard off: one attempt, the raw payload, no protection but a caught exception."""
        status, payload, _, failure = yield from self._attempt(self.tools[tool], invoke, request)
        ok = failure is None and 200 <= status < 300
        reason = "" if ok else (failure or f"status {status}")
        self._row(cid, box, tool, state, "direct", reason, attempt=1, latency=self.env.now - t0)
        return Outcome(ok, payload if ok else None, False, reason, "direct", 1, 0, status, t0, self.env.now - t0)

    def _attempt(self, spec: ToolSpec, invoke, req):
        """One attempt: ``(status, payload, retry_after, failure)``; ``failure`` None for an answer with a status."""
        env = self.env
        timeout = spec.timeout if spec.timeout is not None else self.cfg.timeout
        try:
            ev = invoke(req)
            if inspect.isgenerator(ev):  # a process body: run it as the call
                ev = env.process(ev)
        except Exception as e:
            return None, None, None, f"exception: {_describe(e)}"
        if isinstance(ev, simpy.Event):
            if ev.processed:
                got = ev
            else:
                done = env.event()

                def settle(e, done=done):
                    if not e.ok:
                        e.defused = True  # the failure is this call's, not the simulation's
                    if not done.triggered:
                        done.succeed(e)

                ev.callbacks.append(settle)
                env.timeout(timeout).callbacks.append(lambda _, done=done: done.triggered or done.succeed(None))
                got = yield done
                if got is None:
                    return None, None, None, f"timeout: no answer within {timeout:g} s"
            if not got.ok:
                got.defused = True
                return None, None, None, f"exception: {_describe(got.value)}"
            ev = got.value
        if type(ev) is not Response:
            return None, None, None, f"wrong_type: the tool answered a {type(ev).__name__}, not a Response"
        if type(ev.status) is not int:
            return None, None, None, f"wrong_type: status is a {type(ev.status).__name__}"
        ra = ev.retry_after
        retry_after = float(ra) if type(ra) in (int, float) and 0 <= ra < float("inf") else None
        return ev.status, ev.payload, retry_after, None

    # -- helpers -------------------------------------------------------------------------------------
    def _allowed(self, box: Sandbox, state: str, tool: str) -> bool:
        return self.rules is None or self.rules.allows(box.role, state, tool)

    def _retryable(self, spec: ToolSpec, status: int | None, failure: str) -> bool:
        if status in DID_NOTHING_STATUS:
            return True
        if not spec.idempotent:
            return False
        return status is None or status in RETRYABLE_STATUS or 200 <= status < 300  # no answer, 5xx, or a bad payload

    def _refuse(self, cid, box, tool, state, request, decision, why, t0, attempts=0, retries=0, status=None) -> Outcome:
        self._row(cid, box, tool, state, decision, why)
        return self._fallback(cid, box, tool, state, request, why, decision, attempts, retries, status, t0)

    def _fallback(self, cid, box, tool, state, request, why, decision, attempts, retries, status, t0) -> Outcome:
        """The tool's safe default instead of its answer, recorded as a ``fallback`` row with the reason."""
        spec = self.tools.get(tool)
        fb = spec.fallback if spec is not None else None
        try:
            value = fb(copy.deepcopy(request), why) if callable(fb) else copy.deepcopy(fb)
        except Exception as e:
            value, why = None, f"{why}; fallback failed: {_describe(e)}"
        self._row(cid, box, tool, state, "fallback", why, latency=self.env.now - t0)
        return Outcome(False, value, True, why, decision, attempts, retries, status, t0, self.env.now - t0)

    def _transition(self, tool: str, t: float, old: str, new: str, why: str) -> None:
        c = self._ctx
        self.record({"t": t, "call": c.get("call"), "agent": c.get("agent", ""), "role": c.get("role", ""),
                     "tool": tool, "state": c.get("state", ""), "decision": f"breaker_{new}",
                     "reason": f"{old} -> {new}: {why}", "attempt": None, "delay": None, "breaker": new,
                     "latency": None})
        self.counts[f"breaker_{new}"] += 1

    def _row(self, cid, box: Sandbox, tool, state, decision, reason, attempt=None, delay=None, t=None,
             latency=None) -> None:
        self._ctx = {"call": cid, "agent": box.name, "role": box.role, "state": state}
        br = self.breakers.get(tool)
        self.record({"t": self.env.now if t is None else t, "call": cid, "agent": box.name, "role": box.role,
                     "tool": tool, "state": state, "decision": decision, "reason": reason, "attempt": attempt,
                     "delay": delay, "breaker": br._state if br is not None else None, "latency": latency})
        self.counts[decision] += 1
        if latency is not None:
            self._latencies.append(latency)

    # -- reading -------------------------------------------------------------------------------------
    def breaker_state(self, tool: str) -> str:
        return self.breakers[tool].state(self.env.now)

    def summary(self) -> dict[str, Any]:
        """Counts of every decision, calls, their mean and p95 latency (s), quarantined agents (for a run's summary)."""
        out = {f"guard_{d}": int(self.counts.get(d, 0)) for d in DECISIONS}
        out["guard_calls"] = self._calls
        lat = np.asarray(self._latencies, dtype=float)
        out["guard_call_latency_mean"] = float(lat.mean()) if lat.size else None  # s, sandbox switch included
        out["guard_call_latency_p95"] = float(np.percentile(lat, 95)) if lat.size else None
        out["guard_quarantined_agents"] = sorted(n for n, b in self.boxes.items() if b.quarantined_at is not None)
        return out
