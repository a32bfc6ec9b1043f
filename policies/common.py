"""Pieces every learner shares, written and tested once.

- ``device(spec)``: CUDA when there is one (``auto``), else CPU: one code path.
- ``MLP`` and ``GRUNet``: the torch networks (actor/critic bodies).
- ``RunningMeanStd``: Welford/Chan running moments (value and reward normalisation).
- ``ValueNorm``: MAPPO's value normaliser (running mean/std of returns; the
  critic predicts normalised values).
- ``gae``: generalised advantage estimation over a rollout, with episode ends.
- ``make_config``: a learner's config dataclass from a ``[train.<algo>]`` table,
  every field checked (type and range), errors as ``ConfigError`` naming the field.
- ``Learner``: the protocol the training loop (``policies.train``) drives.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn


class ConfigError(ValueError):
    """A learner hyperparameter that cannot be used; ``field`` names it, ``problem`` says why."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


# Ranges by field name (every learner uses the same names for the same things).
_IN_UNIT = {"gamma", "gae_lambda", "td_lambda", "eps_start", "eps_end", "target_tau"}  # in [0, 1]
_POSITIVE = {"lr", "actor_lr", "critic_lr", "adam_eps", "huber_delta"}  # > 0
_ZERO_OK_INTS = {"max_staleness", "learning_starts", "eps_anneal_steps"}  # ints that may be 0 (others: >= 1)
_CHOICES = {"adoption_clock": ("steps", "seconds")}
_WIDTHS = {"hidden", "critic_hidden", "mixing_embed", "hypernet_hidden"}  # layer widths: at most 4,096
_MAX_INT = {"layers": 16, "epochs": 1000, "minibatches": 4096, "critic_epochs": 1000, "adoption_history": 1000,
            "chunk": 100_000, "rollout": 100_000}  # others: at most 10**9 (step counts)
_MAX_FLOAT = 1e6  # coefficients, rates, lags

