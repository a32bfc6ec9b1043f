"""PettingZoo ``ParallelEnv`` over the warehouse, in both tempos.

- ``tick``: every agent acts every step (rware's rhythm).
- ``event``: a step advances the simulation to the next instant at which some
  robots' decisions fall due; those are the acting agents of the step
  (``infos[agent]["acting"]``, and their ``action_mask`` allows every action).
  The others keep their last observation, have a NOOP-only mask, and their
  actions are ignored. Every agent stays in ``agents`` until the episode ends
  (PettingZoo's parallel contract), and rewards collected since an agent's
  last step are paid to it.

``state()`` is the global state for centralized critics: every robot's
observation vector, computed from the live floor, concatenated.

``shaping`` (a coefficient, 0 = off) adds potential-based shaping (Ng et al.
1999), which leaves the optimal policies unchanged: robot i is paid
``shaping * (gamma * phi_i' - phi_i)`` on top of its reward (``phi`` of an
episode's last state is 0), with ``shaping_potential``:

- ``"carrying"``: ``phi_i`` = robot i carries a requested shelf (its
  observation's feature 7): lifting a requested shelf pays at once, the
  delivery pays the rest;
- ``"distance"``: ``phi_i = [carries a requested shelf] - min(d_i, H) / H``,
  ``d_i`` the planned number of actions to robot i's current target and ``H``
  = ``shaping_horizon``: every step toward the target pays a little.

``shaping_terms`` (a dict; optional) weighs the per-robot terms instead:
``phi_i = carrying * [carries a requested shelf] - distance * min(d_i, H) / H``,
and robot i's own reward counts ``goal`` times (reaching a goal with a requested
shelf). Without it the terms are ``carrying = 1``, ``distance = 1`` for the
``"distance"`` potential (0 for ``"carrying"``) and ``goal = 1``.
 RWARE's reward
is so sparse that a random policy, which every learner starts as, almost never
delivers on the tiny floor; shaping gives learners a gradient from the first
step. ``infos[agent]["raw_reward"]`` always carries the unshaped reward, and
``VectorWarehouseEnv.finished_returns`` sums unshaped rewards.

PettingZoo's conventions, so its clients run unchanged (SuperSuit + Stable-Baselines3,
TorchRL's ``PettingZooWrapper``; ``tests/test_env_clients.py``):

- agents are named ``robot_0``, ``robot_1``, ... (``name_index``): clients group agents by
  the name before the last ``_`` (TorchRL makes one group ``robot``, so its policies share
  parameters). Robot ``i`` is the network node ``robot_name(i, zones)`` (``robot-Z-K``,
  the topology's name), given by ``nodes[agent]``;
- ``render_mode`` (``None`` or ``"rgb_array"``, a constructor keyword and an attribute) and
  ``render()``, which returns the live floor as an RGB frame (``render.floor_rgb``);
- ``parallel_env(**kw)`` and ``env(**kw)`` (the AEC form, by PettingZoo's own conversion)
  are the module's factories.
"""
from __future__ import annotations

import math

import functools

import numpy as np
from gymnasium import logger, spaces
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from desim.models.warehouse import scenario as wh_scenario
from desim.models.warehouse.shaping import shaping_weights
from desim.models.warehouse.features import Encoder, obs_dim
from desim.models.warehouse.navigation import plan
from desim.models.warehouse.observe import RobotObs
from desim.models.warehouse.render import floor_rgb
from desim.network.config import attach, check_graph, check_wiring
from desim.network.topology import robot_name
from desim.scenario import ScenarioBase, ScenarioError, validate
from desim.sim import Simulation

FULL_MASK = np.ones(5, dtype=np.int8)
NOOP_MASK = np.array([1, 0, 0, 0, 0], dtype=np.int8)
RENDER_MODES = ("rgb_array",)


def agent_name(i: int) -> str:
    """Robot ``i``'s agent name, in PettingZoo's ``name_index`` form (clients group agents by the name)."""
    return f"robot_{i}"


