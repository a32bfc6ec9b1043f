"""Nonstationarity switches: reward normalisation, version-stamped replay with a
staleness filter, role rotation, asynchronous policy adoption."""
import numpy as np
import pytest
import torch

from env_support import RecordingEnv, by_content
from desim.models.warehouse.env import VectorWarehouseEnv
from desim.policies.coma import COMA
from desim.policies.common import MLP, EnvInfo
from desim.policies.nonstationarity import PolicyVersions, RewardNormalizer, RoleRotation, grouped_forward
from desim.policies.replay import EpisodeReplay, fresh, peers_fresh
from desim.policies.vdn import VDN

torch.set_num_threads(1)
INFO = EnvInfo(n_agents=2, obs_dim=59, state_dim=118)
CPU = torch.device("cpu")


# -- reward normalisation across agents -----------------------------------------
def test_reward_normalizer_pools_every_agents_rewards():
    rng = np.random.default_rng(0)
    norm = RewardNormalizer()
    seen = []
    for _ in range(50):  # (envs, agents) batches; agent 1 earns on another scale than agent 0
        r = np.stack([rng.normal(0.0, 1.0, 8), rng.normal(3.0, 5.0, 8)], axis=1)
        norm.update(r)
        seen.append(r.reshape(-1))
    allr = np.concatenate(seen)
    assert norm.rms.mean == pytest.approx(allr.mean(), rel=1e-3)
    assert norm.rms.var == pytest.approx(allr.var(), rel=1e-3)
    r = np.array([[1.0, -2.0]])
    assert np.allclose(norm(r), r / allr.std(), rtol=1e-3)  # scaled alike for every agent, not centred
    centred = RewardNormalizer(center=True)
    centred.rms = norm.rms
    assert np.allclose(centred(r), (r - allr.mean()) / allr.std(), rtol=1e-3)
    # only the entries picked by `where` count
    part = RewardNormalizer()
    part.update(np.array([[1.0, 100.0], [3.0, 100.0]]), where=np.array([[True, False], [True, False]]))
    assert part.rms.mean == pytest.approx(2.0, rel=1e-3)


def test_reward_norm_switch_scales_the_learners_targets():
    learner = VDN(INFO, {"reward_norm": True, "learning_starts": 10**9}, CPU, 0)
    learner.train(VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=20), 80, lambda s, m: None)
    assert learner.reward_norm is not None and learner.reward_norm.rms.count > 80 * 2 - 1
    assert VDN(INFO, {}, CPU, 0).reward_norm is None  # off by default


# -- the staleness filter --------------------------------------------------------
def episode(versions: np.ndarray) -> dict:
    T, N = versions.shape
    return {"obs": np.zeros((T, N, 3), np.float32), "state": np.zeros((T, 4), np.float32),
            "actions": np.zeros((T, N), np.int64), "rewards": np.zeros((T, N), np.float32),
            "acting": np.ones((T, N), bool), "versions": versions, "roles": np.arange(N)}


def test_staleness_filter_drops_exactly_the_steps_whose_agents_lag_by_more_than_k():
    current, k = 10, 2
    v = np.array([[10, 10], [8, 10], [7, 10], [10, 7], [9, 8], [6, 6]])  # lags 0/0, 2/0, 3/0, 0/3, 1/2, 4/4
    assert fresh(v, current, k).tolist() == [[1, 1], [1, 1], [0, 1], [1, 0], [1, 1], [0, 0]]
    # per agent, its peers: agent 0 keeps a step unless agent 1 lags too much, and vice versa
    assert peers_fresh(v, current, k).tolist() == [[1, 1], [1, 1], [1, 0], [0, 1], [1, 1], [0, 0]]
    replay = EpisodeReplay(capacity=10, max_staleness=k, seed=0)
    replay.add(episode(v))
    replay.add(episode(np.full((4, 2), 3)))  # every step lags by 7: can never be fresh again
    b = replay.sample(4, current)
    assert len(replay) == 1 and replay.dropped_steps == 4  # the stale episode left the store
    expected = [1, 1, 0, 0, 1, 0]  # a joint step is kept only if every agent is within k
    for row in range(4):
        assert b.mask[row].tolist() == expected and b.filled[row].tolist() == [1] * 6
    # off: nothing dropped
    replay = EpisodeReplay(capacity=10, max_staleness=None)
    replay.add(episode(v))
    replay.add(episode(np.full((6, 2), 3)))
    assert replay.sample(3, current).mask.sum() == 3 * 6
    # nothing fresh at all: no batch
    replay = EpisodeReplay(capacity=10, max_staleness=0)
    replay.add(episode(np.full((6, 2), 3)))
    assert replay.sample(3, current) is None


def test_every_replayed_step_carries_every_agents_version():
    learner = VDN(INFO, {"learning_starts": 2, "update_every": 8, "batch_episodes": 2}, CPU, 0)
    learner.train(VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=15), 150, lambda s, m: None)
    eps = list(learner.replay.episodes)
    assert eps and all(ep["versions"].shape == ep["actions"].shape for ep in eps)
    v = np.concatenate([ep["versions"] for ep in eps])
    assert v.min() == 0 and v.max() > 0 and learner.policy_version > 0
    # a version is stamped at collection: never ahead of the learner
    assert v.max() <= learner.policy_version


