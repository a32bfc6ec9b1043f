"""The ``[warehouse]`` section of a scenario file."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from desim.scenario import ScenarioError, _loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DurationsCfg(_Strict):
    """Seconds each action takes in the event tempo (a loaded robot moves at ``move_loaded``)."""

    move: float = Field(1.0, gt=0)
    move_loaded: float = Field(1.0, gt=0)
    turn: float = Field(1.0, gt=0)
    load: float = Field(1.0, gt=0)
    noop: float = Field(1.0, gt=0)
    jitter: float = Field(0.0, ge=0, lt=1, description="each duration times U(1 - jitter, 1 + jitter)")


class PeakCfg(_Strict):
    at: float = Field(ge=0)
    duration: float = Field(gt=0)
    factor: float = Field(gt=0)


class OrdersCfg(_Strict):
    """A production order stream: Poisson arrivals with peaks; orders fail after ``max_age``."""

    rate_per_hour: float = Field(gt=0)
    peaks: list[PeakCfg] = []
    max_age: float | None = Field(None, gt=0, description="seconds before an undelivered order fails")


class WarehouseCfg(_Strict):
    size: Literal["tiny", "small", "medium", "large"] | None = "tiny"
    map: str | None = Field(None, description="ASCII map file (x shelf, g goal, . highway); overrides size")
    shelf_columns: int | None = Field(None, ge=1, description="custom rware floor: shelf columns (odd); overrides size")
    shelf_rows: int | None = Field(None, ge=1, description="custom rware floor: shelf rows; with shelf_columns")
    column_height: int = Field(8, ge=1)
    robots: int = Field(2, ge=1)
    zones: int = Field(1, ge=1)
    tempo: Literal["tick", "event"] = "tick"
    request_queue: int | None = Field(None, ge=1, description="request slots on the floor (default: robots)")
    reward: Literal["global", "individual", "two_stage"] = "individual"
    brain: str = "greedy"
    tick_seconds: float = Field(1.0, gt=0)
    durations: DurationsCfg = DurationsCfg()
    obs_timeout: float = Field(2.0, gt=0, description="event tempo: seconds a robot waits for an observation before asking again")
    orders: OrdersCfg | None = None
    stuck_after: float = Field(30.0, gt=0, description="a robot with work that has not moved for this long is deadlocked")
    sample_every: float = Field(10.0, gt=0, description="seconds between time-series samples")

    @model_validator(mode="after")
    def _zones(self):
        if self.zones > self.robots:
            raise ValueError(f"zones ({self.zones}) must not exceed robots ({self.robots})")
        return self


def parse_section(sc, file: str = "<scenario>") -> WarehouseCfg:
    try:
        cfg = WarehouseCfg.model_validate(sc.warehouse)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise ScenarioError(file, _loc(("warehouse",) + tuple(err["loc"])), msg) from None
    if cfg.map is not None and file != "<scenario>" and not Path(cfg.map).is_absolute():
        cfg = cfg.model_copy(update={"map": str(Path(file).parent / cfg.map)})
    return cfg


def layout_of(cfg: WarehouseCfg, file: str = "<scenario>"):
    from desim.models.warehouse.layout import Layout

    if cfg.map is not None:
        try:
            return Layout.from_file(cfg.map)
        except FileNotFoundError:
            raise ScenarioError(file, "warehouse.map", f"no such file {cfg.map!r}") from None
        except ValueError as e:
            raise ScenarioError(file, "warehouse.map", str(e)) from None
    if cfg.shelf_columns is not None or cfg.shelf_rows is not None:
        try:
            return Layout.from_params(cfg.shelf_columns or 3, cfg.shelf_rows or 1, cfg.column_height,
                                      name=f"custom-{cfg.shelf_columns}x{cfg.shelf_rows}")
        except ValueError as e:
            raise ScenarioError(file, "warehouse.shelf_columns", str(e)) from None
    return Layout.from_size(cfg.size, cfg.column_height)


def check_section(sc, graph, file: str = "<scenario>") -> WarehouseCfg:
    cfg = parse_section(sc, file)
    layout = layout_of(cfg, file)
    if cfg.robots > layout.n_cells:
        raise ScenarioError(file, "warehouse.robots", f"{cfg.robots} robots do not fit on a floor of {layout.n_cells} cells")
    q = cfg.request_queue or cfg.robots
    if q >= layout.n_shelves:
        raise ScenarioError(file, "warehouse.request_queue", f"must be below the number of shelves ({layout.n_shelves}), got {q}")
    from desim.policies import make_brain

    import numpy as np

    try:
        if not cfg.brain.startswith("checkpoint:"):
            make_brain(cfg.brain, np.random.default_rng(0))
    except ValueError as e:
        raise ScenarioError(file, "warehouse.brain", str(e)) from None
    return cfg


def build_model(sim, net, sc, graph, overrides: dict, file: str = "<scenario>", brain=None):
    """The warehouse model for a scenario; ``overrides`` (e.g. ``brain``) replace section fields."""
    from desim.models.warehouse.model import WarehouseModel

    cfg = parse_section(sc, file)
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    return WarehouseModel(sim, net, cfg, layout_of(cfg, file), brain=brain)
