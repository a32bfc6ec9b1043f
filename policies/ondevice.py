"""PPO-family training on batched floors, without leaving the device.

``MAPPO.train`` (and so IPPO's) hands a vector env that keeps its floors as
torch tensors (``models.warehouse.vector_env.BatchedWarehouseEnv``: its
``on_device`` attribute is true) to :func:`train_on_device`. The loop is the
same algorithm as the numpy one in ``policies.mappo`` (one forward pass per
step for every agent of every floor, GAE, value normalisation, the clipped
update in ``MAPPO._update``), but every buffer is a tensor on the learner's
device: observations, actions, log-probabilities, values, rewards and done
flags never travel to the host during a rollout. What crosses is one small
copy per update: the value normaliser's and reward normaliser's running
statistics and the finished episodes' returns for the log.

In the tick tempo every robot acts every step, so GAE is the plain recursion
over steps (:func:`gae_t`; ``gae_over_decisions`` with every agent active
reduces to it). Feed-forward actors only, and without the role rotation,
asynchronous adoption or staleness switches (they index per-copy host state):
:func:`check_supported` names the setting that would need the simulated
floors.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from desim.policies.common import ConfigError

# settings the on-device loop does not implement, with what they are for
_UNSUPPORTED = {
    "recurrent": "a recurrent actor",
    "role_rotation": "role rotation",
    "adoption_lag": "asynchronous policy adoption",
    "max_staleness": "the staleness filter",
}


def check_supported(cfg) -> None:
    """Raise :class:`ConfigError` for a setting batched floors cannot train with (one line, naming it)."""
    for field, what in _UNSUPPORTED.items():
        value = getattr(cfg, field, None)
        if value not in (None, False):
            raise ConfigError(field, f"{what} is not available on batched floors; "
                                     "train on simulated floors ([train] floors = \"simulated\") to use it")


def gae_t(rewards: torch.Tensor, values: torch.Tensor, last_values: torch.Tensor, dones: torch.Tensor,
          gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE along time for ``(T, E, N)`` rewards and values, ``(E, N)`` last values and ``(T, E)`` done
    flags (the episode ended after step t: no bootstrap across it). Every agent acts every step.
    Returns ``(advantages, returns)`` in float32."""
    T = rewards.shape[0]
    adv = torch.zeros_like(values, dtype=torch.float32)
    next_v = last_values.float()
    next_adv = torch.zeros_like(next_v)
    for t in reversed(range(T)):
        keep = 1.0 - dones[t].float().unsqueeze(-1)
        delta = rewards[t] + gamma * next_v * keep - values[t]
        next_adv = delta + gamma * lam * keep * next_adv
        adv[t] = next_adv
        next_v = values[t]
    return adv, adv + values


class _RunningStd:
    """The pooled running mean/variance of the reward normaliser, kept on the device (Chan's update),
    written back to the learner's ``RewardNormalizer`` after each rollout (for checkpoints)."""

    def __init__(self, norm, device: torch.device):
        self.norm = norm
        rms = norm.rms
        self.mean = torch.tensor(float(rms.mean), dtype=torch.float64, device=device)
        self.var = torch.tensor(float(rms.var), dtype=torch.float64, device=device)
        self.count = torch.tensor(float(rms.count), dtype=torch.float64, device=device)

    def update(self, r: torch.Tensor) -> None:
        r = r.reshape(-1).double()
        b_mean, b_var, b_n = r.mean(), r.var(unbiased=False), r.numel()
        delta = b_mean - self.mean
        tot = self.count + b_n
        self.mean = self.mean + delta * b_n / tot
        self.var = (self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / tot) / tot
        self.count = tot

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        mean = self.mean if self.norm.center else 0.0
        return ((r - mean) / torch.sqrt(self.var + 1e-8)).float()

    def write_back(self) -> None:
        rms = self.norm.rms
        rms.mean, rms.var, rms.count = np.asarray(self.mean.item()), np.asarray(self.var.item()), self.count.item()


