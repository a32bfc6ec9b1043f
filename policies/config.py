"""The ``[train]`` section: what ``desim train`` does around a learner (its hyperparameters sit in ``[train.<algo>]``)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_serializer, model_validator

from desim.models.warehouse.shaping import shaping_weights
from desim.registry import policies
from desim.policies.spec import learner_class
from desim.scenario import FieldError, Section


class TrainConfig(Section):
    """Training settings, one field each; ``[train.<algo>]`` tables (e.g. ``[train.mappo]``) hold a
    learner's hyperparameters, checked by that learner when it is built."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    episode_steps: int = Field(500, ge=1, le=1_000_000, description="decisions per training episode (rware's default episode length)")
    n_envs: int = Field(8, ge=1, le=65_536, description="env copies stepped together; the policy sees one batch per step")
    floors: Literal["simulated", "batched"] = Field("simulated", description="simulated: every copy is the scenario's simulation as written; batched: n_envs rware floors as tensors on the training device (tick tempo, the floor alone; PPO learners)")
    observations: Literal["features", "rware"] = Field("features", description="features: desim's feature vector (what brains see); rware: rware's own observation vector (batched floors only; for comparisons with rware results)")
    checkpoint_every: int = Field(25_000, ge=1, le=10**12, description="env steps between candidate checkpoints")
    eval_episodes: int = Field(4, ge=1, le=10_000, description="held-out episodes per candidate")
    eval_seed: int = Field(1_000_000, ge=1, le=2**40, description="held-out env seeds are eval_seed*1000+k; training seeds seed*1000+k, seed < eval_seed")
    eval_mode: Literal["sample", "argmax"] = Field("sample", description="sample: the policy as deployed (seeded draws); argmax: its most probable actions")
    margin_abs: float = Field(1.0, ge=0, le=1e9, description="a candidate may trail the incumbent by this much return ...")
    margin_frac: float = Field(0.1, ge=0, le=1e3, description="... plus this fraction of the incumbent's return, and still be promoted")
    rollback: bool = Field(True, description="False: every candidate is promoted (no gate)")
    log_every_s: float = Field(2.0, ge=0, le=86_400, description="seconds between appends of curve rows to the store")
    obs_radius: int = Field(1, ge=0, le=20, description="observation window radius (obs_dim = 14 + 5 (2r+1)^2)")
    torch_threads: int = Field(1, ge=0, le=1024, description="CPU threads for torch (small networks gain nothing from more; 0: torch's default)")
    shaping: float = Field(0.0, ge=-1e6, le=1e6, description="potential-based reward shaping weight w (0: off, rware's reward)")
    shaping_potential: Literal["carrying", "distance"] = Field("carrying", description="carrying: lifting a requested shelf pays at once; distance: every step toward the target")
    shaping_gamma: float = Field(0.99, gt=0, le=1, description="the shaping's discount; keep it equal to the learner's gamma")
    shaping_terms: dict[str, float] | None = Field(None, description="per-robot shaping terms and their weights, instead of shaping_potential: {carrying = c, distance = d, goal = g}: phi = c [carries a requested shelf] - d (planned distance to the target)/horizon, and the robot's own delivery reward counts g times (missing terms 0, goal 1)")
    credit: Literal["individual", "global", "difference", "shaped"] = Field("individual", description="reward allocation: individual: each robot's own reward (rware's); global: the team reward (summed over robots) for every robot; difference: team reward minus the team reward of the same step with that robot on NOOP (exact re-simulation; batched floors); shaped: individual plus the potential-based shaping term (needs a shaping weight). global and difference need batched floors")

    learners: dict[str, dict[str, Any]] = Field(default_factory=dict, description="the [train.<algo>] tables, by learner")

    @model_validator(mode="before")
    @classmethod
    def _learner_tables(cls, data: Any) -> Any:
        """``[train.mappo]`` is written beside the settings; keep such tables apart (any other unknown key is an error)."""
        if isinstance(data, dict):
            data = dict(data)
            tables = {k: data.pop(k) for k in list(data) if k not in cls.model_fields and k in policies
                      and policies.get(k).kind == "learner"}
            if tables:
                data["learners"] = {**(data.get("learners") or {}), **tables}
        return data

    @model_validator(mode="after")
    def _learner_ranges(self):
        """Each ``[train.<algo>]`` table checked by its learner's config (names, types, ranges) when the file is read."""
        from desim.policies.common import ConfigError, make_config  # lazy: torch (~1.5 s), only for files with learner tables

        for algo, table in self.learners.items():
            try:
                make_config(learner_class(algo).Config, table)
            except ConfigError as e:
                raise FieldError((algo, e.field), e.problem) from None
        return self

    @model_validator(mode="after")
    def _known_terms(self):
        if self.shaping_terms is not None:
            try:
                shaping_weights(self.shaping_potential, self.shaping_terms)
            except ValueError as e:
                raise FieldError(("shaping_terms",), str(e)) from None
        return self

    @model_validator(mode="after")
    def _shaped_needs_a_weight(self):
        if self.credit == "shaped" and self.shaping == 0:
            raise FieldError(("credit",), 'shaped rewards need a shaping weight: set [train] shaping (e.g. 0.5)')
        return self

    @model_validator(mode="after")
    def _rware_needs_batched(self):
        if self.observations == "rware" and self.floors != "batched":
            raise FieldError(("observations",), 'rware observations need batched floors (floors = "batched")')
        return self

    @model_serializer(mode="wrap")
    def _flat(self, handler) -> dict[str, Any]:
        out = handler(self)
        out.update(out.pop("learners", None) or {})  # back to [train.<algo>] tables
        return out

    def learner_table(self, algo: str) -> dict[str, Any]:
        """The ``[train.<algo>]`` hyperparameters as written (checked by the learner)."""
        return dict(self.learners.get(algo) or {})

    def settings(self) -> dict[str, Any]:
        """The training settings without the learner tables."""
        return {k: getattr(self, k) for k in type(self).model_fields if k != "learners"}
