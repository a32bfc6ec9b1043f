"""MAPPO: PPO with a centralized critic (Yu et al. 2022, "The Surprising
Effectiveness of PPO in Cooperative Multi-Agent Games").

The loop, as in the paper's Algorithm 1:

    for each update:
        roll out the shared actor in ``n_envs`` copies for ``rollout`` steps
            (every decision that falls at one instant: one batched forward pass);
        V(s_t) from the centralized critic on the agent-specific global state;
        advantages with GAE over each agent's own decisions (active masks);
        update the value normaliser with the returns (the critic learns
            normalised targets; GAE uses denormalised values);
        for ``epochs`` epochs, over ``minibatches`` minibatches of acting samples:
            clipped policy loss - entropy bonus;
            clipped value loss (Huber), the max of clipped and unclipped;
            one Adam step each for actor and critic, gradients clipped.

Choices (and where they differ from the paper) are written down in
``docs/learning.md``. ``policies.ippo.IPPO`` is this class with a critic that
sees only the agent's local observation.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from policies.common import MLP, EnvInfo, ValueNorm
from policies.nonstationarity import RewardNormalizer


@dataclass
class MAPPOConfig:
    rollout: int = 128  # env steps per copy between updates (batch = n_envs * rollout * agents samples)
    epochs: int = 5  # PPO epochs over each rollout (paper: 5-15; 5 on its harder tasks)
    minibatches: int = 2  # minibatches per epoch (paper: 1-2)
    actor_lr: float = 5e-4  # Adam learning rate of the actor (paper: 5e-4)
    critic_lr: float = 5e-4  # Adam learning rate of the critic (paper: 5e-4)
    adam_eps: float = 1e-5  # Adam epsilon (paper: 1e-5)
    gamma: float = 0.99  # discount per decision
    gae_lambda: float = 0.95  # GAE lambda (paper: 0.95)
    clip: float = 0.2  # PPO ratio clip (paper: 0.2)
    value_clip: float = 0.2  # value clip around the rollout's prediction, in normalised units (paper: 0.2)
    entropy_coef: float = 0.01  # entropy bonus (paper: 0.01)
    value_coef: float = 1.0  # weight of the value loss (paper: 1)
    huber_delta: float = 10.0  # Huber loss delta for the value loss (paper: 10)
    max_grad_norm: float = 10.0  # gradient-norm clip, actor and critic separately (paper: 10)
    hidden: int = 64  # hidden units per layer (paper: 64)
    layers: int = 2  # hidden layers, actor and critic (paper: 2 for MLP policies)
    value_norm: bool = True  # normalise value targets with running mean/std (paper: on)
    advantage_norm: bool = True  # standardise advantages over the acting samples of a rollout (paper: on)
    agent_ids: bool = True  # append the agent-id one-hot to actor and critic inputs (parameter sharing)
    reward_norm: bool = False  # nonstationarity switch: scale every agent's reward by one running std (policies.nonstationarity)


def gae_over_decisions(rewards: np.ndarray, values: np.ndarray, last_values: np.ndarray, dones: np.ndarray,
                       active: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE along time (axis 0) where an agent's transitions run between its own decisions.

    ``rewards``, ``values``, ``active``: ``(T, E, N)``; ``dones``: ``(T, E)`` (the
    episode ended after step t); ``last_values``: ``(E, N)``, the value after the
    rollout. An agent that did not act at step t (event tempo) keeps its earlier
    action running: the rewards paid while it runs are summed into its last
    decision's reward, and discounting is per decision. With every agent acting
    at every step this is exactly :func:`policies.common.gae`. Returns
    ``(advantages, returns)``, zero where not active.
    """
    T = rewards.shape[0]
    adv = np.zeros(rewards.shape, dtype=np.float64)
    next_v = np.asarray(last_values, dtype=np.float64).copy()
    next_adv = np.zeros_like(next_v)
    acc_r = np.zeros_like(next_v)
    ended = np.zeros(next_v.shape, dtype=bool)  # an episode end lies between here and the next decision
    for t in reversed(range(T)):
        d = np.broadcast_to(dones[t][:, None], acc_r.shape).astype(bool)
        acc_r = np.where(d, rewards[t], rewards[t] + acc_r)
        ended = ended | d
        a = active[t].astype(bool)
        keep = 1.0 - ended
        delta = acc_r + gamma * next_v * keep - values[t]
        here = delta + gamma * lam * keep * next_adv
        adv[t] = np.where(a, here, 0.0)
        next_v = np.where(a, values[t], next_v)
        next_adv = np.where(a, here, next_adv)
        acc_r = np.where(a, 0.0, acc_r)
        ended = np.where(a, False, ended)
    returns = np.where(active, adv + values, 0.0)
    return adv, returns


