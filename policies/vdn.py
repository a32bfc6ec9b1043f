"""VDN (Sunehag et al., 2018): value decomposition by a sum.

    Q_tot(s, u) = sum_i Q_i(o_i, u_i)

trained end to end with Q-learning on the team reward; each agent acts
greedily on its own Q_i. The loop, replay and agent network are shared with
QMIX in ``policies.value_decomposition``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from desim.policies.common import EnvInfo
from desim.policies.value_decomposition import ValueDecomposition, ValueDecompositionConfig


@dataclass
class VDNConfig(ValueDecompositionConfig):
    """VDN has no hyperparameters of its own: the mixer is a sum."""


class VDNMixer(nn.Module):
    """``Q_tot = sum_i Q_i``: ``qs (..., N), state (..., S) -> (...)`` (the state is unused)."""

    def forward(self, qs: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return qs.sum(-1)


class VDN(ValueDecomposition):
    name = "vdn"
    Config = VDNConfig

    def make_mixer(self, info: EnvInfo) -> nn.Module:
        return VDNMixer()
