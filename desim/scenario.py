"""Scenario files: TOML, validated with pydantic, errors in one line.

A bad file never raises a traceback at the user: :func:`load` raises
:class:`ScenarioError`, whose text is ``FILE: FIELD: what is wrong``.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ScenarioError(ValueError):
    """A scenario that cannot be run; ``str()`` is one line naming file, field and problem."""

    def __init__(self, file: str, field: str, problem: str):
        self.file, self.field, self.problem = file, field, problem
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DelayCfg(_Strict):
    dist: Literal["constant", "uniform", "normal", "lognormal", "pareto"] = "constant"
    mean: float = Field(0.0, ge=0, description="mean propagation delay, seconds")
    jitter: float = Field(0.0, ge=0, description="spread: std (normal, lognormal) or half-width (uniform)")
    correlation: float = Field(0.0, ge=0, lt=1)
    alpha: float = Field(3.0, gt=1, description="pareto shape")

    @model_validator(mode="after")
    def _consistent(self):
        self.to_dist()
        return self

    def to_dist(self):
        from desim.network.distributions import DelayDist

        return DelayDist(self.dist, self.mean, self.jitter, self.correlation, self.alpha)


class LossCfg(_Strict):
    model: Literal["none", "bernoulli", "gilbert_elliott"] = "none"
    p: float = Field(0.0, ge=0, le=1)
    r: float = Field(1.0, ge=0, le=1)
    loss_good: float = Field(0.0, ge=0, le=1)
    loss_bad: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self):
        self.to_model()
        return self

    def to_model(self):
        from desim.network.loss import LossModel

        return LossModel(self.model, self.p, self.r, self.loss_good, self.loss_bad)


class LinkCfg(_Strict):
    delay: DelayCfg = DelayCfg()
    loss: LossCfg = LossCfg()
    bandwidth: float = Field(0.0, ge=0, description="bits/s; 0 = unlimited")
    duplicate: float = Field(0.0, ge=0, le=1)
    corrupt: float = Field(0.0, ge=0, le=1)
    queue_limit: int = Field(0, ge=0)

    def to_spec(self):
        from desim.network.link import LinkSpec

        return LinkSpec(self.delay.to_dist(), self.loss.to_model(), self.bandwidth, self.duplicate, self.corrupt, self.queue_limit)


class LinkOverride(LinkCfg):
    between: tuple[str, str]


class LinksCfg(_Strict):
    default: LinkCfg = LinkCfg()
    wireless: LinkCfg | None = Field(None, description="links whose edge kind is 'wireless' (robot to controller)")
    override: list[LinkOverride] = []


class TopologyCfg(_Strict):
    kind: Literal["star", "line", "ring", "grid", "mesh", "warehouse", "graphml", "edgelist"] = "warehouse"
    nodes: int = Field(4, ge=1, description="star/line/ring/mesh size")
    rows: int = Field(2, ge=1)
    cols: int = Field(2, ge=1)
    zones: int = Field(3, ge=1)
    robots_per_zone: int = Field(4, ge=0)
    services: list[str] = ["inventory", "orders", "procurement"]
    path: str | None = None

    @model_validator(mode="after")
    def _path_needed(self):
        if self.kind in ("graphml", "edgelist") and not self.path:
            raise ValueError(f"topology kind {self.kind!r} needs 'path'")
        return self


class JitterCfg(_Strict):
    enabled: bool = False
    alpha: float = Field(15 / 16, gt=0, lt=1)


class ReliableCfg(_Strict):
    retry_interval: float = Field(0.5, gt=0)
    retry_budget: int = Field(10, ge=0)


class TrafficCfg(_Strict):
    src: str | list[str] = Field("robot", alias="from")
    dst: str | list[str] = Field("own_controller", alias="to")
    rate: float = Field(1.0, gt=0, description="messages per second per sender (Poisson)")
    size: int = Field(256, ge=1, description="mean size in bytes (exponential)")
    kind: str = "status"
    reliable: bool = False
    reply: bool = False


class FaultCfg(_Strict):
    at: float = Field(ge=0)
    kind: Literal["isolate", "split", "bridge", "flap", "latency_spike", "slow_link", "heal"]
    duration: float | None = Field(None, gt=0)
    nodes: list[str] = []
    groups: list[list[str]] = []
    bridge: str | None = None
    links: list[tuple[str, str]] = []
    period: float = Field(1.0, gt=0)
    extra_delay: float = Field(0.0, ge=0)
    delay_scale: float = Field(1.0, gt=0)
    bandwidth_scale: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self):
        self.to_fault()
        return self

    def to_fault(self):
        from desim.network.faults import Fault

        return Fault(self.at, self.kind, self.duration, tuple(self.nodes), tuple(tuple(g) for g in self.groups),
                     self.bridge, tuple(tuple(e) for e in self.links), self.period, self.extra_delay,
                     self.delay_scale, self.bandwidth_scale)


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 0
    until: float = Field(60.0, gt=0, description="simulated seconds")
    topology: TopologyCfg = TopologyCfg()
    links: LinksCfg = LinksCfg()
    jitter_buffer: JitterCfg = JitterCfg()
    reliable: ReliableCfg = ReliableCfg()
    traffic: list[TrafficCfg] = []
    faults: list[FaultCfg] = []
    warehouse: dict[str, Any] | None = Field(None, description="the warehouse model's section (models/warehouse)")
    train: dict[str, Any] | None = Field(None, description="training settings for `desim train` (policies/train.py)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(text: str, file: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Parse and validate scenario TOML text; raise ScenarioError on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(file, "", f"malformed TOML: {e}") from None
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        if err["type"] == "missing":
            msg = "required field is missing"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ScenarioError(file, _loc(err["loc"]), msg + more) from None
    if sc.topology.path and base_dir is not None and not Path(sc.topology.path).is_absolute():
        sc = sc.model_copy(update={"topology": sc.topology.model_copy(update={"path": str(base_dir / sc.topology.path)})})
    return sc
