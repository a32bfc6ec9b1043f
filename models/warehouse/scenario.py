"""The ``[warehouse]`` section of a scenario, and the warehouse as a registered model.

:func:`register` (entry point ``warehouse``) adds the section and the model
to the kernel's registries. The wiring layer then calls, once per run,
:func:`topology` (the network the floor needs: zone controllers, robots,
services), :func:`check` (the layout, built once and checked against the
robots and request queue) and :func:`build` (the model on a fresh
simulation, with the brain the wiring layer resolved).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from desim.models.services import config as services
from desim.models.warehouse import printout
from desim.models.warehouse.layout import Layout
from desim.models.warehouse.pipeline_config import PipelineCfg
from desim.network import topology as T
from desim.registry import ModelSpec, SectionSpec, models, sections
from desim.scenario import MAX_UNTIL, PathField, ScenarioError, Section

MIN_STEP, MAX_STEP = 0.01, 3600.0  # seconds an action, a tick or an observation wait may take


class DurationsCfg(Section):
    """Seconds each action takes in the event tempo (a loaded robot moves at ``move_loaded``)."""

    move: float = Field(1.0, ge=MIN_STEP, le=MAX_STEP)
    move_loaded: float = Field(1.0, ge=MIN_STEP, le=MAX_STEP)
    turn: float = Field(1.0, ge=MIN_STEP, le=MAX_STEP)
    load: float = Field(1.0, ge=MIN_STEP, le=MAX_STEP)
    noop: float = Field(1.0, ge=MIN_STEP, le=MAX_STEP)
    jitter: float = Field(0.0, ge=0, lt=1, description="each duration times U(1 - jitter, 1 + jitter)")


class PeakCfg(Section):
    at: float = Field(ge=0, le=MAX_UNTIL)
    duration: float = Field(gt=0, le=MAX_UNTIL)
    factor: float = Field(gt=0, le=1000)


class OrdersCfg(Section):
    """A production order stream: Poisson arrivals with peaks; orders fail after ``max_age``."""

    rate_per_hour: float = Field(gt=0, le=1e7)
    peaks: list[PeakCfg] = Field([], max_length=1000)
    max_age: float | None = Field(None, gt=0, le=MAX_UNTIL, description="seconds before an undelivered order fails")


class WarehouseCfg(Section):
    size: Literal["tiny", "small", "medium", "large"] | None = "tiny"
    map: PathField = Field(None, description="ASCII map file (x shelf, g goal, . highway); overrides size")
    shelf_columns: int | None = Field(None, ge=1, le=99, description="custom rware floor: shelf columns (odd); overrides size")
    shelf_rows: int | None = Field(None, ge=1, le=99, description="custom rware floor: shelf rows; with shelf_columns")
    column_height: int = Field(8, ge=1, le=100)
    robots: int = Field(2, ge=1, le=10_000)
    zones: int = Field(1, ge=1, le=1000)
    tempo: Literal["tick", "event"] = "tick"
    request_queue: int | None = Field(None, ge=1, le=100_000, description="request slots on the floor (default: robots)")
    reward: Literal["global", "individual", "two_stage"] = "individual"
    brain: str = Field("greedy", description="the robots' brain: a brain spec (random, greedy, epsilon_greedy:EPS, checkpoint:PATH#MODE)")
    tick_seconds: float = Field(1.0, ge=MIN_STEP, le=MAX_STEP)
    durations: DurationsCfg = DurationsCfg()
    obs_timeout: float = Field(2.0, ge=MIN_STEP, le=MAX_STEP, description="event tempo: seconds a robot waits for an observation before asking again")
    orders: OrdersCfg | None = None
    stuck_after: float = Field(30.0, ge=MIN_STEP, le=MAX_UNTIL, description="a robot with work that has not moved for this long is deadlocked")
    sample_every: float = Field(10.0, ge=0.1, le=MAX_UNTIL, description="seconds between time-series samples")

    @model_validator(mode="after")
    def _zones(self):
        if self.zones > self.robots:
            raise ValueError(f"zones ({self.zones}) must not exceed robots ({self.robots})")
        return self


def layout_of(cfg: WarehouseCfg, file: str = "<scenario>") -> Layout:
    """The floor a section describes: a map file, custom shelf rows/columns, or a named rware size."""
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


def topology(sc, file: str = "<scenario>"):
    """The floor decides how many robots and zones the network has."""
    if sc.topology.kind != "warehouse":
        raise ScenarioError(file, "topology.kind", "a scenario with a [warehouse] needs the 'warehouse' topology")
    w = sc.warehouse
    g = T.warehouse(w.zones, 0, tuple(sc.topology.services), robots=w.robots)
    if services.enabled(sc):  # the inventory's replicas and the tool services, on the core
        services.add_nodes(g, sc)
    return g


def check(sc, graph, file: str = "<scenario>") -> Layout:
    """The layout, built once, checked against the robots and the request queue."""
    cfg = sc.warehouse
    layout = layout_of(cfg, file)
    if cfg.robots > layout.n_cells:
        raise ScenarioError(file, "warehouse.robots", f"{cfg.robots} robots do not fit on a floor of {layout.n_cells} cells")
    q = cfg.request_queue or cfg.robots
    if q >= layout.n_shelves:
        raise ScenarioError(file, "warehouse.request_queue", f"must be below the number of shelves ({layout.n_shelves}), got {q}")
    belief = getattr(sc, "belief", None)
    if belief is not None and belief.peers and cfg.tempo != "event":
        raise ScenarioError(file, "belief.peers", "robots act on beliefs of their peers only in the event tempo "
                                                  '(warehouse.tempo = "event")')
    if services.enabled(sc):
        if cfg.orders is None:
            raise ScenarioError(file, "warehouse.orders", "the order pipeline and its services need an order stream ([warehouse.orders])")
        services.check(sc, graph, file)
    return layout


def rate(sc, layout: Layout) -> float:
    """Events per simulated second, over-estimated: robots' decisions (with their messages in the
    event tempo), orders and samples."""
    w = sc.warehouse
    if w.tempo == "tick":
        decisions = (1 + w.robots) / w.tick_seconds
    else:  # obs request, observation, command, action end, over a few hops each
        decisions = 10 * w.robots / min(w.durations.move, w.durations.move_loaded, w.durations.turn, w.durations.load,
                                         w.durations.noop, w.obs_timeout)
    orders = 0.0
    if w.orders is not None:
        orders = 3 * w.orders.rate_per_hour / 3600 * max([1.0] + [p.factor for p in w.orders.peaks])
    extra = services.rate(sc, orders / 3) if services.enabled(sc) else 0.0
    return decisions + orders + w.robots / w.sample_every + extra


def build(sim, net, sc, layout: Layout, brain):
    """The warehouse model on a fresh simulation; ``brain`` decides for every robot (None: an ``external`` hook will);
    with the services' sections, the services and the order pipeline wired in (``pipeline.build``)."""
    from desim.models.warehouse.pipeline import build as build_model  # lazy: Mesa costs ~1 s that `desim validate` skips
    return build_model(sim, net, sc, layout, brain)


def register() -> None:
    sections.register("warehouse", SectionSpec(WarehouseCfg, owner="desim.models.warehouse",
                                               description="the warehouse model (rware rules, two tempos)"))
    services.register()
    sections.register("pipeline", SectionSpec(PipelineCfg, owner="desim.models.warehouse",
                                              description="the warehouse's order pipeline and procurement agent",
                                              requires="warehouse"))
    models.register("warehouse", ModelSpec("warehouse", build=build, check=check, topology=topology, brain_field="brain",
                                           rate=rate, description="robots on an rware-rules floor",
                                           figures=printout.FIGURES, refines=printout.REFINES,
                                           printout=printout.printout, headline=printout.headline))
