"""QMIX (Rashid et al., 2018): a monotonic mixing network conditioned on the state.

    Q_tot(s, u) = w2(s)^T elu(W1(s)^T q + b1(s)) + V(s),   q = (Q_1(o_1, u_1), ..., Q_N(o_N, u_N))

The mixing weights ``W1(s)``, ``w2(s)`` come from hypernetworks on the global
state and pass through ``abs``, so dQ_tot/dQ_i >= 0: the argmax of Q_tot is
every agent's own argmax, and execution stays decentralised. Biases and
``V(s)`` are unconstrained. The loop, replay, target networks, double Q and
the agent network are shared with VDN in ``policies.value_decomposition``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from desim.policies.common import EnvInfo
from desim.policies.value_decomposition import ValueDecomposition, ValueDecompositionConfig


@dataclass
class QMIXConfig(ValueDecompositionConfig):
    mixing_embed: int = 32  # width of the mixing network's hidden layer
    hypernet_hidden: int = 64  # hidden width of the hypernetworks producing the mixing weights


class QMixer(nn.Module):
    """``qs (..., N), state (..., S) -> Q_tot (...)``, monotonic in each ``qs[..., i]``.

    ``monotonic=False`` drops the ``abs`` on the mixing weights (for tests
    showing what the constraint buys; never for learning)."""

    def __init__(self, n_agents: int, state_dim: int, embed: int = 32, hyper_hidden: int = 64, monotonic: bool = True):
        super().__init__()
        self.n, self.embed, self.monotonic = n_agents, embed, monotonic
        self.hyper_w1 = nn.Sequential(nn.Linear(state_dim, hyper_hidden), nn.ReLU(), nn.Linear(hyper_hidden, n_agents * embed))
        self.hyper_b1 = nn.Linear(state_dim, embed)
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, hyper_hidden), nn.ReLU(), nn.Linear(hyper_hidden, embed))
        self.value = nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, 1))  # V(s)

    def _positive(self, w: torch.Tensor) -> torch.Tensor:
        return w.abs() if self.monotonic else w

    def forward(self, qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        lead = qs.shape[:-1]
        q = qs.reshape(-1, 1, self.n)
        s = state.reshape(-1, state.shape[-1])
        w1 = self._positive(self.hyper_w1(s)).view(-1, self.n, self.embed)
        b1 = self.hyper_b1(s).view(-1, 1, self.embed)
        hidden = F.elu(torch.bmm(q, w1) + b1)  # (B, 1, embed)
        w2 = self._positive(self.hyper_w2(s)).view(-1, self.embed, 1)
        q_tot = torch.bmm(hidden, w2).view(-1) + self.value(s).view(-1)
        return q_tot.view(lead)


class QMIX(ValueDecomposition):
    name = "qmix"
    Config = QMIXConfig

    def make_mixer(self, info: EnvInfo) -> nn.Module:
        return QMixer(info.n_agents, info.state_dim, self.cfg.mixing_embed, self.cfg.hypernet_hidden)
