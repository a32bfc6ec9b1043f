"""IPPO: independent PPO (de Witt et al. 2020, "Is Independent Learning All You
Need in the StarCraft Multi-Agent Challenge?").

Every agent runs PPO on its own local observation: its critic sees what its
actor sees, nothing global. That is the whole difference from MAPPO, so IPPO
is MAPPO with the critic's input swapped; rollout, GAE over each agent's own
decisions, value normalisation, clipping and the update are the same code.

Parameter sharing: the agents share one actor and one critic, told apart by
an agent-id one-hot (``agent_ids=True``), as in EPyMARL's IPPO with shared
parameters. The learning is still independent: no input of the critic depends
on another agent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desim.policies.mappo import MAPPO, MAPPOConfig


@dataclass
class IPPOConfig(MAPPOConfig):
    """The same hyperparameters as MAPPO (and the same defaults)."""


class IPPO(MAPPO):
    """PPO per agent on local observations; a shared, id-conditioned network."""

    name = "ippo"
    Config = IPPOConfig

    def critic_dim(self) -> int:
        return self.info.obs_dim

    def critic_features(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        return obs

    def critic_input(self, obs, state):
        return obs