class MAPPO:
    """Multi-agent PPO with a shared actor on local observations and a centralized critic."""

    name = "mappo"
    Config = MAPPOConfig

    def __init__(self, info: EnvInfo, cfg: dict | None = None, device: torch.device | str = "cpu", seed: int = 0):
        known = {f.name for f in fields(self.Config)}
        unknown = set(cfg or {}) - known
        if unknown:
            raise ValueError(f"{self.name}: unknown config field(s) {sorted(unknown)}; known: {sorted(known)}")
        self.cfg = self.Config(**(cfg or {}))
        self.info = info
        self.device = torch.device(device)
        self.seed = seed
        self.policy_version = 0  # one per update: every update makes a new policy
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        c = self.cfg
        ids = info.n_agents if c.agent_ids else 0
        self.actor = MLP(info.obs_dim + ids, info.n_actions, c.hidden, c.layers, out_gain=0.01).to(self.device)
        self.critic = MLP(self.critic_dim() + ids, 1, c.hidden, c.layers, out_gain=1.0).to(self.device)
        self.value_norm = ValueNorm(()) if c.value_norm else None
        self.reward_norm = RewardNormalizer() if c.reward_norm else None
        self._opts: tuple | None = None  # built on first use: a policy that only acts never imports torch.optim's machinery
        self._opt_states: tuple | None = None  # optimiser states loaded before the optimisers exist

    def optimizers(self) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """(actor's Adam, critic's Adam), separate as in the paper's code."""
        if self._opts is None:
            c = self.cfg
            self._opts = (torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr, eps=c.adam_eps),
                          torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr, eps=c.adam_eps))
            if self._opt_states is not None:
                for opt, st in zip(self._opts, self._opt_states):
                    if st:
                        opt.load_state_dict(st)
                self._opt_states = None
        return self._opts

    # -- what actor and critic see ------------------------------------------
    def critic_dim(self) -> int:
        """MAPPO: the global state (every robot's observation); the id one-hot makes it agent-specific."""
        return self.info.state_dim

    def critic_features(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """``obs (E, N, D)``, ``state (E, S)`` -> ``(E, N, S)``: the state, once per agent."""
        return np.broadcast_to(state[:, None, :], (state.shape[0], obs.shape[1], state.shape[1]))

    def _with_ids(self, x: np.ndarray, agent_ids: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.array(x, dtype=np.float32), device=self.device)
        if not self.cfg.agent_ids:
            return x
        ids = torch.as_tensor(np.array(agent_ids, dtype=np.int64), device=self.device)
        return torch.cat([x, F.one_hot(ids, self.info.n_agents).float()], dim=-1)

    def _grid_ids(self, E: int) -> np.ndarray:
        return np.broadcast_to(np.arange(self.info.n_agents), (E, self.info.n_agents))

    # -- execution: decentralised, one forward pass per instant --------------
    @torch.no_grad()
    def action_probs(self, obs: np.ndarray, agent_ids: np.ndarray) -> np.ndarray:
        """``(B, D)``, ``(B,)`` -> ``(B, n_actions)`` action probabilities."""
        return torch.softmax(self.actor(self._with_ids(obs, agent_ids)), -1).cpu().numpy()

    @torch.no_grad()
    def act(self, obs: np.ndarray, agent_ids: np.ndarray, deterministic: bool = True) -> np.ndarray:
        logits = self.actor(self._with_ids(obs, agent_ids))
        if deterministic:
            return logits.argmax(-1).cpu().numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1).cpu().numpy()

    # -- training --------------------------------------------------------------
    def train(self, venv: Any, steps: int, log: Callable[[int, dict], None],
              on_update: Callable[[int], None] | None = None) -> None:
        """Run ``steps`` environment steps (joint steps of one env copy, summed over copies)."""
        c = self.cfg
        E, N = len(venv.envs), self.info.n_agents
        T = c.rollout
        ids = self._grid_ids(E)
        obs, state, acting = venv.reset()
        ep_ret = np.zeros((E, N))
        done_returns: list[np.ndarray] = []  # per-agent returns of finished episodes since the last log
        env_steps = 0
        while env_steps < steps:
            t0 = time.perf_counter()
            b_obs = np.zeros((T, E, N, self.info.obs_dim), np.float32)
            b_crit = np.zeros((T, E, N, self.critic_dim()), np.float32)
            b_act = np.zeros((T, E, N), np.int64)
            b_logp = np.zeros((T, E, N), np.float32)
            b_val = np.zeros((T, E, N), np.float32)  # critic outputs (normalised units)
            b_rew = np.zeros((T, E, N), np.float32)
            b_done = np.zeros((T, E), bool)
            b_active = np.zeros((T, E, N), bool)
            for t in range(T):
                crit = self.critic_features(obs, state)
                with torch.no_grad():  # every agent of every copy: one forward pass each for actor and critic
                    logp_all = torch.log_softmax(self.actor(self._with_ids(obs, ids)), -1)
                    a = torch.multinomial(logp_all.exp().reshape(E * N, -1), 1, generator=self.gen).reshape(E, N)
                    logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
                    v = self.critic(self._with_ids(crit, ids)).squeeze(-1)
                b_obs[t], b_crit[t], b_active[t] = obs, crit, acting
                b_act[t], b_logp[t], b_val[t] = a.cpu().numpy(), logp.cpu().numpy(), v.cpu().numpy()
                obs, state, rew, done, acting = venv.step(b_act[t])
                if self.reward_norm is not None:  # one statistic over all agents, so no agent's scale drifts alone
                    self.reward_norm.update(rew)
                    b_rew[t] = self.reward_norm(rew)
                else:
                    b_rew[t] = rew
                b_done[t] = done
                ep_ret += rew
                for k in np.flatnonzero(done):
                    done_returns.append(ep_ret[k].copy())
                    ep_ret[k] = 0
            env_steps += T * E
            with torch.no_grad():
                last_v = self.critic(self._with_ids(self.critic_features(obs, state), ids)).squeeze(-1).cpu().numpy()
            rollout_s = time.perf_counter() - t0

            t1 = time.perf_counter()
            values, last_values = self._denorm(b_val), self._denorm(last_v)
            adv, ret = gae_over_decisions(b_rew, values, last_values, b_done, b_active, c.gamma, c.gae_lambda)
            sel = b_active.reshape(-1)
            value_error = float(np.abs(values.reshape(-1)[sel] - ret.reshape(-1)[sel]).mean()) if sel.any() else 0.0
            stats = self._update(b_obs.reshape(T * E * N, -1)[sel], b_crit.reshape(T * E * N, -1)[sel],
                                 np.broadcast_to(ids, (T, E, N)).reshape(-1)[sel], b_act.reshape(-1)[sel],
                                 b_logp.reshape(-1)[sel], b_val.reshape(-1)[sel],
                                 adv.reshape(-1)[sel], ret.reshape(-1)[sel])
            self.policy_version += 1
            update_s = time.perf_counter() - t1

            metrics = {**stats, "value_error": value_error, "rollout_s": rollout_s, "update_s": update_s,
                       "policy_version": float(self.policy_version)}
            if done_returns:
                per_agent = np.mean(done_returns, axis=0)
                metrics["return"] = float(per_agent.sum())
                for i, name in enumerate(venv.agents):
                    metrics[f"credit/{name}"] = float(per_agent[i])
                metrics["episodes"] = float(len(done_returns))
                done_returns = []
            log(env_steps, metrics)
            if on_update is not None:
                on_update(env_steps)

    def _denorm(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return self.value_norm.denormalize(v) if self.value_norm is not None else v

    def _update(self, obs, crit, ids, act, old_logp, old_v, adv, ret) -> dict:
        """PPO epochs over the acting samples of one rollout; returns mean losses."""
        c, dev = self.cfg, self.device
        if self.value_norm is not None:
            self.value_norm.update(ret)
            ret = self.value_norm.normalize(ret)
        if c.advantage_norm and adv.size > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        x_a = self._with_ids(obs, ids)
        x_c = self._with_ids(crit, ids)
        t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=dev)  # noqa: E731
        act_t, old_logp_t, old_v_t = t(act, torch.int64), t(old_logp), t(old_v)
        adv_t, ret_t = t(adv), t(ret)
        actor_opt, critic_opt = self.optimizers()
        M = len(act)
        sums: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0,
                                  "approx_kl": 0.0, "clip_frac": 0.0}
        n = 0
        for _ in range(c.epochs):
            for mb in np.array_split(self.rng.permutation(M), max(1, min(c.minibatches, M))):
                mb_t = torch.as_tensor(mb, device=dev)
                logits = self.actor(x_a[mb_t])
                logp_all = torch.log_softmax(logits, -1)
                logp = logp_all.gather(-1, act_t[mb_t].unsqueeze(-1)).squeeze(-1)
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                log_ratio = logp - old_logp_t[mb_t]
                ratio = log_ratio.exp()
                a_mb = adv_t[mb_t]
                policy_loss = -torch.min(ratio * a_mb, ratio.clamp(1 - c.clip, 1 + c.clip) * a_mb).mean()

                v = self.critic(x_c[mb_t]).squeeze(-1)
                v_old = old_v_t[mb_t]
                v_clipped = v_old + (v - v_old).clamp(-c.value_clip, c.value_clip)
                r_mb = ret_t[mb_t]
                value_loss = torch.max(F.huber_loss(v, r_mb, reduction="none", delta=c.huber_delta),
                                       F.huber_loss(v_clipped, r_mb, reduction="none", delta=c.huber_delta)).mean()

                actor_opt.zero_grad()
                (policy_loss - c.entropy_coef * entropy).backward()
                nn.utils.clip_grad_norm_(self.actor.parameters(), c.max_grad_norm)
                actor_opt.step()
                critic_opt.zero_grad()
                (c.value_coef * value_loss).backward()
                nn.utils.clip_grad_norm_(self.critic.parameters(), c.max_grad_norm)
                critic_opt.step()

                with torch.no_grad():
                    sums["policy_loss"] += policy_loss.item()
                    sums["value_loss"] += value_loss.item()
                    sums["entropy"] += entropy.item()
                    sums["loss"] += (policy_loss - c.entropy_coef * entropy + c.value_coef * value_loss).item()
                    sums["approx_kl"] += ((ratio - 1) - log_ratio).mean().item()
                    sums["clip_frac"] += ((ratio - 1).abs() > c.clip).float().mean().item()
                n += 1
        return {k: v / max(n, 1) for k, v in sums.items()}

    # -- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        if self._opts is not None:
            opt_states = tuple(o.state_dict() for o in self._opts)
        else:
            opt_states = self._opt_states or (None, None)
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_opt": opt_states[0], "critic_opt": opt_states[1],
                "value_norm": self.value_norm.state_dict() if self.value_norm is not None else None,
                "reward_norm": self.reward_norm.state_dict() if self.reward_norm is not None else None,
                "policy_version": self.policy_version, "cfg": asdict(self.cfg), "info": asdict(self.info)}

    def load_state_dict(self, d: dict) -> None:
        self.actor.load_state_dict(d["actor"])
        self.critic.load_state_dict(d["critic"])
        states = (d.get("actor_opt"), d.get("critic_opt"))
        if self._opts is not None:
            for opt, st in zip(self._opts, states):
                if st:
                    opt.load_state_dict(st)
        else:
            self._opt_states = states
        if self.value_norm is not None and d.get("value_norm"):
            self.value_norm.load_state_dict(d["value_norm"])
        if self.reward_norm is not None and d.get("reward_norm"):
            self.reward_norm.load_state_dict(d["reward_norm"])
        self.policy_version = int(d.get("policy_version", self.policy_version))
