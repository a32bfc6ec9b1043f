"""COMA (Foerster et al., 2018): counterfactual multi-agent policy gradients.

A centralised critic ``Q(s, u)`` answers, for agent ``a``, "what would the team
get for each action ``a'`` of mine, the others' actions ``u^-a`` fixed?":
one forward pass gives ``Q(s, (u^-a, a'))`` for every ``a'``. The
counterfactual baseline marginalises agent ``a``'s own action under its policy,

    b_a(s, u^-a) = sum_a' pi(a' | o_a) Q(s, (u^-a, a'))
    A_a(s, u)    = Q(s, u) - b_a(s, u^-a)

which is the difference-rewards idea (what the team got, minus what it would
have got had I acted by default), with the default an expectation under my
own policy, so it needs neither a default action nor extra simulations.

Loop, on-policy: roll ``rollout`` steps in every env copy with the shared actor
(one forward pass per instant); critic targets are TD(lambda) returns from a
target critic; one critic step (or ``critic_epochs``) on those targets; then
one actor step on ``-A_a log pi(u_a | o_a)`` minus an entropy bonus, the
advantage taken from the freshly updated critic.

Choices (see docs/credit.md): feed-forward actor and critic (the paper's actor
is a GRU); the critic sees the state, the agent's observation, the other
agents' actions (one-hot) and the agent id; the bootstrap after a rollout uses
actions sampled from the current policy; in the event tempo an agent that is
not acting has NOOP as its action and is masked out of both losses.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from desim.policies.common import MLP, EnvInfo, gae, learner_state, load_learner_state, make_config
from desim.policies.nonstationarity import PolicyVersions, RewardNormalizer, SwitchConfig, Switches, grouped_forward
from desim.policies.replay import fresh
from desim.policies.value_decomposition import with_ids


@dataclass
class COMAConfig(SwitchConfig):
    rollout: int = 25  # env steps per copy between updates (batch: copies x rollout x agents)
    actor_lr: float = 1e-3  # Adam learning rate of the actor
    critic_lr: float = 1e-3  # Adam learning rate of the critic
    gamma: float = 0.99  # discount
    td_lambda: float = 0.8  # lambda of the critic's TD(lambda) targets
    hidden: int = 64  # actor width (two hidden layers)
    critic_hidden: int = 128  # critic width (two hidden layers)
    critic_epochs: int = 2  # critic gradient steps per rollout (before the actor's step)
    entropy_coef: float = 0.01  # entropy bonus on the actor
    advantage_norm: bool = True  # standardise counterfactual advantages over the batch's acting samples
    target_update_interval: int = 10  # updates between hard copies of the target critic
    grad_clip: float = 10.0  # max global gradient norm, actor and critic separately
    log_every: int = 2_000  # env steps between log() calls


def counterfactual_advantage(q_all: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor):
    """COMA's advantage: ``q_all (..., A)`` = Q(s, (u^-a, a')) for every a', ``pi (..., A)``
    = pi(a' | o_a), ``actions (...)`` = u_a. Returns ``(advantage, baseline)``, each ``(...)``."""
    baseline = (pi * q_all).sum(-1)
    taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return taken - baseline, baseline


class COMA:
    """Shared actor on local observations; centralised counterfactual critic."""

    name = "coma"
    Config = COMAConfig

    def __init__(self, info: EnvInfo, cfg: dict | None, device: torch.device, seed: int):
        self.info, self.device, self.seed = info, torch.device(device), seed
        self.cfg = c = make_config(self.Config, cfg)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        N, A = info.n_agents, info.n_actions
        self.actor = MLP(info.obs_dim + N, A, c.hidden).to(self.device)
        # critic input: state, own observation, others' actions (one-hot, own slot zeroed), agent id
        self.critic = MLP(info.state_dim + info.obs_dim + N * A + N, A, c.critic_hidden, out_gain=1.0).to(self.device)
        self.target_critic = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr)
        self.reward_norm = RewardNormalizer() if c.reward_norm else None
        self.versions: PolicyVersions | None = None
        self.policy_version = 0
        self.env_steps = 0
        self.updates = 0

    # -- decentralised execution ---------------------------------------------
    def _logits(self, obs: torch.Tensor, ids: torch.Tensor, versions=None) -> torch.Tensor:
        x = with_ids(obs, ids, self.info.n_agents)
        if versions is None or self.versions is None:
            return self.actor(x)
        return grouped_forward(self.actor, self.versions.snapshots, versions, x)

    @torch.no_grad()
    def act(self, obs: np.ndarray, agent_ids: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions from local observations, one forward pass: argmax, or sampled from pi."""
        logits = self._logits(torch.as_tensor(obs, dtype=torch.float32, device=self.device),
                              torch.as_tensor(agent_ids, dtype=torch.long, device=self.device))
        if deterministic:
            return logits.argmax(-1).cpu().numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1).cpu().numpy()

    @torch.no_grad()
    def _sample(self, obs: np.ndarray, versions: np.ndarray) -> np.ndarray:
        E, N, _ = obs.shape
        logits = self._logits(torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(E * N, -1),
                              torch.arange(N, device=self.device).repeat(E), versions.reshape(-1))
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).view(E, N).cpu().numpy()

    # -- the centralised critic -----------------------------------------------
    def critic_input(self, state: torch.Tensor, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``state (..., S)``, ``obs (..., N, D)``, ``actions (..., N)`` -> ``(..., N, in)``: per agent a,
        the state, o_a, the one-hot actions of every agent but a, and a's id."""
        N, A = self.info.n_agents, self.info.n_actions
        lead = actions.shape[:-1]
        onehot = F.one_hot(actions, A).float()  # (..., N, A)
        others = onehot.unsqueeze(-3).expand(lead + (N, N, A)) * (1 - torch.eye(N, device=self.device)).view(N, N, 1)
        ids = torch.eye(N, device=self.device).expand(lead + (N, N))
        s = state.unsqueeze(-2).expand(lead + (N, state.shape[-1]))
        return torch.cat([s, obs, others.reshape(lead + (N, N * A)), ids], dim=-1)

    # -- the learning loop ------------------------------------------------------
    def train(self, venv, steps: int, log: Callable[[int, dict], None],
              on_update: Callable[[int], None] | None = None) -> None:
        c, N = self.cfg, self.info.n_agents
        E = len(venv.envs)
        obs, state, acting = venv.reset()
        sw = Switches(c, venv, N, self.actor, self.policy_version, self.seed)
        roles, self.versions = sw.roles, sw.versions
        n_seen, stats = len(venv.finished_returns), []
        end, next_log = self.env_steps + steps, self.env_steps + c.log_every
        timing = {"rollout_s": 0.0, "update_s": 0.0}
        while self.env_steps < end:
            t0 = time.perf_counter()
            # roll out: every agent samples from pi(. | o_a) with the policy version it runs
            keys = ("obs", "state", "actions", "rewards", "acting", "versions", "done", "robots")
            batch = {k: [] for k in keys}
            for _ in range(c.rollout):
                o, s, m = roles.to_roles(obs), roles.state_to_roles(state), roles.to_roles(acting)
                v = sw.in_use(self.policy_version)
                a = np.where(m, self._sample(o, v), 0)  # idle agents: NOOP (ignored by the env)
                obs, state, rewards, done, acting = venv.step(roles.to_robots(a))
                if self.reward_norm is not None:
                    self.reward_norm.update(rewards)
                for k, x in zip(keys, (o, s, a, roles.to_roles(rewards), m, v, done, roles.inv.copy())):
                    batch[k].append(x)
                for e in np.flatnonzero(done):
                    roles.new_episode(e)
                sw.clock.tick(done)
                self.env_steps += E
            o, s = roles.to_roles(obs), roles.state_to_roles(state)
            batch = {k: np.stack(x) for k, x in batch.items()}  # (T, E, ...)
            batch["last_obs"], batch["last_state"] = o, s
            batch["last_actions"] = np.where(roles.to_roles(acting), self._sample(o, np.full((E, N), self.policy_version)), 0)
            t1 = time.perf_counter()
            timing["rollout_s"] += t1 - t0

            stats.append(self.update(batch))
            timing["update_s"] += time.perf_counter() - t1
            sw.publish(self.policy_version, self.actor)
            if on_update is not None:
                on_update(self.env_steps)

            if self.env_steps >= next_log or self.env_steps >= end:  # and once at the end
                next_log += c.log_every
                metrics, timing = dict(timing), {"rollout_s": 0.0, "update_s": 0.0}
                if len(venv.finished_returns) > n_seen:
                    metrics["return"] = float(np.mean(venv.finished_returns[n_seen:]))
                    n_seen = len(venv.finished_returns)
                for k in stats[0]:
                    metrics[k] = float(np.nanmean([st[k] for st in stats]))
                stats = []
                log(self.env_steps, metrics)

    def update(self, b: dict) -> dict:
        """One critic phase (TD(lambda)) and one actor step (counterfactual advantage) on a rollout."""
        c, N, dev = self.cfg, self.info.n_agents, self.device

        def t(x, dtype=torch.float32):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)

        obs = t(np.concatenate([b["obs"], b["last_obs"][None]]))  # (T+1, E, N, D)
        state = t(np.concatenate([b["state"], b["last_state"][None]]))
        actions = t(np.concatenate([b["actions"], b["last_actions"][None]]), torch.long)
        T = b["actions"].shape[0]
        mask = t(b["acting"]) * t(fresh(b["versions"], self.policy_version, c.max_staleness).all(-1, keepdims=True))
        rewards = b["rewards"] if self.reward_norm is None else self.reward_norm(b["rewards"])
        team = np.broadcast_to(rewards.sum(-1, keepdims=True), rewards.shape)  # (T, E, N)
        x = self.critic_input(state, obs, actions)  # (T+1, E, N, in)

        # critic: TD(lambda) targets from the target critic's Q(s, u)
        with torch.no_grad():
            q_tgt = self.target_critic(x).gather(-1, actions.unsqueeze(-1)).squeeze(-1).cpu().numpy()
        dones = np.broadcast_to(b["done"][..., None], team.shape).astype(np.float64)
        _, targets = gae(team, q_tgt[:T], q_tgt[1:], dones, c.gamma, c.td_lambda)
        targets = t(targets)
        n = mask.sum().clamp(min=1)
        for _ in range(c.critic_epochs):
            q_taken = self.critic(x[:T]).gather(-1, actions[:T].unsqueeze(-1)).squeeze(-1)
            critic_loss = (((q_taken - targets) ** 2) * mask).sum() / n
            self.critic_opt.zero_grad()
            critic_loss.backward()
            nn.utils.clip_grad_norm_(self.critic.parameters(), c.grad_clip)
            self.critic_opt.step()

        # actor: A_a = Q(s, u) - sum_a' pi(a'|o_a) Q(s, (u^-a, a'))
        logits = self.actor(with_ids(obs[:T], torch.arange(N, device=dev).expand(obs.shape[:3])[:T], N))
        logp = torch.log_softmax(logits, -1)
        pi = logp.exp()
        with torch.no_grad():
            q_all = self.critic(x[:T])
            adv, _ = counterfactual_advantage(q_all, pi, actions[:T])
            raw_adv = adv
            if c.advantage_norm:
                mean = (adv * mask).sum() / n
                std = (((adv - mean) ** 2 * mask).sum() / n).sqrt()
                adv = (adv - mean) / (std + 1e-8)
        logp_taken = logp.gather(-1, actions[:T].unsqueeze(-1)).squeeze(-1)
        entropy = -(pi * logp).sum(-1)
        actor_loss = -((adv * logp_taken + c.entropy_coef * entropy) * mask).sum() / n
        self.actor_opt.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), c.grad_clip)
        self.actor_opt.step()

        self.updates += 1
        self.policy_version += 1
        if self.updates % c.target_update_interval == 0:
            self.target_critic.load_state_dict(self.critic.state_dict())

        st = {"loss": float(critic_loss.detach() + actor_loss.detach()), "critic_loss": float(critic_loss.detach()),
              "actor_loss": float(actor_loss.detach()), "entropy": float((entropy.detach() * mask).sum() / n),
              "value_error": float(((q_taken.detach() - targets).abs() * mask).sum() / n)}
        robots = t(b["robots"], torch.long)  # (T, E, role) -> robot
        for i in range(N):
            sel = mask * (robots == i)
            st[f"credit/{i}"] = float((raw_adv * sel).sum() / sel.sum()) if sel.sum() > 0 else float("nan")
        return st

    # -- checkpoints ------------------------------------------------------------
    _CHECKPOINTED = ("actor", "critic", "target_critic", "actor_opt", "critic_opt")

    def state_dict(self) -> dict:
        return learner_state(self, self._CHECKPOINTED)

    def load_state_dict(self, d: dict) -> None:
        load_learner_state(self, d, self._CHECKPOINTED)
