"""The floors a learner trains on and is judged on: simulated or batched.

``[train] floors``:

- ``"simulated"`` (the default): each env copy is the scenario's own
  simulation (``VectorWarehouseEnv``: its tempo, network, faults and orders as
  written), arrays on the host;
- ``"batched"``: ``n_envs`` rware floors of the scenario's layout as torch
  tensors on the training device (``BatchedWarehouseEnv``: tick tempo, rware's
  rules, the floor alone), which the PPO learners train on without leaving the
  device (``policies.ondevice``). ``[train] observations = "rware"`` gives
  rware's own observation vector there, for like-for-like comparisons with
  published rware results; ``"features"`` (the default) is what desim's brains
  see, so a checkpoint trained either way runs as a brain in any tempo.

``[train] credit`` (the reward allocation) reaches the env through
:func:`make_floors`'s ``credit``: ``"individual"`` on either kind of floors,
``"global"`` and ``"difference"`` on batched floors only (the counterfactual
step is a batch of floors). Like shaping it is not part of ``env_kwargs``, so
held-out evaluation and checkpoints see the env's own rewards.

Held-out evaluation (``policies.rollback.held_out_return``) runs on the same
kind of floors as training, through :class:`HostView` for batched ones.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from desim.models.warehouse.env import VectorWarehouseEnv
from desim.models.warehouse.vector_env import BatchedWarehouseEnv

# keys of a training run's env_kwargs that choose the floors rather than describe the warehouse
_CHOICE = ("floors", "observations")


def make_floors(env_kwargs: dict, n_envs: int, seed: int, device: str | torch.device = "cpu",
                credit: str = "individual", **shaping: Any):
    """A vector env of ``n_envs`` floors as ``env_kwargs`` say (``floors``, ``observations`` and the
    env's own keywords); ``credit``: the reward allocation (``BatchedWarehouseEnv``'s; simulated floors
    pay individual rewards only); ``shaping``: the potential-based shaping options of both envs."""
    kw = {k: v for k, v in env_kwargs.items() if k not in _CHOICE}
    if env_kwargs.get("floors", "simulated") == "batched":
        if isinstance(kw.get("scenario"), dict):  # the floor alone: the training settings are not the floor's
            kw["scenario"] = {k: v for k, v in kw["scenario"].items() if k != "train"}
        return BatchedWarehouseEnv(n_envs=n_envs, seed=seed, device=device,
                                   obs=env_kwargs.get("observations", "features"), credit=credit, **kw, **shaping)
    if credit != "individual":
        raise ValueError(f"credit {credit!r} needs batched floors; simulated floors pay individual rewards")
    return VectorWarehouseEnv(n_envs, seed=seed, **kw, **shaping)


class HostView:
    """A batched env seen with numpy arrays: what the held-out evaluation's ``decide`` takes, and what the
    learners without an on-device loop (VDN, QMIX, COMA) train on when the floors are batched."""

    def __init__(self, venv: BatchedWarehouseEnv):
        self.venv = venv
        self.agents = venv.agents
        self.envs = range(venv.n_envs)  # what host loops count copies by (len(venv.envs))

    @property
    def finished_returns(self) -> list:
        return self.venv.finished_returns

    def info(self) -> dict:
        return self.venv.info()

    @staticmethod
    def _np(xs) -> tuple[np.ndarray, ...]:
        return tuple(x.cpu().numpy() for x in xs)

    def reset(self):
        return self._np(self.venv.reset())

    def step(self, actions: np.ndarray):
        return self._np(self.venv.step(torch.as_tensor(np.asarray(actions), dtype=torch.int64)))


def host_floors(env_kwargs: dict, n_envs: int, seed: int):
    """Floors for evaluation on the host: numpy arrays in and out, whichever kind ``env_kwargs`` names."""
    venv = make_floors(env_kwargs, n_envs, seed)
    return HostView(venv) if getattr(venv, "on_device", False) else venv
