"""The ``[guard]`` scenario section: the tool guard's switches and limits.

Registered by :func:`register` (entry point ``guard`` in ``pyproject.toml``), so
every scenario has ``sc.guard`` (the defaults when the file leaves it out)::

    [guard]
    enabled = true            # false: calls go straight to the tool (no rules, validation, retries, breaker)
    timeout = 1.0             # s: an attempt with no answer by then is a failure
    sandbox_latency = 0.0005  # s: the cost of switching into an agent's sandbox, per allowed call

    [guard.retry]
    max_retries = 3           # per call: at most this many retries (max_retries + 1 attempts)
    base = 0.05               # s
    cap = 2.0                 # s: no backoff delay exceeds it
    jitter = "full"           # none | full | equal | decorrelated
    ratio = 0.2               # retry tokens earned per first attempt (per tool; Finagle-style retry budget)
    burst = 20.0              # tokens a tool's retry budget holds at most (it starts full)

    [guard.breaker]
    failure_threshold = 5     # consecutive failures that open a tool's breaker
    cooldown = 5.0            # s open before half-open
    probes = 1                # calls admitted while half-open

    [guard.kill_switch]
    threshold = 3             # consecutive unauthorized calls that quarantine an agent
    quarantine = 0.0          # s; 0: for the rest of the run

    [guard.limits]            # payload size limits, checked before the schema
    max_items = 10000
    max_depth = 16
    max_string = 1000
    max_abs = 1e15
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from desim.registry import SectionSpec, sections
from desim.scenario import MAX_UNTIL, Section
from desim.guard.sanitize import Limits

MAX_WAIT = 3600.0  # seconds: a timeout, a backoff, a cool-down


class RetryCfg(Section):
    max_retries: int = Field(3, ge=0, le=100, description="retries per call (attempts = max_retries + 1)")
    base: float = Field(0.05, gt=0, le=MAX_WAIT, description="s, the first backoff's scale")
    cap: float = Field(2.0, gt=0, le=MAX_WAIT, description="s, the largest backoff delay")
    jitter: Literal["none", "full", "equal", "decorrelated"] = "full"
    ratio: float = Field(0.2, ge=0, le=1, description="retry tokens a tool earns per first attempt")
    burst: float = Field(20.0, ge=0, le=1e6, description="retry tokens a tool holds at most (starts full)")

    @model_validator(mode="after")
    def _cap(self):
        if self.cap < self.base:
            raise ValueError(f"cap ({self.cap:g} s) must be at least base ({self.base:g} s)")
        return self


class BreakerCfg(Section):
    failure_threshold: int = Field(5, ge=1, le=10_000, description="consecutive failures that open the breaker")
    cooldown: float = Field(5.0, gt=0, le=MAX_WAIT, description="s open before half-open")
    probes: int = Field(1, ge=1, le=1000, description="calls admitted while half-open")


class KillSwitchCfg(Section):
    threshold: int = Field(3, ge=1, le=1000, description="consecutive unauthorized calls that quarantine an agent")
    quarantine: float = Field(0.0, ge=0, le=MAX_UNTIL, description="s quarantined; 0 = for the rest of the run")


class LimitsCfg(Section):
    max_items: int = Field(10_000, ge=1, le=10_000_000)
    max_depth: int = Field(16, ge=1, le=1000)
    max_string: int = Field(1000, ge=1, le=10_000_000)
    max_abs: float = Field(1e15, gt=0, le=1e300)

    def to_limits(self) -> Limits:
        return Limits(self.max_items, self.max_depth, self.max_string, self.max_abs)


class GuardCfg(Section):
    enabled: bool = True
    timeout: float = Field(1.0, gt=0, le=MAX_WAIT, description="s an attempt may take before it is a failure")
    sandbox_latency: float = Field(0.0005, ge=0, le=60, description="s to switch into an agent's sandbox, per allowed call")
    retry: RetryCfg = RetryCfg()
    breaker: BreakerCfg = BreakerCfg()
    kill_switch: KillSwitchCfg = KillSwitchCfg()
    limits: LimitsCfg = LimitsCfg()


def register() -> None:
    """Register ``[guard]`` (entry point ``guard``)."""
    sections.register("guard", SectionSpec(GuardCfg, GuardCfg(), owner="desim.guard",
                                           description="the tool guard between agents and tools"))
