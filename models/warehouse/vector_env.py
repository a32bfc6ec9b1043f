"""A vector env over :class:`BatchedFloor`: tensors in, tensors out, on one device.

:class:`BatchedWarehouseEnv` follows the conventions of torch-batched MARL
environments (VMAS, TorchRL): the batch (floor) dimension first, one done
flag per floor, and automatic reset (a floor that finishes is reset inside
:meth:`~BatchedWarehouseEnv.step`, and the observation returned for it is
its new episode's first). It is a drop-in for the numpy
:class:`~desim.models.warehouse.env.VectorWarehouseEnv` in the tick tempo
(every robot acts every step): the same ``reset``/``step`` signature and
shapes, ``agents``, ``episode_returns`` and ``finished_returns`` (unshaped
episode returns, appended in step then floor order), and the same
potential-based shaping options; ``on_device`` tells a learner that the
arrays are torch tensors on :attr:`device`.

Observations (``obs``): ``"features"`` (the project's feature vector,
``features.obs_dim(obs_radius)`` floats, as ``WarehouseParallelEnv``) or
``"rware"`` (rware's flattened default vector, 71 floats). The centralised
critic's ``state`` is every robot's observation concatenated: for
``"features"`` the same as ``WarehouseParallelEnv.state()``, for ``"rware"``
EPyMARL's convention.

Reward allocation (``credit``): ``"individual"`` (the floor's own rewards, as
rware pays them), ``"global"`` (every robot gets the team reward, the floor's
rewards summed over its robots) or ``"difference"`` (the team reward minus the
team reward of the same step with that robot's action replaced by NOOP,
re-simulated exactly on a scratch batch:
:mod:`~desim.models.warehouse.counterfactual`). Shaping, when on, is added to
the allocated rewards; ``finished_returns`` stay the floor's own unshaped team
return whatever the allocation.

It simulates the floor alone: a scenario given here must be a tick-tempo
``[warehouse]`` without orders and without network sections (those need the
simulated floors of ``WarehouseParallelEnv``); anything else is refused with
one line naming it.
"""
from __future__ import annotations

import torch

from desim.models.warehouse import scenario as wh_scenario
from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.batched_obs import FeatureObs, RwareObs
from desim.models.warehouse.counterfactual import Counterfactual
from desim.models.warehouse.env import WarehouseParallelEnv, scenario_for
from desim.models.warehouse.shaping import shaping_weights
from desim.models.warehouse.layout import Layout
from desim.scenario import ScenarioBase, ScenarioError, to_data, validate

__all__ = ["BatchedWarehouseEnv", "CREDITS", "OBS_KINDS"]

OBS_KINDS = ("features", "rware")
CREDITS = ("individual", "global", "difference")  # reward allocations (``credit``)
# top-level scenario sections the batched floor can honour (the rest are the network's)
_FLOOR_ONLY = {"name", "description", "seed", "until", "warehouse"}


def _floor_settings(scenario: ScenarioBase | dict) -> tuple[ScenarioBase, Layout, int, int, str]:
    """``(scenario, layout, robots, request_queue, reward)`` of a tick-tempo floor-only scenario."""
    sc = validate(scenario, "<env>") if isinstance(scenario, dict) else scenario
    w = sc.warehouse
    if w is None:
        raise ScenarioError("<env>", "warehouse", "the warehouse env needs a scenario with a [warehouse] section")
    extra = sorted(set(to_data(sc)) - _FLOOR_ONLY)
    if extra:
        raise ScenarioError("<env>", extra[0], "batched floors simulate the floor alone, without the network; "
                                               "use the simulated floors (WarehouseParallelEnv) for this section")
    if w.tempo != "tick":
        raise ScenarioError("<env>", "warehouse.tempo", "batched floors run the tick tempo only")
    if w.orders is not None:
        raise ScenarioError("<env>", "warehouse.orders", "batched floors keep rware's request queue (no order flow)")
    layout = wh_scenario.layout_of(w, "<env>")
    return sc, layout, w.robots, w.request_queue or w.robots, w.reward


