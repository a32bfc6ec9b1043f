"""BatchedWarehouseEnv: the vector env's contract (shapes, devices, automatic reset, returns),
its observations and potentials against WarehouseParallelEnv's on the same floor, and its refusals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_batched_floor import DEVICES

from desim.models.warehouse.env import VectorWarehouseEnv, WarehouseParallelEnv
from desim.models.warehouse.vector_env import BatchedWarehouseEnv
from desim.scenario import ScenarioError


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("obs,dim", [("rware", 71), ("features", 59)])
def test_shapes_devices_and_automatic_reset(obs, dim, device):
    E, N, T = 16, 4, 7
    env = BatchedWarehouseEnv("small", N, max_steps=T, n_envs=E, obs=obs, device=device, seed=3)
    assert (env.n_envs, env.n_agents, env.obs_dim, env.state_dim, env.n_actions) == (E, N, dim, dim * N, 5)
    assert env.info() == {"n_agents": N, "obs_dim": dim, "state_dim": dim * N, "n_actions": 5}
    assert env.agents == WarehouseParallelEnv(size="small", robots=N).possible_agents
    o, s, acting = env.reset()
    assert o.shape == (E, N, dim) and o.dtype == torch.float32 and o.device.type == torch.device(device).type
    assert s.shape == (E, dim * N) and torch.equal(s, o.reshape(E, -1))
    assert acting.shape == (E, N) and acting.dtype == torch.bool and bool(acting.all())
    gen = torch.Generator().manual_seed(0)
    total = torch.zeros(E)
    for t in range(T):
        a = torch.randint(0, 5, (E, N), generator=gen)
        o, s, r, done, acting = env.step(a.to(device))
        assert r.shape == (E, N) and r.dtype == torch.float32 and done.shape == (E,) and done.dtype == torch.bool
        total += r.sum(1).cpu()
        assert bool(done.all()) == (t == T - 1)  # every floor ends at max_steps
    # finished floors were reset inside step: their observation is the new episode's first
    assert int(env.floor.steps.max()) == 0 and bool((env.floor.episode == 2).all())
    assert torch.equal(o, env._observe())
    assert env.finished_returns == pytest.approx(total.tolist())
    assert float(env.episode_returns.abs().sum()) == 0.0


def test_same_seed_same_episodes_other_seed_other_episodes():
    def run(seed):
        env = BatchedWarehouseEnv("tiny", 3, max_steps=20, n_envs=8, obs="rware", seed=seed)
        o, _s, _a = env.reset()
        gen = torch.Generator().manual_seed(1)
        seen = [o]
        for _ in range(50):
            o, _s, _r, _d, _a = env.step(torch.randint(0, 5, (8, 3), generator=gen))
            seen.append(o)
        return torch.stack(seen)

    assert torch.equal(run(4), run(4))
    assert not torch.equal(run(4), run(5))
    # reset(seed) restarts the streams: a used env replays a fresh one's first episode
    env = BatchedWarehouseEnv("tiny", 3, max_steps=5, n_envs=8, obs="rware", seed=0)
    first = env.reset()[0]
    for _ in range(12):
        env.step(torch.zeros(8, 3, dtype=torch.long))
    assert not torch.equal(env._observe(), first)
    assert torch.equal(env.reset(seed=0)[0], first)


def _sync(benv: BatchedWarehouseEnv, penv: WarehouseParallelEnv, floor: int) -> None:
    """Put floor ``floor`` of the batched env into the parallel env's floor state and tasks."""
    m = penv.model
    benv.floor.load_state(floor, m.floor.state_dict())
    benv._features.tasks[floor] = torch.as_tensor(m.tasks)


@pytest.mark.parametrize("potential, terms", [("distance", None), ("carrying", None),
                                              ("carrying", {"carrying": 2.0, "distance": 0.5, "goal": 3.0})])
