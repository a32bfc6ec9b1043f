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
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from desim.policies.common import MLP, ConfigError, EnvInfo, GRUNet, ValueNorm, make_config
from desim.policies.ondevice import train_on_device
from desim.policies.nonstationarity import PolicyVersions, RewardNormalizer, SwitchConfig, Switches, grouped_forward
from desim.policies.replay import fresh


@dataclass
class MAPPOConfig(SwitchConfig):
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
    recurrent: bool = False  # GRU actor (policies.common.GRUNet) with per-agent hidden state (paper: on for most tasks)
    chunk: int = 8  # recurrent: sequence length of the training chunks, must divide rollout (paper's data_chunk_length: 10)


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
        self.cfg = c = make_config(self.Config, cfg)
        if c.recurrent and c.rollout % c.chunk:
            raise ConfigError("chunk", f"must divide rollout ({c.rollout}), got {c.chunk}")
        self.info = info
        self.device = torch.device(device)
        self.seed = seed
        self.policy_version = 0  # one per update: every update makes a new policy
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        ids = info.n_agents if c.agent_ids else 0
        self.recurrent = c.recurrent
        if c.recurrent:
            self.actor: nn.Module = GRUNet(info.obs_dim + ids, info.n_actions, c.hidden, out_gain=0.01).to(self.device)
        else:
            self.actor = MLP(info.obs_dim + ids, info.n_actions, c.hidden, c.layers, out_gain=0.01).to(self.device)
        self.critic = MLP(self.critic_dim() + ids, 1, c.hidden, c.layers, out_gain=1.0).to(self.device)
        self.value_norm = ValueNorm(()) if c.value_norm else None
        self.reward_norm = RewardNormalizer() if c.reward_norm else None
        self.versions: PolicyVersions | None = None  # set while training with adoption_lag
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

    def critic_input(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The same on the device (batched floors): ``obs (..., N, D)``, ``state (..., S)`` -> ``(..., N, S)``."""
        return state.unsqueeze(-2).expand(state.shape[:-1] + (obs.shape[-2], state.shape[-1]))

    def _with_ids(self, x: np.ndarray, agent_ids: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.array(x, dtype=np.float32), device=self.device)
        if not self.cfg.agent_ids:
            return x
        ids = torch.as_tensor(np.array(agent_ids, dtype=np.int64), device=self.device)
        return torch.cat([x, F.one_hot(ids, self.info.n_agents).float()], dim=-1)

    def _grid_ids(self, E: int) -> np.ndarray:
        return np.broadcast_to(np.arange(self.info.n_agents), (E, self.info.n_agents))

    # -- execution: decentralised, one forward pass per instant --------------
    def initial_memory(self, batch: int) -> torch.Tensor | None:
        """The hidden state of ``batch`` agents at an episode's start (None: a feed-forward policy)."""
        return self.actor.initial(batch, self.device) if self.recurrent else None

    def _actor(self, x: torch.Tensor, h: torch.Tensor | None, versions=None):
        """``(logits, h')`` for a batch ``x (B, in)``; ``versions (B,)`` picks each row's policy version."""
        if versions is not None and self.versions is not None:
            out = grouped_forward(self.actor, self.versions.snapshots, versions, x, *(() if h is None else (h,)))
        else:
            out = self.actor(x) if h is None else self.actor(x, h)
        return out if self.recurrent else (out, None)

    @torch.no_grad()
    def policy_step(self, obs: np.ndarray, agent_ids: np.ndarray, h: torch.Tensor | None = None):
        """``(B, D)``, ``(B,)``, hidden ``(B, H)`` or None -> ``(probs (B, A), h')``.

        A recurrent policy's hidden state: ``h`` is what each agent carried
        from its last decision (None: a fresh episode); a feed-forward policy
        ignores ``h`` and returns None for it."""
        x = self._with_ids(obs, agent_ids)
        if self.recurrent and h is None:
            h = self.initial_memory(x.shape[0])
        logits, h2 = self._actor(x, h.to(self.device) if h is not None else None)
        return torch.softmax(logits, -1).cpu().numpy(), h2

    def action_probs(self, obs: np.ndarray, agent_ids: np.ndarray) -> np.ndarray:
        """``(B, D)``, ``(B,)`` -> ``(B, n_actions)`` action probabilities (recurrent: from a fresh hidden state)."""
        return self.policy_step(obs, agent_ids)[0]

    @torch.no_grad()
    def act(self, obs: np.ndarray, agent_ids: np.ndarray, deterministic: bool = True) -> np.ndarray:
        x = self._with_ids(obs, agent_ids)
        logits, _ = self._actor(x, self.initial_memory(x.shape[0]))
        if deterministic:
            return logits.argmax(-1).cpu().numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1).cpu().numpy()

    # -- training --------------------------------------------------------------
    def train(self, venv: Any, steps: int, log: Callable[[int, dict], None],
              on_update: Callable[[int], None] | None = None) -> None:
        """Run ``steps`` environment steps (joint steps of one env copy, summed over copies).

        Arrays are kept in role order (``RoleRotation``: the identity unless
        ``role_rotation``); actions go back to the robots that chose them."""
        if getattr(venv, "on_device", False):  # batched floors: the loop that keeps everything on the device
            return train_on_device(self, venv, steps, log, on_update)
        c, dev = self.cfg, self.device
        E, N = len(venv.envs), self.info.n_agents
        T = c.rollout
        ids = self._grid_ids(E)
        obs, state, acting = venv.reset()
        sw = Switches(c, venv, N, self.actor, self.policy_version, self.seed)
        roles, self.versions = sw.roles, sw.versions
        h = self.initial_memory(E * N)
        H = h.shape[-1] if h is not None else 0
        starting = np.ones(E, bool)  # an episode starts at the next step (hidden states reset there)
        ep_ret = np.zeros((E, N))
        done_returns: list[np.ndarray] = []  # per-robot returns of finished episodes since the last log
        env_steps = 0
        while env_steps < steps:
            t0 = time.perf_counter()
            b_obs = np.zeros((T, E, N, self.info.obs_dim), np.float32)
            b_crit = np.zeros((T, E, N, self.critic_dim()), np.float32)
            b_act = np.zeros((T, E, N), np.int64)
            b_logp = np.zeros((T, E, N), np.float32)  # log-probability under the version the agent ran
            b_val = np.zeros((T, E, N), np.float32)  # critic outputs (normalised units)
            b_rew = np.zeros((T, E, N), np.float32)
            b_done = np.zeros((T, E), bool)
            b_start = np.zeros((T, E), bool)
            b_active = np.zeros((T, E, N), bool)
            b_ver = np.zeros((T, E, N), np.int64)
            b_h = np.zeros((T, E, N, H), np.float32)  # recurrent: each agent's hidden state entering step t
            for t in range(T):
                o, s, m = roles.to_roles(obs), roles.state_to_roles(state), roles.to_roles(acting)
                crit = self.critic_features(o, s)
                v_used = sw.in_use(self.policy_version)
                with torch.no_grad():  # every agent of every copy: one forward pass for the actor (per version) and the critic
                    x = self._with_ids(o, ids).reshape(E * N, -1)
                    if h is not None:
                        h = h * torch.as_tensor(~np.repeat(starting, N), dtype=torch.float32, device=dev).unsqueeze(-1)
                        b_h[t] = h.reshape(E, N, H).cpu().numpy()
                    logits, h_new = self._actor(x, h, v_used.reshape(-1) if self.versions is not None else None)
                    logp_all = torch.log_softmax(logits, -1)
                    a = torch.multinomial(logp_all.exp(), 1, generator=self.gen).squeeze(-1)
                    logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
                    if h is not None:  # an agent that did not decide keeps its memory
                        h = torch.where(torch.as_tensor(m.reshape(-1), device=dev).unsqueeze(-1), h_new, h)
                    v = self.critic(self._with_ids(crit, ids)).squeeze(-1)
                b_obs[t], b_crit[t], b_active[t], b_ver[t], b_start[t] = o, crit, m, v_used, starting
                b_act[t], b_logp[t], b_val[t] = a.view(E, N).cpu().numpy(), logp.view(E, N).cpu().numpy(), v.cpu().numpy()
                obs, state, rew, done, acting = venv.step(roles.to_robots(b_act[t]))
                if self.reward_norm is not None:  # one statistic over all agents, so no agent's scale drifts alone
                    self.reward_norm.update(rew)
                    rew_n = self.reward_norm(rew)
                else:
                    rew_n = rew
                b_rew[t] = roles.to_roles(np.asarray(rew_n, dtype=np.float32))
                b_done[t] = done
                starting = np.asarray(done, bool).copy()
                ep_ret += rew
                for k in np.flatnonzero(done):
                    done_returns.append(ep_ret[k].copy())
                    ep_ret[k] = 0
                    roles.new_episode(k)
                sw.clock.tick(done)
            env_steps += T * E
            with torch.no_grad():
                o, s = roles.to_roles(obs), roles.state_to_roles(state)
                last_v = self.critic(self._with_ids(self.critic_features(o, s), ids)).squeeze(-1).cpu().numpy()
            rollout_s = time.perf_counter() - t0

            t1 = time.perf_counter()
            values, last_values = self._denorm(b_val), self._denorm(last_v)
            adv, ret = gae_over_decisions(b_rew, values, last_values, b_done, b_active, c.gamma, c.gae_lambda)
            keep = b_active & fresh(b_ver, self.policy_version, c.max_staleness).all(-1, keepdims=True)
            sel = keep.reshape(-1)
            value_error = float(np.abs(values.reshape(-1)[sel] - ret.reshape(-1)[sel]).mean()) if sel.any() else 0.0
            batch = {"obs": b_obs, "crit": b_crit, "ids": np.broadcast_to(ids, (T, E, N)), "act": b_act,
                     "logp": b_logp, "val": b_val, "adv": adv, "ret": ret, "active": b_active}
            if h is not None:
                stats = self._update(self._chunks(batch, keep, b_start, b_h))
            else:  # every kept sample on its own: sequences of length 1
                stats = self._update(({k: x.reshape((1, T * E * N) + x.shape[3:])[:, sel] for k, x in batch.items()},
                                      np.ones((1, int(sel.sum())), bool), None, None))
            self.policy_version += 1
            sw.publish(self.policy_version, self.actor)
            update_s = time.perf_counter() - t1

            metrics = {**stats, "value_error": value_error, "rollout_s": rollout_s, "update_s": update_s,
                       "policy_version": float(self.policy_version), "kept_frac": float(keep.sum() / max(b_active.sum(), 1)),
                       # asynchronous adoption: how far behind the learner the acting agents ran, and how often
                       # one env copy ran more than one version at a step
                       "version_lag": float((self.policy_version - 1 - b_ver)[b_active].mean()) if b_active.any() else 0.0,
                       "mixed_versions": float((b_ver.min(-1) != b_ver.max(-1)).mean())}
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

    def _chunks(self, batch: dict, keep: np.ndarray, starts: np.ndarray, hidden: np.ndarray):
        """A rollout cut into sequences of ``chunk`` steps per agent: arrays ``(L, C, ...)``
        with ``C = T/L * E * N`` chunks, the hidden state entering each chunk, and
        where episodes start inside them (the MAPPO paper's data chunks)."""
        T, E, N = keep.shape
        L = self.cfg.chunk

        def cut(x):  # (T, E, N, ...) -> (L, T/L * E * N, ...)
            x = np.asarray(x).reshape((T // L, L) + x.shape[1:])
            return np.moveaxis(x, 1, 0).reshape((L, (T // L) * E * N) + x.shape[4:])

        st = np.broadcast_to(starts[:, :, None], (T, E, N))
        return ({k: cut(x) for k, x in batch.items()}, cut(keep), cut(st), cut(hidden)[0])

    def _denorm(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return self.value_norm.denormalize(v) if self.value_norm is not None else v

    def _update(self, data) -> dict:
        """PPO epochs over one rollout's samples; returns mean losses.

        ``data = (arrays, mask, starts, h0)``: arrays ``(L, C, ...)`` (``C``
        sequences of ``L`` steps; ``L = 1`` for a feed-forward actor), ``mask``
        ``(L, C)`` the samples that count (acting and fresh; ``arrays["active"]``:
        acting), ``starts``
        ``(L, C)`` episode starts and ``h0 (C, H)`` the hidden state entering each
        sequence (None for a feed-forward actor). Losses are means over the
        masked samples; minibatches split the sequences."""
        c, dev = self.cfg, self.device
        arrays, mask, starts, h0 = data

        def t(a, dt=torch.float32):  # numpy (the simulated floors) or a tensor already on the device (batched floors)
            return a.to(dev, dt) if torch.is_tensor(a) else torch.as_tensor(np.asarray(a), dtype=dt, device=dev)

        mask_t = t(mask, torch.bool)
        if not bool(mask_t.any()):
            return {k: 0.0 for k in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")}
        ret_t, adv_t = t(arrays["ret"], torch.float64), t(arrays["adv"], torch.float64)
        if self.value_norm is not None:
            self.value_norm.update(ret_t[mask_t].cpu().numpy())
            ret_t = (ret_t - float(self.value_norm.mean)) / float(self.value_norm.std)
        if c.advantage_norm and int(mask_t.sum()) > 1:
            sel = adv_t[mask_t]
            adv_t = (adv_t - sel.mean()) / (sel.std(unbiased=False) + 1e-8)
        ret_t, adv_t = ret_t.float(), adv_t.float()
        on_device = torch.is_tensor(arrays["obs"])  # batched floors: the id one-hots are already appended
        x_a = arrays["obs"] if on_device else self._with_ids(arrays["obs"], arrays["ids"])
        x_c = arrays["crit"] if on_device else self._with_ids(arrays["crit"], arrays["ids"])
        act_t, old_logp_t, old_v_t = t(arrays["act"], torch.int64), t(arrays["logp"]), t(arrays["val"])
        active_t = t(arrays["active"])
        mask_t = mask_t.float()
        starts_t = t(starts) if starts is not None else None
        h0_t = t(h0) if h0 is not None else None
        actor_opt, critic_opt = self.optimizers()
        C = mask_t.shape[1]
        sums: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0,
                                  "approx_kl": 0.0, "clip_frac": 0.0}
        n = 0
        for _ in range(c.epochs):
            for mb in np.array_split(self.rng.permutation(C), max(1, min(c.minibatches, C))):
                mb_t = torch.as_tensor(mb, device=dev)
                w = mask_t[:, mb_t]
                count = w.sum()
                if count.item() == 0:
                    continue
                mean = lambda z: (z * w).sum() / count  # noqa: E731
                logits = self._sequence_logits(x_a[:, mb_t], None if h0_t is None else h0_t[mb_t],
                                               None if starts_t is None else starts_t[:, mb_t], active_t[:, mb_t])
                logp_all = torch.log_softmax(logits, -1)
                logp = logp_all.gather(-1, act_t[:, mb_t].unsqueeze(-1)).squeeze(-1)
                entropy = mean(-(logp_all.exp() * logp_all).sum(-1))
                log_ratio = (logp - old_logp_t[:, mb_t]) * w
                ratio = log_ratio.exp()
                a_mb = adv_t[:, mb_t]
                policy_loss = -mean(torch.min(ratio * a_mb, ratio.clamp(1 - c.clip, 1 + c.clip) * a_mb))

                v = self.critic(x_c[:, mb_t]).squeeze(-1)
                v_old = old_v_t[:, mb_t]
                v_clipped = v_old + (v - v_old).clamp(-c.value_clip, c.value_clip)
                r_mb = ret_t[:, mb_t]
                value_loss = mean(torch.max(F.huber_loss(v, r_mb, reduction="none", delta=c.huber_delta),
                                            F.huber_loss(v_clipped, r_mb, reduction="none", delta=c.huber_delta)))

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
                    sums["approx_kl"] += mean((ratio - 1) - log_ratio).item()
                    sums["clip_frac"] += mean(((ratio - 1).abs() > c.clip).float()).item()
                n += 1
        return {k: v / max(n, 1) for k, v in sums.items()}

    def _sequence_logits(self, x: torch.Tensor, h: torch.Tensor | None, starts: torch.Tensor | None,
                         acting: torch.Tensor) -> torch.Tensor:
        """The actor over ``x (L, B, in)``: a feed-forward actor row by row; a recurrent
        one step by step from ``h``, resetting at episode starts and carrying the
        hidden state unchanged through steps where the agent did not decide (as in the rollout)."""
        if h is None:
            return self.actor(x)
        outs = []
        for k in range(x.shape[0]):
            h = h * (1 - starts[k]).unsqueeze(-1)
            o, h_new = self.actor(x[k], h)
            h = torch.where(acting[k].unsqueeze(-1) > 0, h_new, h)
            outs.append(o)
        return torch.stack(outs)

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