class BatchedWarehouseEnv:
    """``n_envs`` warehouse floors stepped together on ``device`` (tick tempo).

    ``reset() -> (obs (E, N, D) float32, state (E, S) float32, acting (E, N) bool)``;
    ``step(actions (E, N) int64) -> (obs, state, rewards (E, N) float32, done (E,) bool, acting)``.
    All tensors live on :attr:`device`; actions may come from anywhere
    (they are moved there). Keywords as ``WarehouseParallelEnv`` (``size``,
    ``robots``, ``max_steps``, ``request_queue``, ``reward``, ``zones``,
    ``obs_radius``, the ``shaping`` options, or a ``scenario``), plus
    ``layout`` (a :class:`Layout` or an ASCII map: overrides ``size``),
    ``max_inactivity_steps`` (rware's limit; None: none), ``n_envs``,
    ``seed``, ``device``, ``obs`` and ``credit`` (the reward allocation:
    :data:`CREDITS`; after a ``"difference"`` step, ``last_counterfactual``
    ``(E, N)`` holds each robot's counterfactual team reward).
    """

    on_device = True
    n_actions = 5

    def __init__(self, size: str = "tiny", robots: int = 2, max_steps: int = 500, request_queue: int | None = None,
                 reward: str = "individual", *, n_envs: int = 1024, seed: int = 0, device: str | torch.device = "cpu",
                 obs: str = "features", obs_radius: int = 1, layout: Layout | str | None = None, zones: int = 1,
                 max_inactivity_steps: int | None = None, tempo: str = "tick", shaping: float = 0.0,
                 shaping_gamma: float = 0.99, shaping_potential: str = "distance", shaping_horizon: int = 30,
                 scenario: ScenarioBase | dict | None = None, credit: str = "individual",
                 shaping_terms: dict | None = None) -> None:
        if obs not in OBS_KINDS:
            raise ValueError(f"obs must be one of {OBS_KINDS}, got {obs!r}")
        if credit not in CREDITS:
            raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
        if shaping_potential not in ("carrying", "distance"):
            raise ValueError(f"shaping_potential must be 'carrying' or 'distance', got {shaping_potential!r}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps!r}")
        if scenario is None:
            if tempo != "tick":
                raise ValueError("batched floors run the tick tempo only (tempo='tick')")
            scenario = scenario_for(size=size if layout is None else "tiny", robots=robots, max_steps=max_steps,
                                    request_queue=request_queue, reward=reward, zones=zones)
        sc, lay, robots, request_queue, reward = _floor_settings(scenario)
        if layout is not None:
            lay = layout if isinstance(layout, Layout) else Layout.from_ascii(layout, name="custom")
        self.layout = lay
        self.n_envs, self.n_agents, self.max_steps = int(n_envs), int(robots), int(max_steps)
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine")
        self.obs_kind, self.seed = obs, int(seed)
        self.floor = BatchedFloor(lay, robots, request_queue, self.n_envs, reward, max_steps=self.max_steps,
                                  max_inactivity_steps=max_inactivity_steps, seed=self.seed, device=self.device)
        # the single-floor env's names, whatever its convention (one source for both)
        self.possible_agents = list(WarehouseParallelEnv(scenario=sc, max_steps=self.max_steps).possible_agents)
        self.agents = self.possible_agents
        self.shaping, self.shaping_gamma = float(shaping), float(shaping_gamma)
        self.shaping_potential, self.shaping_horizon = shaping_potential, int(shaping_horizon)
        self.terms = shaping_weights(shaping_potential, shaping_terms)
        needs_planner = obs == "features" or (self.shaping and self.terms["distance"] != 0)
        self._features = FeatureObs(self.floor, obs_radius) if needs_planner else None
        self._observe = self._features if obs == "features" else RwareObs(self.floor)
        self.obs_dim = self._observe.dim
        self.state_dim = self.obs_dim * self.n_agents
        E, N = self.n_envs, self.n_agents
        self.episode_returns = torch.zeros(E, N, device=self.device)  # unshaped, of the running episodes
        self._finished: list[float] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (done, return) per step, not yet read
        self._phi: torch.Tensor | None = None
        self._acting = torch.ones(E, N, dtype=torch.bool, device=self.device)
        self.credit = credit
        self._counterfactual = Counterfactual(self.floor) if credit == "difference" else None
        self.last_counterfactual: torch.Tensor | None = None

    def info(self) -> dict[str, int]:
        """What a learner needs (``policies.common.EnvInfo``'s fields)."""
        return {"n_agents": self.n_agents, "obs_dim": self.obs_dim, "state_dim": self.state_dim,
                "n_actions": self.n_actions}

    @property
    def finished_returns(self) -> list[float]:
        """Summed unshaped return of every finished episode, in step then floor order.

        Kept on the device until read (reading waits for it once, not every step)."""
        if self._pending:
            done = torch.stack([d for d, _ in self._pending])
            ret = torch.stack([r for _, r in self._pending])
            self._finished.extend(ret[done].tolist())
            self._pending.clear()
        return self._finished

    def _observe_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        obs = self._observe()
        if self._features is not None and self._observe is not self._features:
            self._features.dispatch()  # the distance potential follows the dispatcher's tasks
        return obs, obs.reshape(self.n_envs, self.state_dim)

    def potential(self) -> torch.Tensor:
        """Each robot's shaping potential ``(E, N)`` (as ``WarehouseParallelEnv.potential``)."""
        f = self.floor
        loaded = f.carry >= 0
        stage = (loaded & f.in_queue.gather(1, f.carry.clamp(min=0))).float()
        c, w = self.terms["carrying"], self.terms["distance"]
        if w == 0:
            return c * stage
        H = self.shaping_horizon
        d = self._features.distance(self._features.tasks).clamp(max=H).float()
        return c * stage - w * d / H

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every floor starts a new episode; with ``seed``, the streams restart from that seed
        (the same seed replays the same episodes)."""
        if seed is not None:
            self.seed = self.floor.seed = int(seed)
            self.floor.episode.zero_()
        self.floor.reset()
        if self._features is not None:
            self._features.reset_tasks()
        self.episode_returns.zero_()
        obs, state = self._observe_all()
        self._phi = self.potential() if self.shaping else None
        return obs, state, self._acting

    def step(self, actions: torch.Tensor):
        """One step of every floor; finished floors are reset (their obs is the next episode's first)."""
        if not self.floor.ready:
            raise RuntimeError("step() needs a running episode: call reset() first")
        a = torch.as_tensor(actions, device=self.device)
        if self._counterfactual is not None:  # from the state this step starts from, before it is taken
            self.last_counterfactual = self._counterfactual.team_rewards(a)
        raw, done = self.floor.step(a)
        self.episode_returns += raw
        self._pending.append((done, self.episode_returns.sum(1)))
        if len(self._pending) >= 4096:
            _ = self.finished_returns  # bound what waits on the device
        self.episode_returns = torch.where(done[:, None], 0.0, self.episode_returns)
        self.floor.reset(done)
        if self._features is not None:
            self._features.reset_tasks(done)
        obs, state = self._observe_all()
        rewards = self._allocate(raw)
        if self.terms["goal"] != 1.0:
            rewards = self.terms["goal"] * rewards
        if self.shaping:
            phi = self.potential()
            nxt = torch.where(done[:, None], 0.0, phi)
            rewards = rewards + self.shaping * (self.shaping_gamma * nxt - self._phi)
            self._phi = phi
        return obs, state, rewards, done, self._acting

    def _allocate(self, raw: torch.Tensor) -> torch.Tensor:
        """Each robot's reward under ``credit`` from the floor's own ``raw`` rewards of this step."""
        if self.credit == "individual":
            return raw
        team = raw.sum(1, keepdim=True)
        if self.credit == "global":
            return team.expand_as(raw).contiguous()
        return team - self.last_counterfactual

    def close(self) -> None:
        self._pending.clear()
