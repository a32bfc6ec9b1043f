"""Value decomposition (VDN, QMIX) and counterfactual credit (COMA): the pieces, then learning.

The learning tests train on the tiny floor (2 robots, 100-step episodes) and
compare the learned policy with a uniform-random one measured in the same test
on the same held-out seeds. Uniform-random exploration almost never delivers
there (0 deliveries in 160 random episodes of 100 steps), so no learner gets a
reward to learn from within a CPU test's budget. The training env therefore
adds potential-based shaping (Ng, Harada & Russell 1999: ``F = gamma phi(s') -
phi(s)``, which leaves the optimal policies unchanged) built from the floor's
own distance maps; evaluation uses the unshaped env and its real reward
(deliveries).
"""
import numpy as np
import pytest
import torch

from desim.models.warehouse.env import VectorWarehouseEnv
from desim.policies.coma import COMA, counterfactual_advantage
from desim.policies.common import EnvInfo
from desim.policies.qmix import QMIX, QMixer
from desim.policies.replay import EpisodeReplay
from desim.policies.vdn import VDN, VDNMixer

torch.set_num_threads(1)
ENV = dict(size="tiny", robots=2, max_steps=100)
INFO = EnvInfo(n_agents=2, obs_dim=59, state_dim=118)
CPU = torch.device("cpu")


def mean_return(policy, episodes: int = 16, seed: int = 4242) -> float:
    """Mean summed (unshaped) return of ``policy(obs (B, D), ids (B,)) -> actions`` over held-out episodes."""
    E = 4
    venv = VectorWarehouseEnv(E, seed=seed, **ENV)
    obs, _state, _acting = venv.reset()
    ids = np.tile(np.arange(2), E)
    while len(venv.finished_returns) < episodes:
        obs, _state, _r, _d, _a = venv.step(policy(obs.reshape(E * 2, -1), ids).reshape(E, 2))
    return float(np.mean(venv.finished_returns[:episodes]))


def synthetic_episode(rng, T=7, versions=0):
    return {"obs": rng.random((T, 2, 59)).astype(np.float32), "state": rng.random((T, 118)).astype(np.float32),
            "actions": rng.integers(0, 5, (T, 2)), "rewards": rng.random((T, 2)).astype(np.float32),
            "acting": np.ones((T, 2), dtype=bool), "versions": np.full((T, 2), versions), "roles": np.arange(2)}


# -- mixers ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qmix_mixer_is_monotonic_in_every_agent_utility(seed):
    torch.manual_seed(seed)
    n, s = 4, 12
    states = torch.randn(512, s) * 3
    for monotonic in (True, False):
        torch.manual_seed(seed)
        mixer = QMixer(n, s, embed=8, hyper_hidden=16, monotonic=monotonic)
        qs = (torch.randn(512, n) * 5).requires_grad_(True)
        (grad,) = torch.autograd.grad(mixer(qs, states).sum(), qs)
        if monotonic:
            assert (grad >= 0).all()
        else:  # without abs() on the hypernetworks' weights the same test fails
            assert (grad < 0).any()