def test_features_state_and_potential_equal_the_parallel_env(potential, terms):
    """On the same floor state and tasks: obs, state() and the shaping potential are WarehouseParallelEnv's."""
    kw = dict(size="small", robots=4, max_steps=500, shaping_terms=terms)
    penv = WarehouseParallelEnv(shaping=0.5, shaping_potential=potential, **kw)
    benv = BatchedWarehouseEnv(n_envs=2, obs="features", shaping=0.5, shaping_potential=potential, **kw)
    benv.reset()
    rng = np.random.default_rng(0)
    compared = 0
    for ep in range(3):
        penv.reset(seed=ep)
        for t in range(60):
            _sync(benv, penv, 1)
            obs = benv._observe()
            want_obs = np.stack(list(penv._observations().values()))
            np.testing.assert_array_equal(obs[1].numpy(), want_obs)
            np.testing.assert_array_equal(obs[1].reshape(-1).numpy(), penv.state())
            np.testing.assert_allclose(benv.potential()[1].numpy(), penv.potential(), rtol=0, atol=1e-6)
            compared += 1
            penv.step({a: int(x) for a, x in zip(penv.possible_agents, rng.integers(0, 5, 4))})
    assert compared == 180


def test_shaped_rewards_telescope_and_returns_stay_unshaped():
    """Shaped reward = raw + w (gamma phi' - phi), phi' = 0 at an episode's end; finished_returns are raw."""
    E, N, T, w, g = 8, 4, 12, 0.5, 0.9
    env = BatchedWarehouseEnv("tiny", N, max_steps=T, n_envs=E, obs="features", shaping=w, shaping_gamma=g,
                              shaping_potential="distance", seed=2)
    env.reset()
    phi = env.potential()
    raw_total = torch.zeros(E)
    gen = torch.Generator().manual_seed(0)
    shaped_seen = False
    for t in range(T):
        ret_before = env.episode_returns.clone()
        _o, _s, r, done, _a = env.step(torch.randint(0, 5, (E, N), generator=gen))
        raw = (env.episode_returns - ret_before) if t < T - 1 else None
        nxt = torch.where(done[:, None], 0.0, env.potential())
        shaping = w * (g * nxt - phi)
        if raw is not None:
            torch.testing.assert_close(r, raw + shaping)
        raw_total += (r - shaping).sum(1)
        shaped_seen |= bool((shaping != 0).any())
        phi = env.potential()
    assert shaped_seen
    torch.testing.assert_close(torch.tensor(env.finished_returns), raw_total)


def test_shaping_terms_weigh_the_potential_and_the_robots_own_reward():
    """{carrying 1, distance 1} is the distance potential; goal g pays g times the robot's own reward, while
    finished_returns stay the floor's own; a weighted carrying term scales that potential."""
    kw = dict(size="tiny", robots=6, request_queue=30, max_steps=100, n_envs=64, obs="features", seed=3, shaping=0.5)
    plain = BatchedWarehouseEnv(shaping_potential="distance", **kw)
    same = BatchedWarehouseEnv(shaping_potential="carrying", shaping_terms={"carrying": 1, "distance": 1}, **kw)
    goal = BatchedWarehouseEnv(shaping_potential="distance", shaping_terms={"carrying": 1, "distance": 1, "goal": 3}, **kw)
    carry2 = BatchedWarehouseEnv(shaping_potential="carrying", shaping_terms={"carrying": 2}, **kw)
    carry1 = BatchedWarehouseEnv(shaping_potential="carrying", **kw)
    envs = (plain, same, goal, carry2, carry1)
    for e in envs:
        e.reset()
    gen = torch.Generator().manual_seed(1)
    delivered = False
    for _ in range(100):
        a = torch.randint(0, 5, (64, 6), generator=gen)
        before = plain.episode_returns.clone()
        (_, _, r0, d0, _), (_, _, r1, _, _), (_, _, r3, _, _), (_, _, rc2, _, _), (_, _, rc1, _, _) = (e.step(a) for e in envs)
        torch.testing.assert_close(r0, r1)
        raw = torch.where(d0[:, None], 0.0, plain.episode_returns - before)
        if not d0.any():
            torch.testing.assert_close(r3 - r0, 2 * raw)  # the own reward counted 3 times instead of once
            delivered |= bool(raw.any())
        torch.testing.assert_close(carry2.potential(), 2 * carry1.potential())
    assert delivered  # the goal weight was put to the test
    assert plain.finished_returns == goal.finished_returns  # the floor's own returns, whatever the weights