def make_config(cls, cfg: dict | None):
    """``cls`` (a config dataclass) with ``cfg``'s fields, each checked against its
    annotation (bool, int, float, str, optionally None) and its range; the first
    problem raises :class:`ConfigError`."""
    cfg = dict(cfg or {})
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(cfg) - set(by_name))
    if unknown:
        raise ConfigError(unknown[0], f"unknown field (known: {', '.join(sorted(by_name))})")
    for name, v in cfg.items():
        kind = str(by_name[name].type).replace(" ", "")
        if v is None:
            if "None" not in kind:
                raise ConfigError(name, "must be set (None is not allowed)")
            continue
        base = kind.split("|")[0]
        ok = {"bool": isinstance(v, bool), "int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool), "str": isinstance(v, str)}.get(base, True)
        if not ok:
            raise ConfigError(name, f"must be {'a whole number' if base == 'int' else 'a number' if base == 'float' else 'true or false' if base == 'bool' else 'a string'}, got {v!r}")
        if base == "float" and not np.isfinite(v):
            raise ConfigError(name, f"must be finite, got {v!r}")
        if name in _CHOICES and v not in _CHOICES[name]:
            raise ConfigError(name, f"must be one of {', '.join(map(repr, _CHOICES[name]))}, got {v!r}")
        if base == "int" and v < (0 if name in _ZERO_OK_INTS else 1):
            raise ConfigError(name, f"must be at least {0 if name in _ZERO_OK_INTS else 1}, got {v}")
        top = 4096 if name in _WIDTHS else _MAX_INT.get(name, 10**9)
        if base == "int" and v > top:
            raise ConfigError(name, f"must be at most {top:,}, got {v:,}")
        if base == "float" and abs(v) > _MAX_FLOAT:
            raise ConfigError(name, f"must be at most {_MAX_FLOAT:g} in size, got {v:g}")
        if base == "float":
            if name in _IN_UNIT and not 0.0 <= v <= 1.0:
                raise ConfigError(name, f"must be in [0, 1], got {v}")
            if name in _POSITIVE and v <= 0:
                raise ConfigError(name, f"must be positive, got {v}")
            if v < 0:
                raise ConfigError(name, f"must not be negative, got {v}")
    return cls(**cfg)


def device(spec: str = "auto") -> torch.device:
    """``auto``: CUDA if available, else CPU; or an explicit torch device string."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def _init(layer: nn.Linear, gain: float = np.sqrt(2)) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """``in_dim -> hidden x layers (ReLU, LayerNorm on the input) -> out_dim``, orthogonal init."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64, layers: int = 2, out_gain: float = 0.01):
        super().__init__()
        mods: list[nn.Module] = [nn.LayerNorm(in_dim)]
        d = in_dim
        for _ in range(layers):
            mods += [_init(nn.Linear(d, hidden)), nn.ReLU()]
            d = hidden
        mods.append(_init(nn.Linear(d, out_dim), out_gain))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GRUNet(nn.Module):
    """A recurrent body for belief/recurrent policies: ``(x, h) -> (out, h')``.

    ``x`` is ``(batch, in_dim)`` for one step or ``(T, batch, in_dim)`` for a
    sequence; ``h`` is ``(batch, hidden)``; ``reset`` (``(batch,)`` or
    ``(T, batch)``, 1 where an episode starts) zeroes the hidden state there.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64, out_gain: float = 0.01):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Sequential(nn.LayerNorm(in_dim), _init(nn.Linear(in_dim, hidden)), nn.ReLU())
        self.cell = nn.GRUCell(hidden, hidden)
        self.out = _init(nn.Linear(hidden, out_dim), out_gain)

    def initial(self, batch: int, device_: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.hidden, device=device_)

    def forward(self, x: torch.Tensor, h: torch.Tensor, reset: torch.Tensor | None = None):
        if x.dim() == 2:
            if reset is not None:
                h = h * (1 - reset.float()).unsqueeze(-1)
            h = self.cell(self.inp(x), h)
            return self.out(h), h
        outs = []
        for t in range(x.shape[0]):
            o, h = self.forward(x[t], h, None if reset is None else reset[t])
            outs.append(o)
        return torch.stack(outs), h


class RunningMeanStd:
    """Running mean and variance over batches (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple = (), eps: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = eps

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        b_mean, b_var, b_count = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta = b_mean - self.mean
        tot = self.count + b_count
        self.mean = self.mean + delta * b_count / tot
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.var = m2 / tot
        self.count = tot

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)

    def normalize(self, x):
        return (x - self.mean) / self.std

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        self.mean, self.var, self.count = np.asarray(d["mean"]), np.asarray(d["var"]), float(d["count"])


class ValueNorm(RunningMeanStd):
    """MAPPO's value normaliser: targets are normalised for the critic's loss and
    the critic's outputs denormalised for GAE."""

    def denormalize(self, x):
        return x * self.std + self.mean


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, dones: np.ndarray,
        gamma: float = 0.99, lam: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation along axis 0 (time).

    ``rewards``, ``values``, ``dones``: ``(T, ...)``; ``next_values``: the value
    of the state after each step (``(T, ...)``), ignored where ``dones`` is 1
    (episode over: no bootstrap). Returns ``(advantages, returns)``.
    """
    T = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(T)):
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values[t] * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def learner_state(learner, modules: tuple[str, ...]) -> dict:
    """A checkpointable dict for an off-policy/actor-critic learner: its config,
    counters, the named modules/optimisers and its reward normaliser."""
    from dataclasses import asdict

    norm = getattr(learner, "reward_norm", None)
    return {"name": learner.name, "cfg": asdict(learner.cfg), "policy_version": learner.policy_version,
            "env_steps": learner.env_steps, "updates": learner.updates,
            **{k: getattr(learner, k).state_dict() for k in modules},
            "reward_norm": norm.state_dict() if norm is not None else None}


def load_learner_state(learner, d: dict, modules: tuple[str, ...]) -> None:
    """Restore what :func:`learner_state` saved."""
    for k in modules:
        getattr(learner, k).load_state_dict(d[k])
    learner.policy_version, learner.updates = d["policy_version"], d["updates"]
    # a rollback mid-training must not rewind the step count (curves and the loop's budget)
    learner.env_steps = max(learner.env_steps, d["env_steps"])
    norm = getattr(learner, "reward_norm", None)
    if norm is not None and d.get("reward_norm") is not None:
        norm.load_state_dict(d["reward_norm"])


@dataclass
class EnvInfo:
    """What a learner needs to know about the environment."""

    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int = 5


class Learner(Protocol):
    """A CTDE learner. ``policies.train`` builds one from the registry, then calls
    ``train``; execution needs only ``act`` (decentralised: local observations)."""

    name: str
    policy_version: int

    def train(self, venv: Any, steps: int, log: Callable[[int, dict], None],
              on_update: Callable[[int], None] | None = None) -> None: ...

    def act(self, obs: np.ndarray, agent_ids: np.ndarray, deterministic: bool = True) -> np.ndarray: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...