def scenario_for(size="tiny", robots=2, tempo="tick", max_steps=500, request_queue=None, reward="individual",
                 zones=1, delay_mean=0.0, jitter=0.0, loss=0.0, durations=None, tick_seconds=1.0) -> ScenarioBase:
    """The Scenario the keyword constructor describes: the floor, and a wireless hop of mean delay
    ``delay_mean`` (lognormal with ``jitter``) and Bernoulli ``loss`` between robots and controllers."""
    wh = {"size": size, "robots": robots, "zones": zones, "tempo": tempo, "reward": reward, "brain": "random",
          "tick_seconds": tick_seconds, "sample_every": max(max_steps * tick_seconds, 1.0)}
    if request_queue is not None:
        wh["request_queue"] = request_queue
    if durations:
        wh["durations"] = durations
    links = {}
    if delay_mean or jitter or loss:
        dist = "lognormal" if jitter else "constant"
        wl = {"delay": {"dist": dist, "mean": delay_mean, "jitter": jitter}}
        if loss:
            wl["loss"] = {"model": "bernoulli", "p": loss}
        links["wireless"] = wl
    return validate({"name": f"env-{size}-{robots}ag-{tempo}", "until": max_steps * tick_seconds,
                     "links": links, "warehouse": wh}, "<env>")


