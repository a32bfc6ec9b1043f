"""MAPPO/IPPO: the nonstationarity switches (role rotation, asynchronous policy
adoption, the staleness filter) and the recurrent (GRU) actor: chunked
training that replays the rollout exactly, hidden state carried per robot in
evaluation and in the checkpoint brain, and learning on the tiny floor."""
import numpy as np
import pytest
import torch
from torch import nn

from env_support import RecordingEnv, by_content
from desim.models.warehouse.env import VectorWarehouseEnv
from desim.policies.checkpoint import Memory, decide
from desim.policies.common import EnvInfo
from desim.policies.rollback import held_out_return
from desim.policies.spec import learner_class

torch.set_num_threads(1)
INFO = EnvInfo(n_agents=2, obs_dim=59, state_dim=118)
TINY = dict(size="tiny", robots=2, max_steps=500)


class ContentActor(nn.Module):
    """A stand-in actor that picks ``by_content(obs)`` with certainty and records the ids it was shown."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.obs_dim = obs_dim
        self.scale = nn.Parameter(torch.tensor(50.0))
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []  # the rollout's calls: one (E*N, in) batch per step

    def forward(self, x):
        obs = x[..., : self.obs_dim].detach().cpu().numpy()
        if x.dim() == 2:
            self.seen.append((obs, x[..., self.obs_dim:].argmax(-1).cpu().numpy()))
        return nn.functional.one_hot(torch.as_tensor(by_content(obs)), 5).float() * self.scale


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_role_rotation_permutes_ids_per_episode_and_lands_actions_on_the_right_robots(algo):
    learner = learner_class(algo)(INFO, {"role_rotation": True, "rollout": 10, "epochs": 1}, "cpu", 0)
    actor = ContentActor(INFO.obs_dim)
    learner.actor = actor
    venv = RecordingEnv(3, seed=0, size="tiny", robots=2, max_steps=10)
    learner.train(venv, 3 * 40, lambda s, m: None)
    for obs, actions in venv.sent:  # each robot got the action computed from its own observation
        assert np.array_equal(actions, by_content(obs))
    # the id each robot's observation was shown with: robot 0 played role 0 in some episodes and role 1 in others
    ids_of_robot0 = set()
    for (obs, _), (x_obs, x_ids) in zip(venv.sent, actor.seen, strict=True):
        x_obs, x_ids = x_obs.reshape(3, 2, -1), x_ids.reshape(3, 2)
        for e in range(3):
            row = int(np.flatnonzero((x_obs[e] == obs[e, 0]).all(-1))[0])
            ids_of_robot0.add(int(x_ids[e, row]))
    assert ids_of_robot0 == {0, 1}


def test_without_role_rotation_ids_are_fixed():
    learner = learner_class("mappo")(INFO, {"rollout": 10, "epochs": 1}, "cpu", 0)
    actor = ContentActor(INFO.obs_dim)
    learner.actor = actor
    venv = RecordingEnv(2, seed=0, size="tiny", robots=2, max_steps=10)
    learner.train(venv, 2 * 20, lambda s, m: None)
    for (obs, _), (x_obs, x_ids) in zip(venv.sent, actor.seen, strict=True):
        assert np.array_equal(x_obs.reshape(obs.shape), obs)  # robot order is role order
        assert (x_ids.reshape(2, 2) == [0, 1]).all()


def test_async_adoption_runs_mixed_versions_in_the_event_tempo_and_the_staleness_filter_drops_them():
    logs: dict[str, list] = {"lagged": [], "strict": [], "sync": []}
    for name, cfg in (("lagged", {"adoption_lag": 1.5, "adoption_clock": "seconds"}),
                      ("strict", {"adoption_lag": 1.5, "adoption_clock": "seconds", "max_staleness": 0}),
                      ("sync", {})):
        learner = learner_class("mappo")(INFO, {"rollout": 8, "epochs": 1, **cfg}, "cpu", 0)
        venv = VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=40, tempo="event",
                                  delay_mean=0.05, jitter=0.02)
        learner.train(venv, 2 * 8 * 12, lambda s, m, k=name: logs[k].append(m))
        if name != "sync":
            assert learner.versions is not None and learner.versions.current.max() <= learner.policy_version
    lagged, strict, sync = ({k: [m[k] for m in logs[n]] for k in logs[n][0]} for n in ("lagged", "strict", "sync"))
    assert max(lagged["mixed_versions"]) > 0  # some steps ran two versions at once in one env copy
    assert max(lagged["version_lag"]) > 0
    assert min(lagged["kept_frac"]) == 1.0  # no filter: every acting sample trains
    assert min(strict["kept_frac"]) < 1.0  # k = 0: steps with a lagging agent are dropped
    assert max(sync["mixed_versions"]) == 0 and max(sync["version_lag"]) == 0 and min(sync["kept_frac"]) == 1.0


def test_adoption_behaviour_log_probs_come_from_the_version_each_agent_ran():
    """PPO's ratio must use the behaviour policy: with lagged adoption the stored
    log-probabilities are those of the snapshot each agent was running."""
    learner = learner_class("mappo")(INFO, {"rollout": 6, "epochs": 1, "adoption_lag": 30.0}, "cpu", 0)
    captured = []
    real = learner._update

    def spy(data):
        arrays = data[0]
        # recompute every sample's log-probability under every kept snapshot
        x = learner._with_ids(arrays["obs"][0], arrays["ids"][0])
        with torch.no_grad():
            per_version = {v: torch.log_softmax(learner.versions.module(learner.actor, v)(x), -1)
                           for v in learner.versions.snapshots}
        captured.append((arrays["act"][0], arrays["logp"][0], per_version))
        return real(data)

    learner._update = spy
    learner.train(VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=30), 2 * 6 * 6, lambda s, m: None)
    matched_old = 0
    for act, logp, per_version in captured:
        for i in range(len(act)):
            hits = [v for v, lp in per_version.items() if abs(float(lp[i, act[i]]) - float(logp[i])) < 1e-5]
            assert hits, "a stored log-probability matches no version's policy"
            matched_old += max(per_version) not in hits
    assert matched_old > 0  # some samples came from agents still on an older version


# -- the recurrent actor ------------------------------------------------------------
def test_recurrent_chunks_replay_the_rollout_exactly():
    """Before any gradient step, the chunked sequence pass reproduces the log-probability
    of every acting sample of the rollout: hidden states enter each chunk as they were,
    reset at episode starts inside chunks, and stay put while an agent waits (event tempo)."""
    learner = learner_class("mappo")(INFO, {"recurrent": True, "rollout": 12, "chunk": 4, "epochs": 1}, "cpu", 0)
    checked = []
    real = learner._update

    def spy(data):
        arrays, mask, starts, h0 = data
        with torch.no_grad():
            logits = learner._sequence_logits(learner._with_ids(arrays["obs"], arrays["ids"]), torch.as_tensor(h0),
                                              torch.as_tensor(starts, dtype=torch.float32),
                                              torch.as_tensor(arrays["active"], dtype=torch.float32))
            logp = torch.log_softmax(logits, -1).gather(-1, torch.as_tensor(arrays["act"]).unsqueeze(-1)).squeeze(-1)
        act = np.asarray(arrays["active"], bool)
        np.testing.assert_allclose(logp.numpy()[act], arrays["logp"][act], atol=1e-5)
        checked.append((int(act.sum()), int(np.asarray(starts)[1:].sum()), int((~act).sum())))
        return real(data)

    learner._update = spy
    venv = VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=9, tempo="event", delay_mean=0.05, jitter=0.02)
    learner.train(venv, 2 * 12 * 4, lambda s, m: None)
    assert len(checked) == 4
    assert sum(c[1] for c in checked) > 0  # episodes started inside chunks
    assert sum(c[2] for c in checked) > 0  # and some agents waited (not acting) at some steps


def test_recurrent_rollout_rejects_a_rollout_that_does_not_split_into_chunks():
    with pytest.raises(ValueError, match="chunk: must divide rollout"):
        learner_class("mappo")(INFO, {"recurrent": True, "rollout": 10, "chunk": 4}, "cpu", 0)


def test_memory_carries_each_agents_hidden_state_between_its_decisions():
    learner = learner_class("ippo")(INFO, {"recurrent": True}, "cpu", 0)
    rng = np.random.default_rng(0)
    xs = rng.random((3, 2, INFO.obs_dim)).astype(np.float32)
    mem = Memory(learner)
    ids = np.arange(2)
    for x in xs:  # decide three times for both agents
        decide(learner, x, ids, "argmax", None, mem, ["a", "b"])
    # the same as running the GRU over each agent's sequence by hand
    h = learner.initial_memory(2)
    for x in xs:
        _, h = learner.policy_step(x, ids, h)
    assert torch.allclose(mem.get(["a", "b"]), h, atol=1e-6)
    assert not torch.allclose(h, learner.initial_memory(2))
    # a memoryless call starts from scratch, so it sees a different policy state
    p_fresh = learner.action_probs(xs[0], ids)
    p_carried, _ = learner.policy_step(xs[0], ids, mem.get(["a", "b"]))
    assert not np.allclose(p_fresh, p_carried)
    mem.reset(["a"])
    assert torch.allclose(mem.get(["a"])[0], learner.initial_memory(1)[0])


def test_recurrent_checkpoint_brain_runs_in_both_tempos(tmp_path):
    from desim.app.runner import build, run
    from desim.models.warehouse.env import scenario_for
    from desim.policies.checkpoint import load_brain, save_checkpoint

    learner = learner_class("mappo")(INFO, {"recurrent": True, "rollout": 16, "chunk": 8, "epochs": 1}, "cpu", 0)
    learner.train(VectorWarehouseEnv(2, seed=0, size="tiny", robots=2, max_steps=50), 64, lambda s, m: None)
    path = save_checkpoint(tmp_path / "gru.pt", learner, algo="mappo", env_kwargs=TINY, obs_radius=1,
                           version=1, env_steps=64)
    brain = load_brain(str(path), np.random.default_rng(0))
    assert brain.memory is not None and brain.learner.recurrent
    for tempo, kw in (("tick", {}), ("event", {"delay_mean": 0.05, "jitter": 0.02})):
        sc = scenario_for(size="tiny", robots=2, tempo=tempo, max_steps=60, **kw)
        a, b = (run(sc, seed=3, brain=f"checkpoint:{path}").summary for _ in range(2))
        assert a["trace_hash"] == b["trace_hash"]  # reproducible with hidden state carried per robot
        assert a["deliveries"] >= 0
        # the brain keeps one hidden state per robot, moved on at that robot's decisions
        brain = load_brain(str(path), np.random.default_rng(0))
        world = build(sc, 3, brain=brain)
        world.sim.run(30.0)
        assert sorted(brain.memory.h) == [0, 1]
        assert all(not torch.equal(h, learner.initial_memory(1)[0]) for h in brain.memory.h.values())


def test_held_out_evaluation_carries_hidden_state():
    learner = learner_class("mappo")(INFO, {"recurrent": True}, "cpu", 0)
    score = held_out_return(learner, dict(size="tiny", robots=2, max_steps=40), episodes=2, seed=5)
    assert np.isfinite(score) and score == held_out_return(learner, dict(size="tiny", robots=2, max_steps=40), 2, 5)


def test_recurrent_mappo_learns_on_the_tiny_floor():
    rng = np.random.default_rng(0)
    venv_eval = VectorWarehouseEnv(4, seed=7, **TINY)
    obs, _s, _a = venv_eval.reset()
    while len(venv_eval.finished_returns) < 4:
        obs, _s, _r, _d, _a = venv_eval.step(rng.integers(0, 5, obs.shape[:2]))
    random_return = float(np.mean(venv_eval.finished_returns[:4]))

    venv = VectorWarehouseEnv(8, seed=0, shaping=0.5, shaping_potential="carrying", shaping_gamma=0.99, **TINY)
    learner = learner_class("mappo")(INFO, {"recurrent": True}, "cpu", seed=0)
    learner.train(venv, 48_000, lambda step, m: None)
    learned = held_out_return(learner, TINY, episodes=4, seed=7)
    print(f"recurrent mappo: random {random_return:.2f}, learned {learned:.2f}")
    assert learned >= random_return + 3.0