def test_qmix_mixer_shapes_and_vdn_sum():
    mixer = QMixer(3, 5)
    qs, states = torch.randn(2, 7, 3), torch.randn(2, 7, 5)
    assert mixer(qs, states).shape == (2, 7)
    assert torch.allclose(VDNMixer()(qs, states), qs[..., 0] + qs[..., 1] + qs[..., 2])
    vdn = VDN(INFO, {}, CPU, 0)
    q = torch.randn(10, 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(vdn.mixer(q, None).sum(), q)
    assert torch.equal(grad, torch.ones_like(q))  # each agent's utility counts exactly once


# -- target networks --------------------------------------------------------------
def filled(learner, n=4, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        learner.replay.add(synthetic_episode(rng))
    return learner


def test_hard_target_update_copies_every_interval():
    learner = filled(QMIX(INFO, {"target_update_interval": 3, "batch_episodes": 4}, CPU, 0))
    before = [p.clone() for p in learner.target_q.parameters()]
    for k in range(1, 4):
        learner.update()
        same = all(torch.equal(a, b) for a, b in zip(before, learner.target_q.parameters()))
        if k < 3:
            assert same  # the target holds still between copies
        else:
            for net, tgt in ((learner.q, learner.target_q), (learner.mixer, learner.target_mixer)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    assert torch.equal(p, tp)
    assert learner.policy_version == 3


def test_polyak_target_update():
    tau = 0.1
    learner = filled(VDN(INFO, {"target_tau": tau, "batch_episodes": 4}, CPU, 0))
    old = [p.clone() for p in learner.target_q.parameters()]
    learner.update()
    for o, p, tp in zip(old, learner.q.parameters(), learner.target_q.parameters()):
        assert torch.allclose(tp, (1 - tau) * o + tau * p, atol=1e-6)
    assert not all(torch.equal(o, tp) for o, tp in zip(old, learner.target_q.parameters()))


def test_state_dict_round_trip_gives_the_same_actions():
    for cls in (VDN, QMIX, COMA):
        a, b = cls(INFO, {}, CPU, 0), cls(INFO, {}, CPU, 1)
        obs = np.random.default_rng(0).random((6, 59)).astype(np.float32)
        ids = np.array([0, 1, 0, 1, 0, 1])
        b.load_state_dict(a.state_dict())
        assert np.array_equal(a.act(obs, ids), b.act(obs, ids))


def test_episode_replay_pads_and_masks():
    rng = np.random.default_rng(0)
    replay = EpisodeReplay(capacity=3, seed=0)
    for T in (3, 5, 4, 6):  # capacity 3: the first one is dropped
        replay.add(synthetic_episode(rng, T))
    assert len(replay) == 3
    b = replay.sample(8, current=0)
    lengths = b.filled.sum(1).numpy()
    assert b.obs.shape == (8, 6, 2, 59) and set(lengths) <= {4, 5, 6}
    for row, n in enumerate(lengths.astype(int)):
        assert b.terminal[row, n - 1] == 1 and b.terminal[row].sum() == 1
        assert (b.obs[row, n:] == 0).all() and torch.equal(b.mask[row], b.filled[row])


# -- COMA's counterfactual baseline -------------------------------------------------
def test_coma_counterfactual_baseline_by_hand():
    # two agents, two actions; the team's Q(s, u1, u2):
    Q = torch.tensor([[1.0, 5.0],
                      [3.0, 0.0]])
    pi1, pi2 = torch.tensor([0.25, 0.75]), torch.tensor([0.6, 0.4])
    u1, u2 = 1, 0
    # agent 1 counterfactuals: its own action varies, u2 fixed -> Q[:, u2]; agent 2: Q[u1, :]
    q_all = torch.stack([Q[:, u2], Q[u1, :]])  # (agent, a')
    adv, base = counterfactual_advantage(q_all, torch.stack([pi1, pi2]), torch.tensor([u1, u2]))
    # by hand: b1 = .25*1 + .75*3 = 2.5, A1 = Q(1,0) - b1 = 3 - 2.5 = 0.5
    #          b2 = .6*3 + .4*0 = 1.8,  A2 = 3 - 1.8 = 1.2
    assert torch.allclose(base, torch.tensor([2.5, 1.8]))
    assert torch.allclose(adv, torch.tensor([0.5, 1.2]))
    # the baseline does not depend on the agent's own action: the expected advantage is 0
    for a in range(2):
        q_a = torch.stack([Q[:, u2], Q[a, :]])
        exp = sum(pi1[b] * counterfactual_advantage(q_a, torch.stack([pi1, pi2]), torch.tensor([b, u2]))[0][0]
                  for b in range(2))
        assert abs(float(exp)) < 1e-6


def test_coma_critic_sees_the_others_actions_not_its_own():
    coma = COMA(INFO, {}, CPU, 0)
    state, obs = torch.zeros(118), torch.zeros(2, 59)
    x_a = coma.critic_input(state, obs, torch.tensor([0, 3]))
    x_b = coma.critic_input(state, obs, torch.tensor([4, 3]))  # only agent 0's action changed
    assert torch.equal(x_a[0], x_b[0])  # agent 0's row: its own action is not an input
    assert not torch.equal(x_a[1], x_b[1])  # agent 1's row sees agent 0's action


# -- learning something real ------------------------------------------------------
def random_policy(seed=0):
    rng = np.random.default_rng(seed)
    return lambda obs, ids: rng.integers(0, 5, len(ids))


@pytest.mark.parametrize("cls,cfg,steps", [
    (VDN, {"eps_anneal_steps": 12_000}, 16_000),
    (QMIX, {"eps_anneal_steps": 12_000}, 16_000),
    (COMA, {}, 20_000),
])
def test_learner_beats_uniform_random_on_the_tiny_floor(cls, cfg, steps):
    random_return = mean_return(random_policy())
    learner = cls(INFO, cfg, CPU, 0)
    logs, updates = [], []
    # potential-based shaping (the env's option): RWARE is too sparse for a random start
    learner.train(VectorWarehouseEnv(4, seed=0, shaping=0.5, **ENV), steps, lambda s, m: logs.append((s, m)), updates.append)
    learned = mean_return(lambda o, i: learner.act(o, i, deterministic=False))
    assert learned >= random_return + 1.0, (learned, random_return)  # seed 0: about 2 to 4 deliveries per episode
    # the curves a training run stores
    last = logs[-1][1]
    for k in ("return", "loss", "entropy", "value_error", "credit/0", "credit/1"):
        assert k in last and np.isfinite(last[k]), k
    assert updates and updates == sorted(updates) and learner.policy_version == len(updates)