def test_unknown_shaping_terms_are_refused_in_one_line():
    from desim.models.warehouse.shaping import shaping_weights

    with pytest.raises(ValueError, match="unknown shaping term 'speed'"):
        shaping_weights("carrying", {"speed": 1.0})
    with pytest.raises(ValueError, match="finite number"):
        shaping_weights("carrying", {"goal": float("nan")})
    assert shaping_weights("carrying", {"distance": 0.5}) == {"carrying": 0.0, "distance": 0.5, "goal": 1.0}


def test_drop_in_for_the_numpy_vector_env():
    """The same reset/step signature and shapes as VectorWarehouseEnv (features, tick tempo)."""
    kw = dict(size="tiny", robots=2, max_steps=10)
    ref, new = VectorWarehouseEnv(2, seed=0, **kw), BatchedWarehouseEnv(n_envs=2, seed=0, **kw)
    for a, b in zip(ref.reset(), new.reset()):
        assert a.shape == tuple(b.shape)
    acts = np.zeros((2, 2), dtype=np.int64)
    for a, b in zip(ref.step(acts), new.step(torch.as_tensor(acts))):
        assert a.shape == tuple(b.shape) and a.dtype == b.cpu().numpy().dtype
    assert ref.agents == new.agents


def test_refusals_name_what_is_wrong():
    with pytest.raises(ValueError, match="obs must be one of"):
        BatchedWarehouseEnv(obs="pixels")
    with pytest.raises(ValueError, match="device"):
        BatchedWarehouseEnv(device="abacus")
    with pytest.raises(ValueError, match="n_floors"):
        BatchedWarehouseEnv(n_envs=0)
    with pytest.raises(ValueError, match="tick tempo"):
        BatchedWarehouseEnv(tempo="event")
    with pytest.raises(ScenarioError, match="links"):
        BatchedWarehouseEnv(scenario={"name": "x", "until": 10, "warehouse": {}, "links": {"wireless": {"delay": {"mean": 0.1}}}})
    with pytest.raises(ScenarioError, match="orders"):
        BatchedWarehouseEnv(scenario={"name": "x", "until": 10, "warehouse": {"orders": {"rate_per_hour": 10}}})
    env = BatchedWarehouseEnv(n_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, 2, dtype=torch.long))


def test_scenario_and_custom_layout():
    env = BatchedWarehouseEnv(scenario={"name": "x", "until": 10, "warehouse": {"size": "medium", "robots": 6,
                                                                                "request_queue": 3, "reward": "global"}},
                              n_envs=4, obs="rware")
    assert (env.layout.name, env.n_agents, env.floor.request_queue_size, env.floor.reward_type) == ("medium", 6, 3, "global")
    env = BatchedWarehouseEnv(robots=3, layout="xx.g\n....\nxx.g", n_envs=4, obs="rware")
    o, _s, _a = env.reset()
    assert env.layout.shape == (3, 4) and o.shape == (4, 3, 71)


def test_a_bad_shaping_term_in_a_scenario_is_one_line_naming_it(tmp_path):
    from cli_support import call, one_line_error

    base = (Path(__file__).resolve().parents[1] / "scenarios" / "train-tiny.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(base.replace("[train]\n", "[train]\nshaping_terms = { carrying = 1.0, speed = 2.0 }\n", 1))
    line = one_line_error(*call("validate", bad))
    assert "train.shaping_terms" in line and "speed" in line
    good = tmp_path / "good.toml"
    good.write_text(base.replace("[train]\n", "[train]\nshaping_terms = { carrying = 1.0, distance = 0.5, goal = 2.0 }\n", 1))
    assert call("validate", good)[0] == 0