class WarehouseParallelEnv(ParallelEnv):
    metadata = {"name": "desim_warehouse_v0", "render_modes": list(RENDER_MODES), "is_parallelizable": True}

    def __init__(self, size: str = "tiny", robots: int = 2, tempo: str = "tick", max_steps: int = 500,
                 request_queue: int | None = None, reward: str = "individual", zones: int = 1,
                 delay_mean: float = 0.0, jitter: float = 0.0, loss: float = 0.0, durations: dict | None = None,
                 obs_radius: int = 1, tick_seconds: float = 1.0, shaping: float = 0.0, shaping_gamma: float = 0.99,
                 shaping_potential: str = "distance", shaping_horizon: int = 30, scenario: ScenarioBase | dict | None = None,
                 shaping_terms: dict | None = None,
                 render_mode: str | None = None):
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be None or one of {list(RENDER_MODES)}, got {render_mode!r}")
        self.render_mode = render_mode
        if scenario is None:
            scenario = scenario_for(size=size, robots=robots, tempo=tempo, max_steps=max_steps, request_queue=request_queue,
                                    reward=reward, zones=zones, delay_mean=delay_mean, jitter=jitter, loss=loss,
                                    durations=durations, tick_seconds=tick_seconds)
        elif isinstance(scenario, dict):  # plain data (a checkpoint's or a training run's record)
            scenario = validate(scenario, "<env>")
        if scenario.warehouse is None:
            raise ScenarioError("<env>", "warehouse", "the warehouse env needs a scenario with a [warehouse] section")
        self.scenario = scenario
        w = scenario.warehouse
        # the world this env resets into, checked and built once: the network graph and the floor's layout
        self._graph = check_graph(wh_scenario.topology(scenario, "<env>"), "<env>")
        check_wiring(scenario, self._graph, "<env>")
        self._layout = wh_scenario.check(scenario, self._graph, "<env>")
        self.tempo = w.tempo
        self.max_steps = max_steps
        self.horizon = max_steps * w.tick_seconds
        self.radius = obs_radius
        self.possible_agents = [agent_name(i) for i in range(w.robots)]
        self.nodes = {agent_name(i): robot_name(i, w.zones) for i in range(w.robots)}  # agent -> network node
        self.agents: list[str] = []
        self._obs_dim = obs_dim(obs_radius)
        self._np_random = np.random.default_rng()
        self.model = None
        if shaping_potential not in ("carrying", "distance"):
            raise ValueError(f"shaping_potential must be 'carrying' or 'distance', got {shaping_potential!r}")
        self.shaping, self.shaping_gamma, self.shaping_horizon = shaping, shaping_gamma, shaping_horizon
        self.shaping_potential = shaping_potential
        self.terms = shaping_weights(shaping_potential, shaping_terms)

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        return spaces.Box(-1.0, 1.0, (self._obs_dim,), np.float32)

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return spaces.Discrete(5)

    @property
    def state_space(self):
        return spaces.Box(-1.0, 1.0, (self._obs_dim * len(self.possible_agents),), np.float32)

    # -- the simulation, paused at each decision batch ------------------------
    @classmethod
    def from_scenario(cls, scenario: ScenarioBase | dict, max_steps: int = 500, **options) -> "WarehouseParallelEnv":
        """The env over a Scenario as written (links, faults, orders and all); ``options``: obs_radius, shaping..."""
        return cls(scenario=scenario, max_steps=max_steps, **options)

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
        sim_seed = int(self._np_random.integers(2**31 - 1))
        self.sim = Simulation(sim_seed, keep_trace=False)
        self.net = attach(self.sim, self.scenario, self._graph.copy())
        # no brain: the env's caller decides, through the model's external hook
        self.model = wh_scenario.build(self.sim, self.net, self.scenario, self._layout, None)
        self.model.external = self._take_batch
        self.encoder = Encoder(self.model.static, self.radius)
        self.agents = list(self.possible_agents)
        n = len(self.possible_agents)
        self._paid = np.zeros(n)
        self._last_obs = np.zeros((n, self._obs_dim), dtype=np.float32)
        self._batch: list = []
        self.steps = 0
        self._ended = False
        self.sim.env.process(self._deadline())
        self._advance()
        self._phi = self.potential() if self.shaping else None
        self._raw = np.zeros(n)
        return self._observations(), self._infos()

    def potential(self) -> np.ndarray:
        """Each robot's shaping potential (see the module docstring)."""
        c, w = self.terms["carrying"], self.terms["distance"]
        if w == 0:
            return c * self._last_obs[:, 7].astype(np.float64)
        m, H = self.model, self.shaping_horizon
        view = m.view()
        phi = np.zeros(m.n)
        for i in range(m.n):
            dmap, _ = plan(RobotObs(i, view, int(m.tasks[i])), self.encoder.nav)
            carry = int(view.carry[i])
            stage = float(carry >= 0 and bool(np.any(view.queue == carry)))
            d = 0 if dmap is None else min(int(dmap[int(view.cell[i]), int(view.dir[i])]), H)
            phi[i] = c * stage - w * d / H
        return phi

    def _take_batch(self, batch) -> None:
        self._batch = batch
        self._pause.succeed()

    def _deadline(self):
        yield self.sim.env.timeout(self.horizon)
        self._ended = True
        if not self._pause.triggered:
            self._pause.succeed()

    def _advance(self) -> None:
        """Run the simulation until the next decision batch (or the end of the episode)."""
        self._batch = []
        self._pause = self.sim.env.event()
        self.sim.env.run(until=self._pause)
        if self._batch and not self._ended:
            obs = self.encoder.encode_batch([ob for _i, ob, _ev in self._batch])
            for k, (i, _ob, _ev) in enumerate(self._batch):
                self._last_obs[i] = obs[k]

    # the running episode: what a copy leaves behind (see __getstate__)
    _EPISODE = ("sim", "net", "model", "encoder", "_paid", "_last_obs", "_batch", "steps", "_ended", "_pause", "_phi", "_raw")

    def __getstate__(self) -> dict:
        """A copy (pickle, ``copy.deepcopy``) is the env as made, without its running episode (SimPy's
        processes are generators, which cannot be copied), and draws from its own child of this env's
        random stream (numpy's ``spawn``; each copy the next child). SuperSuit's ``concat_vec_envs_v1``
        copies the env this way, after PettingZoo's recipe has reset it with a seed, and resets the copies
        without one: they play different episodes, reproducibly from that seed. A copy is reset before it steps."""
        state = {k: v for k, v in self.__dict__.items() if k not in self._EPISODE}
        state["model"], state["agents"] = None, []
        state["_np_random"] = self._np_random.spawn(1)[0]
        return state

    def step(self, actions: dict):
        if self.model is None:
            raise RuntimeError("step() needs a running episode: call reset() first")
        for i, _ob, ev in self._batch:
            a = actions.get(self.possible_agents[i], 0)
            ev.succeed(int(a))
        self.steps += 1
        self._advance()
        truncated = self._ended or (self.tempo == "tick" and self.steps >= self.max_steps)
        rewards = {}
        earned = self.model.rewards - self._paid
        self._paid = self.model.rewards.copy()
        self._raw = earned
        if self.terms["goal"] != 1.0:
            earned = self.terms["goal"] * earned
        if self.shaping:
            phi = np.zeros(len(earned)) if truncated else self.potential()
            earned = earned + self.shaping * (self.shaping_gamma * phi - self._phi)
            self._phi = phi
        for i, a in enumerate(self.possible_agents):
            rewards[a] = float(earned[i])
        obs, infos = self._observations(), self._infos()
        terms = {a: False for a in self.agents}
        truncs = {a: truncated for a in self.agents}
        if truncated:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    # -- what the agents see -------------------------------------------------
    def acting(self) -> np.ndarray:
        mask = np.zeros(len(self.possible_agents), dtype=bool)
        for i, _ob, _ev in self._batch:
            mask[i] = True
        return mask

    def _observations(self) -> dict:
        return {a: self._last_obs[i].copy() for i, a in enumerate(self.possible_agents)}

    def _infos(self) -> dict:
        acting = self.acting()
        return {a: {"acting": bool(acting[i]), "action_mask": FULL_MASK if acting[i] else NOOP_MASK,
                    "sim_time": float(self.sim.now), "raw_reward": float(self._raw[i])}
                for i, a in enumerate(self.possible_agents)}

    def state(self) -> np.ndarray:
        """Every robot's observation vector from the live floor, concatenated."""
        m = self.model
        view = m.view()
        obs = [RobotObs(i, view, int(m.tasks[i])) for i in range(m.n)]
        return self.encoder.encode_batch(obs).reshape(-1)

    def render(self) -> np.ndarray | None:
        """The live floor as an ``(H, W, 3)`` ``uint8`` frame in ``"rgb_array"`` mode (``render.floor_rgb``);
        without a render mode, a warning and None (Gymnasium's and PettingZoo's convention)."""
        if self.render_mode is None:
            logger.warn("render() was called without a render_mode: make the env with render_mode='rgb_array'")
            return None
        if self.model is None:
            raise RuntimeError("render() needs a floor: call reset() first")
        return floor_rgb(self.model.floor)

    def close(self) -> None:
        self.model = None


