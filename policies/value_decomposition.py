"""Value decomposition, the part VDN and QMIX share: agent utilities, episode replay, the Q-learning loop.

Each agent ``i`` has a utility ``Q_i(o_i, u_i)`` (one network shared by all
agents, told apart by an agent-id one-hot); a *mixer* combines the chosen
utilities into ``Q_tot(s, u)``, trained end to end on the team reward with
one-step Q-learning from whole-episode replay:

    y = r_tot + gamma * Q_tot^-(s', argmax_u' Q(o', u'))        (target networks ^-)
    L = mean over real, fresh steps of (Q_tot(s, u) - y)^2

Because the mixer is monotonic in each ``Q_i`` (VDN: a sum; QMIX: non-negative
weights), each agent's greedy action on its own utility is the greedy joint
action: decentralised execution from local observations. ``policies.vdn`` and
``policies.qmix`` supply the mixer; this module supplies everything else.

Choices (see docs/credit.md):
- feed-forward agent networks (the observations carry guidance features, and
  ``act`` takes one observation per agent with no hidden state); replay still
  stores whole episodes, as the papers' recurrent agents need;
- an episode cut by ``max_steps`` is treated as terminal (EPyMARL's default
  for RWARE: observations carry no clock);
- event tempo: an agent that is not acting at a step (its action is ignored)
  contributes a zero utility to ``Q_tot`` at that step, in the chosen and the
  target value alike;
- the team reward is the sum of the agents' rewards.
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

from desim.policies.common import MLP, EnvInfo, learner_state, load_learner_state, make_config
from desim.policies.nonstationarity import PolicyVersions, RewardNormalizer, SwitchConfig, Switches, grouped_forward
from desim.policies.replay import EpisodeRecorder, EpisodeReplay


@dataclass
class ValueDecompositionConfig(SwitchConfig):
    lr: float = 1e-3  # Adam learning rate
    gamma: float = 0.99  # discount
    hidden: int = 64  # agent Q-network width (two hidden layers)
    batch_episodes: int = 16  # episodes per gradient update
    buffer_episodes: int = 500  # replay capacity in whole episodes (oldest dropped first)
    learning_starts: int = 8  # finished episodes in the replay before the first update
    update_every: int = 32  # env steps (summed over env copies) between gradient updates
    eps_start: float = 1.0  # epsilon-greedy: exploration at the start
    eps_end: float = 0.05  # ... and after annealing
    eps_anneal_steps: int = 50_000  # env steps over which epsilon decays linearly (EPyMARL: 50k)
    target_update_interval: int = 50  # gradient updates between hard target-network copies
    target_tau: float | None = None  # Polyak rate per update instead of hard copies (None: hard copies)
    double_q: bool = True  # double Q-learning: online net picks next actions, target net values them
    grad_clip: float = 10.0  # max global gradient norm
    log_every: int = 2_000  # env steps between log() calls


def with_ids(obs: torch.Tensor, ids: torch.Tensor, n_agents: int) -> torch.Tensor:
    """Observations with the agent-id one-hot appended (parameter sharing)."""
    return torch.cat([obs, F.one_hot(ids, n_agents).to(obs.dtype)], dim=-1)


def epsilon_greedy_entropy(eps: float, n_actions: int) -> float:
    """Entropy of the epsilon-greedy behaviour policy (one greedy action, the rest uniform)."""
    hi = 1 - eps + eps / n_actions
    lo = eps / n_actions
    return float(-(hi * np.log(hi) + (n_actions - 1) * (lo * np.log(lo) if lo > 0 else 0.0)))


class ValueDecomposition:
    """The off-policy learner; a subclass sets ``name``, ``Config`` and ``make_mixer``."""

    name = "value_decomposition"
    Config = ValueDecompositionConfig

    def make_mixer(self, info: EnvInfo) -> nn.Module:
        raise NotImplementedError

    def __init__(self, info: EnvInfo, cfg: dict | None, device: torch.device, seed: int):
        self.info, self.device, self.seed = info, torch.device(device), seed
        self.cfg = make_config(self.Config, cfg)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        N, A = info.n_agents, info.n_actions
        self.q = MLP(info.obs_dim + N, A, self.cfg.hidden).to(self.device)  # shared agent utility Q_i(o_i, .)
        self.mixer = self.make_mixer(info).to(self.device)
        self.target_q = copy.deepcopy(self.q)
        self.target_mixer = copy.deepcopy(self.mixer)
        self.params = list(self.q.parameters()) + list(self.mixer.parameters())
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.replay = EpisodeReplay(self.cfg.buffer_episodes, self.cfg.max_staleness, seed)
        self.reward_norm = RewardNormalizer() if self.cfg.reward_norm else None
        self.versions: PolicyVersions | None = None  # set by train() when adoption_lag is on
        self.policy_version = 0
        self.env_steps = 0
        self.updates = 0

    # -- decentralised execution ---------------------------------------------
    def epsilon(self) -> float:
        c = self.cfg
        frac = min(self.env_steps / max(c.eps_anneal_steps, 1), 1.0)
        return c.eps_start + frac * (c.eps_end - c.eps_start)

    @torch.no_grad()
    def act(self, obs: np.ndarray, agent_ids: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Greedy (or epsilon-greedy) actions from local observations, one forward pass."""
        x = with_ids(torch.as_tensor(obs, dtype=torch.float32, device=self.device),
                     torch.as_tensor(agent_ids, dtype=torch.long, device=self.device), self.info.n_agents)
        greedy = self.q(x).argmax(-1).cpu().numpy()
        if deterministic:
            return greedy
        return self._explore(greedy, self.epsilon())

    def _explore(self, greedy: np.ndarray, eps: float) -> np.ndarray:
        rand = self.rng.random(greedy.shape) < eps
        return np.where(rand, self.rng.integers(0, self.info.n_actions, greedy.shape), greedy)

    @torch.no_grad()
    def _behaviour(self, obs: np.ndarray, versions: np.ndarray, eps: float) -> np.ndarray:
        """``(E, N)`` epsilon-greedy actions, each agent with the policy version it runs."""
        E, N, _ = obs.shape
        x = with_ids(torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(E * N, -1),
                     torch.arange(N, device=self.device).repeat(E), N)
        snaps = self.versions.snapshots if self.versions is not None else {}
        greedy = grouped_forward(self.q, snaps, versions.reshape(-1), x).argmax(-1).cpu().numpy()
        return self._explore(greedy.reshape(E, N), eps)

    # -- the learning loop ----------------------------------------------------
    def train(self, venv, steps: int, log: Callable[[int, dict], None],
              on_update: Callable[[int], None] | None = None) -> None:
        c, N = self.cfg, self.info.n_agents
        E = len(venv.envs)
        obs, state, acting = venv.reset()
        recorder = EpisodeRecorder(E)
        sw = Switches(c, venv, N, self.q, self.policy_version, self.seed)
        roles, self.versions = sw.roles, sw.versions
        n_seen, stats = len(venv.finished_returns), []
        end, next_log, since_update = self.env_steps + steps, self.env_steps + c.log_every, 0
        timing = {"rollout_s": 0.0, "update_s": 0.0}
        while self.env_steps < end:
            t0 = time.perf_counter()
            # act: every agent from its own observation, in role order, with the version it runs
            o, s, m = roles.to_roles(obs), roles.state_to_roles(state), roles.to_roles(acting)
            v = sw.in_use(self.policy_version)
            a = np.where(m, self._behaviour(o, v, self.epsilon()), 0)  # idle agents: NOOP (ignored)
            obs, state, rewards, done, acting = venv.step(roles.to_robots(a))
            if self.reward_norm is not None:
                self.reward_norm.update(rewards)
            for ep in recorder.record(o, s, a, roles.to_roles(rewards), m, v, done, roles.inv):
                self.replay.add(ep)
            for e in np.flatnonzero(done):
                roles.new_episode(e)
            sw.clock.tick(done)
            self.env_steps += E
            since_update += E
            t1 = time.perf_counter()
            timing["rollout_s"] += t1 - t0

            # learn: one gradient step on a batch of replayed episodes every update_every env steps
            if len(self.replay) < c.learning_starts:
                since_update = 0
            while since_update >= c.update_every:
                since_update -= c.update_every
                st = self.update()
                timing["update_s"] += time.perf_counter() - t1
                if st is not None:
                    stats.append(st)
                    sw.publish(self.policy_version, self.q)
                    if on_update is not None:
                        on_update(self.env_steps)
                t1 = time.perf_counter()

            if self.env_steps >= next_log or self.env_steps >= end:  # and once at the end
                next_log += c.log_every
                metrics = {"epsilon": self.epsilon(),
                           "entropy": epsilon_greedy_entropy(self.epsilon(), self.info.n_actions), **timing}
                timing = {"rollout_s": 0.0, "update_s": 0.0}
                if len(venv.finished_returns) > n_seen:
                    metrics["return"] = float(np.mean(venv.finished_returns[n_seen:]))
                    n_seen = len(venv.finished_returns)
                if stats:
                    for k in stats[0]:
                        metrics[k] = float(np.mean([st[k] for st in stats]))
                    stats = []
                    metrics.update(self.credit())
                log(self.env_steps, metrics)

    def update(self) -> dict | None:
        """One gradient step of Q-learning on Q_tot; returns its statistics (None: nothing fresh to learn from)."""
        c, N = self.cfg, self.info.n_agents
        b = self.replay.sample(c.batch_episodes, self.policy_version, self.device)
        if b is None or b.mask.sum() == 0:
            return None
        B, T = b.mask.shape
        x = with_ids(b.obs, torch.arange(N, device=self.device).expand(B, T, N), N)
        rewards = b.rewards
        if self.reward_norm is not None:
            rewards = self.reward_norm(rewards)
        r_tot = rewards.sum(-1)

        q = self.q(x)  # (B, T, N, A)
        chosen = q.gather(-1, b.actions.unsqueeze(-1)).squeeze(-1) * b.acting  # Q_i(o_i, u_i); idle agents: 0
        q_tot = self.mixer(chosen, b.state)  # (B, T)
        with torch.no_grad():
            q_next = self.target_q(x)
            if c.double_q:
                best = q_next.gather(-1, q.argmax(-1, keepdim=True)).squeeze(-1)
            else:
                best = q_next.max(-1).values
            next_tot = self.target_mixer(best * b.acting, b.state)
            next_tot = torch.cat([next_tot[:, 1:], torch.zeros_like(next_tot[:, :1])], dim=1)  # Q_tot^-(s_{t+1})
            y = r_tot + c.gamma * (1 - b.terminal) * next_tot
        td = (q_tot - y) * b.mask
        loss = (td**2).sum() / b.mask.sum()
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        self.opt.step()
        self.updates += 1
        self.policy_version += 1
        self._update_targets()

        return {"loss": loss.item(), "value_error": float(td.detach().abs().sum() / b.mask.sum())}

    def credit(self) -> dict[str, float]:
        """Per robot ``credit/<i>``: mean utility contribution dQ_tot/dQ_i * Q_i(o_i, u_i) over the
        steps it acted in a replayed batch (VDN: Q_i itself); roles are mapped back to robots."""
        N = self.info.n_agents
        b = self.replay.sample(self.cfg.batch_episodes, self.policy_version, self.device)
        if b is None:
            return {}
        B, T = b.mask.shape
        with torch.no_grad():
            x = with_ids(b.obs, torch.arange(N, device=self.device).expand(B, T, N), N)
            chosen = self.q(x).gather(-1, b.actions.unsqueeze(-1)).squeeze(-1) * b.acting
        qs = chosen.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.mixer(qs, b.state).sum(), qs)
        contrib = (grad * chosen).detach()
        w = b.mask.unsqueeze(-1) * b.acting  # (B, T, role)
        robot = b.roles.unsqueeze(1).expand_as(w)  # the robot behind each role
        out = {}
        for i in range(N):
            sel = w * (robot == i)
            out[f"credit/{i}"] = float((contrib * sel).sum() / sel.sum().clamp(min=1))
        return out

    def _update_targets(self) -> None:
        c = self.cfg
        pairs = ((self.q, self.target_q), (self.mixer, self.target_mixer))
        if c.target_tau is not None:
            with torch.no_grad():
                for net, tgt in pairs:
                    for p, tp in zip(net.parameters(), tgt.parameters()):
                        tp.lerp_(p, c.target_tau)
        elif self.updates % c.target_update_interval == 0:
            for net, tgt in pairs:
                tgt.load_state_dict(net.state_dict())

    # -- checkpoints ------------------------------------------------------------
    _CHECKPOINTED = ("q", "mixer", "target_q", "target_mixer", "opt")

    def state_dict(self) -> dict:
        return learner_state(self, self._CHECKPOINTED)

    def load_state_dict(self, d: dict) -> None:
        load_learner_state(self, d, self._CHECKPOINTED)
