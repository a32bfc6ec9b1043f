"""Tools for the nonstationarity that learning agents cause one another, each a config switch.

In a multi-agent learner every agent's world includes the other agents'
policies, which change as they learn. These pieces let a learner (any of
them: plain classes and functions, no learner imports) damp or expose that:

- ``RewardNormalizer`` (switch ``reward_norm``): one running mean/std over all
  agents' rewards, so every agent's reward is scaled alike and the scale does
  not drift with who happens to be delivering.
- the staleness filter (switch ``max_staleness``) lives in ``policies.replay``.
- ``RoleRotation`` (switch ``role_rotation``): agent ids permuted per episode,
  applied consistently to the id one-hots (via the row order), the state's
  per-robot blocks, actions and rewards, and undone before actions reach the
  robots; a shared policy cannot overfit to an index.
- ``PolicyVersions`` (switch ``adoption_lag``): each agent picks up a newly
  published policy version after a random lag (exponential, mean in steps or
  simulated seconds), as in a rollout to a real fleet; ``grouped_forward``
  runs a batch whose rows use different versions with one forward pass per
  version group.

Usage by a learner (what ``policies.mappo``, ``policies.value_decomposition``
and ``policies.coma`` do); ``Switches`` sets the three up from the config::

    sw = Switches(cfg, venv, n_agents, net, policy_version, seed)   # roles, clock, versions (None: no lag)
    # each vector step:
    o = sw.roles.to_roles(obs)                                   # role order
    v = sw.in_use(policy_version)                                # (E, N): the version each agent runs
    logits = grouped_forward(net, sw.versions.snapshots, v.reshape(-1), x)   # x: (E*N, in)
    ... venv.step(sw.roles.to_robots(a)); sw.clock.tick(done)
    # after each gradient update:
    sw.publish(policy_version, net)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from desim.policies.common import RunningMeanStd


@dataclass
class SwitchConfig:
    """The nonstationarity switches, all off by default: every learner's config extends this."""

    reward_norm: bool = False  # scale every agent's reward by one running std pooled over all agents
    max_staleness: int | None = None  # drop samples (steps) where some agent's version lags the learner's by more than k updates
    role_rotation: bool = False  # permute agent ids (roles) per episode and env copy
    adoption_lag: float | None = None  # mean lag before an agent adopts a new policy version (None: at once)
    adoption_clock: str = "steps"  # the lag's unit: 'steps' (vector steps) or 'seconds' (simulated)
    adoption_history: int = 4  # policy versions kept for agents still running old ones


class RewardNormalizer:
    """Running mean/std of every agent's reward pooled into one statistic.

    ``update(rewards)`` takes any array of rewards (e.g. ``(E, N)``; an
    optional boolean ``where`` picks the entries that count) and folds every
    entry in. ``__call__(rewards)`` scales by the running std; with
    ``center=True`` it also subtracts the running mean (off by default: a
    shifted reward turns "nothing happened" into a penalty or a bonus, which
    changes the task where episodes have ends).
    """

    def __init__(self, center: bool = False):
        self.rms = RunningMeanStd(())
        self.center = center

    def update(self, rewards, where=None) -> None:
        r = np.asarray(rewards, dtype=np.float64)
        r = r[np.asarray(where, dtype=bool)] if where is not None else r.reshape(-1)
        if r.size:
            self.rms.update(r)

    def __call__(self, rewards):
        mean = float(self.rms.mean) if self.center else 0.0
        return (rewards - mean) / float(self.rms.std)

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, d: dict) -> None:
        self.rms.load_state_dict(d)