def train_on_device(learner, venv: Any, steps: int, log: Callable[[int, dict], None],
                    on_update: Callable[[int], None] | None = None) -> None:
    """Run ``steps`` env steps (floor-steps, summed over floors) of ``learner`` (a MAPPO or IPPO)
    on ``venv``'s batched floors; ``log`` and ``on_update`` as in ``MAPPO.train``."""
    c = learner.cfg
    check_supported(c)
    dev = learner.device
    E, N, A = venv.n_envs, learner.info.n_agents, learner.info.n_actions
    T = c.rollout
    onehot = F.one_hot(torch.arange(N, device=dev), N).float() if c.agent_ids else None

    def with_ids(x: torch.Tensor) -> torch.Tensor:  # (..., N, F) -> (..., N, F + N)
        if onehot is None:
            return x
        return torch.cat([x, onehot.expand(x.shape[:-1] + (N,))], dim=-1)

    obs, state, _acting = (x.to(dev) for x in venv.reset())
    rnorm = _RunningStd(learner.reward_norm, dev) if learner.reward_norm is not None else None
    ep_ret = torch.zeros(E, N, device=dev)
    fin_sum = torch.zeros(N, device=dev, dtype=torch.float64)  # per-robot returns of finished episodes since the last log
    fin_n = torch.zeros((), device=dev, dtype=torch.float64)
    env_steps = 0
    D = obs.shape[-1]
    while env_steps < steps:
        t0 = time.perf_counter()
        b_obs = torch.empty((T, E, N, D), device=dev)
        b_state = torch.empty((T,) + tuple(state.shape), device=dev)
        b_act = torch.empty((T, E, N), dtype=torch.int64, device=dev)
        b_logp = torch.empty((T, E, N), device=dev)
        b_val = torch.empty((T, E, N), device=dev)
        b_rew = torch.empty((T, E, N), device=dev)
        b_done = torch.empty((T, E), dtype=torch.bool, device=dev)
        with torch.no_grad():
            for t in range(T):
                logits = learner.actor(with_ids(obs)).reshape(E * N, A)
                logp_all = torch.log_softmax(logits, -1)
                a = torch.multinomial(logp_all.exp(), 1, generator=learner.gen).squeeze(-1)
                b_logp[t] = logp_all.gather(-1, a.unsqueeze(-1)).view(E, N)
                b_val[t] = learner.critic(with_ids(learner.critic_input(obs, state))).squeeze(-1)
                b_obs[t], b_state[t], b_act[t] = obs, state, a.view(E, N)
                obs, state, rew, done, _acting = venv.step(b_act[t])
                if rnorm is not None:  # one statistic over all agents, as the numpy loop
                    rnorm.update(rew)
                    b_rew[t] = rnorm(rew)
                else:
                    b_rew[t] = rew
                b_done[t] = done
                ep_ret += rew
                d = done.unsqueeze(-1)
                fin_sum += (ep_ret * d).sum(0).double()
                fin_n += done.sum()
                ep_ret.masked_fill_(d, 0.0)
            last_v = learner.critic(with_ids(learner.critic_input(obs, state))).squeeze(-1)
        env_steps += T * E
        if rnorm is not None:
            rnorm.write_back()
        rollout_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        values, last_values = _denorm(learner, b_val), _denorm(learner, last_v)
        adv, ret = gae_t(b_rew, values, last_values, b_done, c.gamma, c.gae_lambda)
        value_error = float((values - ret).abs().mean())
        crit = learner.critic_input(b_obs, b_state)
        S = T * E * N
        batch = {"obs": with_ids(b_obs).reshape(1, S, -1), "crit": with_ids(crit).reshape(1, S, -1),
                 "act": b_act.reshape(1, S), "logp": b_logp.reshape(1, S), "val": b_val.reshape(1, S),
                 "adv": adv.reshape(1, S), "ret": ret.reshape(1, S),
                 "active": torch.ones((1, S), dtype=torch.bool, device=dev)}
        stats = learner._update((batch, batch["active"], None, None))
        learner.policy_version += 1
        update_s = time.perf_counter() - t1

        metrics = {**stats, "value_error": value_error, "rollout_s": rollout_s, "update_s": update_s,
                   "policy_version": float(learner.policy_version), "kept_frac": 1.0,
                   "version_lag": 0.0, "mixed_versions": 0.0}
        n_fin = float(fin_n.item())
        if n_fin:
            per_agent = (fin_sum / n_fin).cpu().numpy()
            metrics["return"] = float(per_agent.sum())
            for i, name in enumerate(venv.agents):
                metrics[f"credit/{name}"] = float(per_agent[i])
            metrics["episodes"] = n_fin
            fin_sum.zero_()
            fin_n.zero_()
        log(env_steps, metrics)
        if on_update is not None:
            on_update(env_steps)


def _denorm(learner, v: torch.Tensor) -> torch.Tensor:
    vn = learner.value_norm
    if vn is None:
        return v.float()
    return (v.double() * float(vn.std) + float(vn.mean)).float()