def parallel_env(**kwargs) -> WarehouseParallelEnv:
    """PettingZoo's factory convention; defaults give the tiny floor with two robots."""
    return WarehouseParallelEnv(**kwargs)


def env(**kwargs) -> AECEnv:
    """The AEC form (PettingZoo's ``env()`` factory), by PettingZoo's own ``parallel_to_aec``: agents act
    one after another and the floor steps once all have chosen."""
    return parallel_to_aec(parallel_env(**kwargs))


class VectorWarehouseEnv:
    """``n_envs`` copies stepped together: arrays in, arrays out, finished copies reset.

    ``reset() -> obs (E, N, D), state (E, S), acting (E, N)``;
    ``step(actions (E, N)) -> obs, state, rewards (E, N), done (E,), acting (E, N)``.
    """

    def __init__(self, n_envs: int, seed: int = 0, **kwargs):
        self.envs = [WarehouseParallelEnv(**kwargs) for _ in range(n_envs)]
        self.seed = seed
        self.agents = self.envs[0].possible_agents
        self.episode_returns = np.zeros((n_envs, len(self.agents)))
        self.finished_returns: list[float] = []

    def info(self) -> dict[str, int]:
        """What a learner needs (``policies.common.EnvInfo``'s fields), as ``BatchedWarehouseEnv.info``."""
        d, n = self.envs[0]._obs_dim, len(self.agents)
        return {"n_agents": n, "obs_dim": d, "state_dim": d * n, "n_actions": 5}

    def _one(self, k: int):
        env = self.envs[k]
        obs = np.stack([o for o in env._observations().values()])
        return obs, env.state(), env.acting()

    def reset(self):
        for k, env in enumerate(self.envs):
            env.reset(seed=self.seed * 1000 + k)
        self.episode_returns[:] = 0
        parts = [self._one(k) for k in range(len(self.envs))]
        return tuple(np.stack(x) for x in zip(*parts))

    def step(self, actions: np.ndarray):
        E = len(self.envs)
        rewards = np.zeros((E, len(self.agents)), dtype=np.float32)
        done = np.zeros(E, dtype=bool)
        for k, env in enumerate(self.envs):
            acts = {a: int(actions[k, i]) for i, a in enumerate(self.agents)}
            _o, rew, _t, trunc, _inf = env.step(acts)
            rewards[k] = [rew[a] for a in self.agents]
            self.episode_returns[k] += env._raw  # unshaped: returns are deliveries
            if any(trunc.values()):
                done[k] = True
                self.finished_returns.append(float(self.episode_returns[k].sum()))
                self.episode_returns[k] = 0
                env.reset(seed=int(env._np_random.integers(2**31 - 1)))
        parts = [self._one(k) for k in range(E)]
        obs, state, acting = (np.stack(x) for x in zip(*parts))
        return obs, state, rewards, done, acting