class RoleRotation:
    """A permutation of roles per episode and env copy.

    ``perm[e, robot]`` is the role robot ``robot`` plays in env copy ``e``'s
    current episode; a learner's arrays are kept in role order (row ``k`` is
    the robot playing role ``k``, and its agent-id one-hot is ``k``).
    ``to_roles`` reorders a robot-indexed axis into role order,
    ``to_robots`` undoes it (actions go back to the robots that chose them).
    ``enabled=False`` keeps the identity, so a learner calls it unconditionally.
    """

    def __init__(self, n_envs: int, n_agents: int, enabled: bool = True, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.enabled = enabled
        self.perm = np.tile(np.arange(n_agents), (n_envs, 1))
        self.inv = self.perm.copy()  # inv[e, role] = robot
        for e in range(n_envs):
            self.new_episode(e)

    def new_episode(self, e: int) -> None:
        """Draw env copy ``e``'s permutation for its next episode."""
        n = self.perm.shape[1]
        p = self.rng.permutation(n) if self.enabled else np.arange(n)
        self.perm[e] = p
        self.inv[e] = np.argsort(p)

    def to_roles(self, x: np.ndarray) -> np.ndarray:
        """``x (E, N, ...)`` indexed by robot -> indexed by role."""
        return np.take_along_axis(x, self._idx(self.inv, x), axis=1)

    def to_robots(self, x: np.ndarray) -> np.ndarray:
        """``x (E, N, ...)`` indexed by role -> indexed by robot."""
        return np.take_along_axis(x, self._idx(self.perm, x), axis=1)

    def state_to_roles(self, state: np.ndarray) -> np.ndarray:
        """A global state made of one equal block per robot (``(E, N*B)``), blocks put in role order.
        A state that does not split into ``N`` equal blocks is returned unchanged."""
        E, S = state.shape
        n = self.perm.shape[1]
        if S % n:
            return state
        return self.to_roles(state.reshape(E, n, S // n)).reshape(E, S)

    @staticmethod
    def _idx(order: np.ndarray, x: np.ndarray) -> np.ndarray:
        return order.reshape(order.shape + (1,) * (x.ndim - 2))


class AdoptionClock:
    """Per env copy, the time adoption lags are measured on; it never runs backwards.

    ``unit='steps'``: the copy's vector steps so far. ``unit='seconds'``: its
    simulated time, summed over episodes (a finished episode adds its horizon,
    since a reset restarts the simulation at 0). Call ``tick(done)`` after
    every vector step; ``now()`` gives ``(E,)`` times.
    """

    def __init__(self, venv, unit: str = "steps"):
        if unit not in ("steps", "seconds"):
            raise ValueError(f"adoption clock must be 'steps' or 'seconds', got {unit!r}")
        self.venv, self.unit = venv, unit
        self.elapsed = np.zeros(len(venv.envs))  # steps, or seconds of finished episodes

    def tick(self, done) -> None:
        if self.unit == "steps":
            self.elapsed += 1
            return
        for e in np.flatnonzero(done):
            env = self.venv.envs[e]
            self.elapsed[e] += float(getattr(env, "horizon", 0.0))

    def now(self) -> np.ndarray:
        if self.unit == "steps":
            return self.elapsed.copy()
        return self.elapsed + np.array([float(env.sim.now) for env in self.venv.envs])


class PolicyVersions:
    """Which policy version each agent runs while new versions roll out with a lag.

    ``publish(version, module, now)`` snapshots ``module``'s parameters as
    ``version`` and gives every agent (``(E, N)``: env copy x agent) an
    adoption time ``now + Exp(mean_lag)`` (``now``: scalar or ``(E,)``);
    ``advance(now)`` switches each agent whose time has come to the newest
    version it is due for and returns the ``(E, N)`` versions in use.

    Guarantees: an agent's version never decreases; with ``mean_lag`` 0 (or
    None) every agent switches at the publish itself; the first version
    published is adopted at once by everyone; only the last
    ``history`` snapshots are kept, and an agent whose version falls out of
    the history is moved up to the oldest kept one (so the fleet never runs
    more than ``history`` versions).
    """

    def __init__(self, n_envs: int, n_agents: int, mean_lag: float | None = 0.0, history: int = 4, seed: int = 0):
        self.mean_lag = float(mean_lag or 0.0)
        self.history = history
        self.rng = np.random.default_rng(seed)
        self.current = np.full((n_envs, n_agents), -1, dtype=np.int64)
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        # pending[v] = (E, N) adoption times of version v
        self.pending: dict[int, np.ndarray] = {}

    def publish(self, version: int, module: nn.Module, now=0.0) -> None:
        self.snapshots[version] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        shape = self.current.shape
        lag = self.rng.exponential(self.mean_lag, size=shape) if self.mean_lag > 0 else np.zeros(shape)
        self.pending[version] = np.broadcast_to(np.asarray(now, dtype=np.float64).reshape(-1, 1), shape) + lag
        for v in sorted(self.snapshots)[: -self.history]:
            del self.snapshots[v]
            self.pending.pop(v, None)
        self.current[self.current < 0] = version  # a fleet starts on the first version published
        self.current = np.maximum(self.current, min(self.snapshots))
        if self.mean_lag <= 0:
            self.advance(now)

    def advance(self, now) -> np.ndarray:
        """Adopt every version whose time has come (the newest wins); returns ``(E, N)`` versions."""
        now = np.broadcast_to(np.asarray(now, dtype=np.float64).reshape(-1, 1), self.current.shape)
        for v in sorted(self.pending):
            due = (self.pending[v] <= now) & (self.current < v)
            self.current = np.where(due, v, self.current)
        for v in [v for v in self.pending if (self.current >= v).all()]:
            del self.pending[v]  # everyone is at or past it
        return self.current.copy()

    def module(self, base: nn.Module, version: int) -> nn.Module:
        """A copy of ``base`` holding ``version``'s parameters (for evaluation or export)."""
        m = copy.deepcopy(base)
        m.load_state_dict(self.snapshots[version])
        return m


def grouped_forward(module: nn.Module, snapshots: dict[int, dict[str, torch.Tensor]],
                    versions, x: torch.Tensor, *extra: torch.Tensor):
    """``module`` applied to each row of ``x`` with that row's version's parameters.

    ``versions`` (``(B,)``) names a snapshot per row; rows sharing a version go
    through one forward pass (``torch.func.functional_call``), and outputs come
    back in row order. ``extra`` inputs (a recurrent module's hidden state) are
    split by row alongside ``x``; a module returning a tuple (``(out, h')``)
    gets a tuple back. Versions missing from ``snapshots`` use ``module``'s
    live parameters.
    """
    versions = np.asarray(versions).reshape(-1)
    groups = np.unique(versions)
    if len(groups) == 1 and int(groups[0]) not in snapshots:
        return module(x, *extra)
    outs: list[torch.Tensor] | None = None
    single = False
    for v in groups:
        rows = torch.as_tensor(np.flatnonzero(versions == v), device=x.device)
        args = (x[rows],) + tuple(e[rows] for e in extra)
        params = snapshots.get(int(v))
        y = module(*args) if params is None else functional_call(module, params, args)
        if isinstance(y, torch.Tensor):
            y, single = (y,), True
        if outs is None:
            outs = [part.new_empty((x.shape[0],) + part.shape[1:]) for part in y]
        for o, part in zip(outs, y):
            o[rows] = part
    return outs[0] if single else tuple(outs)


class Switches:
    """The role rotation, adoption clock and policy versions of one training run,
    built from a learner's config (fields ``role_rotation``, ``adoption_lag``,
    ``adoption_clock``, ``adoption_history``); ``versions`` is None without a lag."""

    def __init__(self, cfg, venv, n_agents: int, module: nn.Module, version: int, seed: int):
        n_envs = len(venv.envs)
        self.roles = RoleRotation(n_envs, n_agents, enabled=cfg.role_rotation, seed=seed + 1)
        self.clock = AdoptionClock(venv, cfg.adoption_clock)
        self.versions: PolicyVersions | None = None
        if cfg.adoption_lag is not None:
            self.versions = PolicyVersions(n_envs, n_agents, cfg.adoption_lag, cfg.adoption_history, seed=seed + 2)
            self.versions.publish(version, module)

    def in_use(self, current: int) -> np.ndarray:
        """``(E, N)``: the version each agent runs now (everyone on ``current`` without a lag)."""
        if self.versions is None:
            return np.full(self.roles.perm.shape, current)
        return self.versions.advance(self.clock.now())

    def publish(self, version: int, module: nn.Module) -> None:
        """A new version after an update (a no-op without a lag)."""
        if self.versions is not None:
            self.versions.publish(version, module, self.clock.now())
