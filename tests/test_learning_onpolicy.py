"""On-policy learners (IPPO, MAPPO): the pieces, learning, rollback.

Read top to bottom as an example of use: ``EnvInfo`` + a vector env + a
learner from ``policies.train.LEARNERS``; ``learner.train(venv, steps, log)``;
``learner.act(obs, agent_ids)`` to run the policy; ``Gatekeeper`` and
``Checkpoints`` to promote or roll back candidates.
"""
import numpy as np
import pytest
import torch

from desim.models.warehouse.env import VectorWarehouseEnv
from desim.models.warehouse.features import obs_dim
from desim.policies.common import EnvInfo, ValueNorm, gae
from desim.policies.mappo import MAPPO, gae_over_decisions
from desim.policies.spec import learner_class

torch.set_num_threads(1)

TINY = dict(size="tiny", robots=2, max_steps=500)
INFO = EnvInfo(n_agents=2, obs_dim=obs_dim(1), state_dim=2 * obs_dim(1), n_actions=5)


# -- GAE --------------------------------------------------------------------------
def test_gae_matches_a_hand_computation_with_a_terminal_in_the_middle():
    # gamma 0.9, lambda 0.8; the episode ends after step 1 (no bootstrap there)
    r = np.array([1.0, 0.0, 2.0, 1.0])
    v = np.array([0.5, 0.4, 0.3, 0.2])
    v_next = np.array([0.4, 99.0, 0.2, 0.6])  # 99: after the terminal, must be ignored
    d = np.array([0.0, 1.0, 0.0, 0.0])
    # by hand, backwards: delta_t = r_t + g V(s') (1 - d_t) - V(s_t); A_t = delta_t + g l (1 - d_t) A_{t+1}
    a3 = 1 + 0.9 * 0.6 - 0.2  # 1.34
    a2 = (2 + 0.9 * 0.2 - 0.3) + 0.72 * a3  # 1.88 + 0.9648 = 2.8448
    a1 = 0 - 0.4  # terminal: -0.4, and A_2 does not flow back
    a0 = (1 + 0.9 * 0.4 - 0.5) + 0.72 * a1  # 0.86 - 0.288 = 0.572
    adv, ret = gae(r, v, v_next, d, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(adv, [a0, a1, a2, a3])
    np.testing.assert_allclose(ret, [a0 + 0.5, a1 + 0.4, a2 + 0.3, a3 + 0.2])
    # MAPPO's per-decision GAE gives the same numbers when the agent acts at every step
    adv2, ret2 = gae_over_decisions(r[:, None, None], v[:, None, None], np.array([[0.6]]), d[:, None],
                                    np.ones((4, 1, 1), bool), 0.9, 0.8)
    np.testing.assert_allclose(adv2[:, 0, 0], [a0, a1, a2, a3])
    np.testing.assert_allclose(ret2[:, 0, 0], ret)


def test_gae_over_decisions_equals_gae_when_every_agent_acts():
    rng = np.random.default_rng(0)
    T, E, N = 16, 3, 2
    r, v = rng.normal(size=(T, E, N)), rng.normal(size=(T, E, N))
    last = rng.normal(size=(E, N))
    dones = rng.random((T, E)) < 0.15
    adv, _ = gae_over_decisions(r, v, last, dones, np.ones((T, E, N), bool), 0.99, 0.95)
    v_next = np.concatenate([v[1:], last[None]])
    ref, _ = gae(r, v, v_next, np.broadcast_to(dones[..., None], (T, E, N)).astype(float), 0.99, 0.95)
    np.testing.assert_allclose(adv, ref)


def test_gae_over_decisions_sums_rewards_while_an_action_runs():
    # event tempo: the agent decides at t=0 and t=2; the rewards of steps 0 and 1 belong to decision 0
    r = np.array([1.0, 2.0, 0.5])[:, None, None]
    v = np.array([0.1, 7.0, 0.3])[:, None, None]  # v[1] is not a decision of this agent: unused
    active = np.array([True, False, True])[:, None, None]
    adv, ret = gae_over_decisions(r, v, np.array([[0.4]]), np.zeros((3, 1)), active, 0.9, 0.8)
    a2 = 0.5 + 0.9 * 0.4 - 0.3
    a0 = (1.0 + 2.0) + 0.9 * 0.3 - 0.1 + 0.72 * a2
    np.testing.assert_allclose(adv[:, 0, 0], [a0, 0.0, a2])
    assert ret[1, 0, 0] == 0.0  # no sample where the agent did not act


# -- value normalisation -----------------------------------------------------------
def test_value_norm_roundtrip_and_running_statistics():
    vn = ValueNorm(())
    rng = np.random.default_rng(1)
    data = rng.normal(50.0, 7.0, size=4000)
    for chunk in np.split(data, 8):
        vn.update(chunk)
    assert vn.mean == pytest.approx(data.mean(), rel=1e-6)
    assert vn.std == pytest.approx(data.std(), rel=1e-3)
    x = rng.normal(size=10) * 30
    np.testing.assert_allclose(vn.denormalize(vn.normalize(x)), x)


def test_mappo_critic_learns_normalised_targets():
    """Returns around 100 reach the critic as ~N(0, 1) targets; GAE sees them denormalised."""
    learner = MAPPO(INFO, {"epochs": 10, "minibatches": 1}, "cpu", seed=0)
    rng = np.random.default_rng(0)
    M = 512
    obs = rng.random((M, INFO.obs_dim)).astype(np.float32)
    crit = rng.random((M, INFO.state_dim)).astype(np.float32)
    ids = rng.integers(0, 2, M)
    ret = 100.0 + 5.0 * rng.normal(size=M)
    arrays = {"obs": obs, "crit": crit, "ids": ids, "act": rng.integers(0, 5, M),
              "logp": np.full(M, np.log(0.2), np.float32), "val": np.zeros(M, np.float32),
              "adv": rng.normal(size=M), "ret": ret, "active": np.ones(M, bool)}
    # feed-forward actor: M sequences of length 1, every sample counts
    learner._update(({k: v[None] for k, v in arrays.items()}, np.ones((1, M), bool), None, None))
    assert learner.value_norm.mean == pytest.approx(ret.mean(), rel=1e-6)
    with torch.no_grad():
        raw = learner.critic(learner._with_ids(crit, ids)).squeeze(-1).numpy()
    assert abs(raw.mean()) < 1.0 and raw.std() < 2.0  # the critic's outputs live in normalised units
    assert learner._denorm(raw).mean() == pytest.approx(100.0, abs=5.0)  # and mean ~100 once denormalised


# -- learning: clearly above a random policy within a small budget ------------------
def mean_return(policy, episodes: int = 4, seed: int = 7) -> float:
    """Mean episode return (summed over agents) of ``policy(obs (E, N, D)) -> actions (E, N)`` on fresh seeds."""
    venv = VectorWarehouseEnv(episodes, seed=seed, **TINY)
    obs, _s, _a = venv.reset()
    while len(venv.finished_returns) < episodes:
        obs, _s, _r, _d, _a = venv.step(policy(obs))
    return float(np.mean(venv.finished_returns[:episodes]))


@pytest.mark.parametrize("algo", ["ippo", "mappo"])
def test_learner_beats_random_on_the_tiny_floor(algo):
    rng = np.random.default_rng(0)
    random_return = mean_return(lambda obs: rng.integers(0, 5, obs.shape[:2]))

    # potential-based shaping (policy-invariant) makes the first deliveries' credit arrive sooner
    venv = VectorWarehouseEnv(8, seed=0, shaping=0.5, shaping_potential="carrying", shaping_gamma=0.99, **TINY)
    learner = learner_class(algo)(INFO, {}, "cpu", seed=0)
    curve = []
    learner.train(venv, 48_000, lambda step, m: curve.append((step, m)))
    assert curve[-1][0] >= 48_000 and learner.policy_version == len(curve)
    assert {"loss", "entropy", "value_error", "return", "credit/robot_0"} <= set().union(*(m for _, m in curve))

    ids = np.arange(2)
    learned = mean_return(lambda obs: learner.act(obs.reshape(-1, obs.shape[-1]), np.tile(ids, len(obs)),
                                                  deterministic=False).reshape(obs.shape[:2]))
    print(f"{algo}: random {random_return:.2f}, learned {learned:.2f} deliveries per 500-step episode")
    assert learned >= random_return + 3.0, (algo, random_return, learned)


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_reward_normalisation_switch_scales_what_the_learner_sees(algo):
    """The switch pools every agent's rewards into one running std; the learner's
    GAE sees scaled rewards, the logged returns stay the env's own."""
    from desim.policies.common import EnvInfo

    torch.set_num_threads(1)
    cls = learner_class(algo)
    info = EnvInfo(n_agents=2, obs_dim=59, state_dim=118)
    learner = cls(info, {"reward_norm": True, "rollout": 32, "epochs": 1}, "cpu", 0)
    seen = {}
    venv = VectorWarehouseEnv(2, seed=0, shaping=0.5, shaping_potential="distance", **TINY)
    learner.train(venv, 128, lambda step, m: seen.update(m))
    rms = learner.reward_norm.rms
    assert rms.count > 2 * 2 * 32  # every agent's reward of every copy folded in
    assert rms.std > 0 and np.isfinite(rms.std)
    assert {"loss", "entropy", "value_error"} <= set(seen)  # it trained on the scaled rewards
    restored = cls(info, {"reward_norm": True}, "cpu", 1)
    restored.load_state_dict(learner.state_dict())
    assert restored.reward_norm.rms.count == rms.count
    assert cls(info, {}, "cpu", 0).reward_norm is None  # off by default