# -- role rotation ----------------------------------------------------------------
def test_role_rotation_is_a_consistent_permutation_per_episode_and_is_undone():
    E, N = 64, 3
    rot = RoleRotation(E, N, enabled=True, seed=0)
    assert all(sorted(p) == list(range(N)) for p in rot.perm)
    assert len({tuple(p) for p in rot.perm}) > 1  # the permutations vary
    x = np.arange(E * N * 2).reshape(E, N, 2)
    r = rot.to_roles(x)
    for e in range(E):
        for robot in range(N):  # the same permutation for every array of the episode
            assert np.array_equal(r[e, rot.perm[e, robot]], x[e, robot])
    assert np.array_equal(rot.to_robots(r), x)
    state = x.reshape(E, N * 2)  # one block per robot
    assert np.array_equal(rot.state_to_roles(state), r.reshape(E, N * 2))
    # a new episode redraws only that copy's permutation
    before = rot.perm.copy()
    for _ in range(5):
        rot.new_episode(0)
    assert np.array_equal(rot.perm[1:], before[1:])
    assert np.array_equal(RoleRotation(E, N, enabled=False).to_roles(x), x)  # off: the identity


def test_role_rotation_in_training_lands_actions_on_the_right_robots():
    learner = VDN(INFO, {"role_rotation": True, "learning_starts": 10**9}, CPU, 0)

    learner._behaviour = lambda obs, versions, eps: by_content(obs)  # a "policy" of the observation alone
    venv = RecordingEnv(3, seed=0, size="tiny", robots=2, max_steps=10)
    learner.train(venv, 3 * 40, lambda s, m: None)
    for obs, actions in venv.sent:  # each robot got the action computed from its own observation
        assert np.array_equal(actions, by_content(obs))
    eps = list(learner.replay.episodes)
    assert {tuple(ep["roles"]) for ep in eps} == {(0, 1), (1, 0)}  # roles were rotated across episodes
    for ep in eps:  # stored in role order, consistently: obs, state blocks, actions
        assert np.array_equal(ep["obs"], ep["state"].reshape(-1, 2, 59))  # tick tempo: state blocks are the obs
        assert np.array_equal(ep["actions"], by_content(ep["obs"]))


# -- asynchronous policy adoption --------------------------------------------------
def test_zero_lag_switches_every_agent_at_once():
    net = MLP(3, 2)
    pv = PolicyVersions(4, 3, mean_lag=0.0, seed=0)
    pv.publish(0, net, now=0.0)
    assert (pv.advance(0.0) == 0).all()
    for v in range(1, 5):
        pv.publish(v, net, now=float(v))
        assert (pv.current == v).all()  # no advance needed: adopted at the publish itself


def test_positive_lag_runs_mixed_versions_then_converges_monotonically():
    net = MLP(3, 2)
    E, N, mean_lag = 8, 4, 5.0
    pv = PolicyVersions(E, N, mean_lag=mean_lag, history=8, seed=0)
    pv.publish(0, net, now=0.0)
    history = [pv.advance(0.0)]
    for v in range(1, 4):  # three new versions, 10 steps apart
        pv.publish(v, net, now=10.0 * v)
    mixed_at = []
    for t in range(10, 200):
        cur = pv.advance(float(t))
        history.append(cur)
        if len(np.unique(cur)) > 1:
            mixed_at.append(t)
    h = np.stack(history)  # (time, E, N)
    assert mixed_at, "agents never ran mixed versions"
    assert (np.diff(h, axis=0) >= 0).all()  # every agent's version sequence is monotone
    assert (h[-1] == 3).all()  # and everyone converges on the newest
    assert max(mixed_at) < 150


def test_versions_that_fall_out_of_the_history_are_left_behind():
    net = MLP(3, 2)
    pv = PolicyVersions(1, 2, mean_lag=1e9, history=2, seed=0)  # nobody adopts on their own
    pv.publish(0, net)
    for v in range(1, 5):
        pv.publish(v, net, now=0.0)
    assert sorted(pv.snapshots) == [3, 4]
    assert (pv.advance(0.0) == 3).all()  # moved up to the oldest kept version


def test_grouped_forward_uses_each_rows_version():
    torch.manual_seed(0)
    net = MLP(3, 2)
    pv = PolicyVersions(1, 1, seed=0)
    snaps = {}
    for v in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        pv.publish(v, net)
        snaps[v] = pv.module(net, v)
    x = torch.randn(9, 3)
    versions = np.array([0, 2, 1, 1, 0, 2, 2, 0, 1])
    out = grouped_forward(net, pv.snapshots, versions, x)
    for i, v in enumerate(versions):
        assert torch.allclose(out[i], snaps[int(v)](x[i : i + 1])[0])


def test_async_adoption_in_the_event_tempo_stamps_mixed_versions():
    learner = COMA(INFO, {"adoption_lag": 2.0, "adoption_clock": "seconds", "rollout": 4}, CPU, 0)
    seen = []
    real_update = learner.update

    def spy(batch):
        seen.append(batch["versions"].copy())
        return real_update(batch)

    learner.update = spy
    venv = VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=30, tempo="event", delay_mean=0.05, jitter=0.02)
    learner.train(venv, 2 * 4 * 12, lambda s, m: None)
    v = np.concatenate(seen)  # (steps, envs, agents)
    assert (v[:, :, 0] != v[:, :, 1]).any()  # some steps ran two versions at once
    assert (np.diff(v, axis=0) >= 0).all()  # per agent, monotone over time
    assert v.max() > 0
