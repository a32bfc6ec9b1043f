"""The on-device PPO loop (policies.ondevice) is the numpy loop of policies.mappo, step for step.

A tensor view of the simulated floors (the numpy ``VectorWarehouseEnv`` with
tensors in and out) lets both loops train on the same floors with the same
seeds: the same actions are drawn, so the curves and the weights agree to
float rounding. The batched floors themselves are checked against the numpy
floor in tests/test_batched_floor.py; here it is the learner's loop.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from desim.models.warehouse.env import VectorWarehouseEnv
from desim.models.warehouse.features import obs_dim
from desim.policies.common import ConfigError, EnvInfo
from desim.policies.ippo import IPPO
from desim.policies.mappo import MAPPO, gae_over_decisions
from desim.policies.ondevice import gae_t


class TensorFloors:
    """The simulated floors with tensors in and out: what the on-device loop expects of a vector env."""

    on_device = True

    def __init__(self, venv: VectorWarehouseEnv):
        self.venv, self.n_envs, self.agents = venv, len(venv.envs), venv.agents

    @staticmethod
    def _t(xs):
        return tuple(torch.as_tensor(np.ascontiguousarray(x)) for x in xs)

    def reset(self):
        return self._t(self.venv.reset())

    def step(self, actions: torch.Tensor):
        return self._t(self.venv.step(actions.cpu().numpy()))


INFO = EnvInfo(n_agents=2, obs_dim=obs_dim(1), state_dim=2 * obs_dim(1), n_actions=5)


@pytest.mark.parametrize("cls", [MAPPO, IPPO])
@pytest.mark.parametrize("cfg", [{}, {"reward_norm": True, "value_norm": False}])
def test_the_device_loop_trains_as_the_numpy_loop(cls, cfg):
    cfg = {"rollout": 16, "epochs": 2, **cfg}
    host, dev = cls(INFO, cfg, "cpu", 3), cls(INFO, cfg, "cpu", 3)
    curves: tuple[list, list] = ([], [])
    host.train(VectorWarehouseEnv(4, seed=1, max_steps=40), 192, lambda s, m: curves[0].append((s, m)))
    dev.train(TensorFloors(VectorWarehouseEnv(4, seed=1, max_steps=40)), 192, lambda s, m: curves[1].append((s, m)))
    assert [s for s, _ in curves[0]] == [s for s, _ in curves[1]] == [64, 128, 192]
    for (_, a), (_, b) in zip(*curves):
        for k in ("loss", "policy_loss", "value_loss", "entropy", "value_error"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), k
        assert ("return" in a) == ("return" in b)
        if "return" in a:
            assert a["return"] == pytest.approx(b["return"])
            credit = [k for k in a if k.startswith("credit/")]
            assert len(credit) == 2 and all(a[k] == pytest.approx(b[k]) for k in credit)
    for p, q in zip(list(host.actor.parameters()) + list(host.critic.parameters()),
                    list(dev.actor.parameters()) + list(dev.critic.parameters())):
        assert torch.allclose(p, q, atol=1e-5)
    assert host.policy_version == dev.policy_version == 3
    if cfg.get("reward_norm"):  # the device's running statistics are written back for checkpoints
        assert host.reward_norm.rms.count == pytest.approx(dev.reward_norm.rms.count)
        assert float(host.reward_norm.rms.var) == pytest.approx(float(dev.reward_norm.rms.var), rel=1e-6)


def test_gae_on_the_device_is_gae_over_decisions_with_everyone_acting():
    rng = np.random.default_rng(0)
    T, E, N = 9, 3, 2
    rew, val = rng.normal(size=(T, E, N)), rng.normal(size=(T, E, N))
    last, done = rng.normal(size=(E, N)), rng.random((T, E)) < 0.2
    adv, ret = gae_over_decisions(rew, val, last, done, np.ones((T, E, N), bool), 0.97, 0.9)
    adv_t, ret_t = gae_t(*(torch.as_tensor(x, dtype=torch.float32) for x in (rew, val, last)), torch.as_tensor(done), 0.97, 0.9)
    assert np.allclose(adv, adv_t.numpy(), atol=1e-5) and np.allclose(ret, ret_t.numpy(), atol=1e-5)


@pytest.mark.parametrize("field,value", [("recurrent", True), ("role_rotation", True), ("adoption_lag", 2.0),
                                         ("max_staleness", 1)])
def test_settings_the_batched_floors_cannot_train_with_are_named(field, value):
    cfg = {"rollout": 8, field: value}
    learner = MAPPO(INFO, cfg, "cpu", 0)
    with pytest.raises(ConfigError) as e:
        learner.train(TensorFloors(VectorWarehouseEnv(2, seed=0, max_steps=20)), 16, lambda s, m: None)
    assert e.value.field == field and "batched floors" in e.value.problem
