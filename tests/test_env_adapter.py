"""The PettingZoo adapter: conformance in both tempos, acting agents, batching, shaping, rendering."""
import copy
import pickle

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test, render_test

from desim.app.runner import build
from desim.models.warehouse.env import VectorWarehouseEnv, WarehouseParallelEnv, env, parallel_env, scenario_for
from desim.models.warehouse.render import CELL_PX, COLORS


@pytest.mark.parametrize("tempo", ["tick", "event"])
def test_pettingzoo_parallel_api_and_seed_tests(tempo):
    parallel_api_test(parallel_env(tempo=tempo, max_steps=60), num_cycles=200)
    parallel_seed_test(lambda: parallel_env(tempo=tempo, max_steps=60))


def test_defaults_give_the_tiny_floor_and_spaces_are_stable():
    env = WarehouseParallelEnv()
    obs, infos = env.reset(seed=3)
    assert env.possible_agents == ["robot_0", "robot_1"]
    assert env.nodes == {"robot_0": "robot-0-0", "robot_1": "robot-0-1"}  # the network nodes keep the topology's names
    assert env.model.layout.shape == (11, 10)
    for a in env.possible_agents:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.observation_space(a).contains(obs[a])
        assert infos[a]["acting"] and list(infos[a]["action_mask"]) == [1] * 5
    assert env.state().shape == env.state_space.shape


def test_event_tempo_steps_only_the_robots_whose_decision_falls_due():
    env = parallel_env(tempo="event", robots=4, size="small", max_steps=200, delay_mean=0.02, jitter=0.01,
                       durations={"move": 1.0, "turn": 0.5, "load": 2.0, "noop": 0.7, "jitter": 0.2})
    obs, infos = env.reset(seed=1)
    partial, times = 0, []
    for _ in range(150):
        acting = [a for a in env.agents if infos[a]["acting"]]
        assert acting  # a step is an instant at which someone decides
        for a in env.agents:
            if not infos[a]["acting"]:
                assert list(infos[a]["action_mask"]) == [1, 0, 0, 0, 0]
        partial += len(acting) < len(env.agents)
        times.append(infos[env.agents[0]]["sim_time"])
        obs, rew, term, trunc, infos = env.step({a: 1 for a in env.agents})
        if not env.agents:
            break
    assert partial > 100  # jitter desynchronises the robots
    assert times == sorted(times) and len(set(times)) > 100


def test_one_brain_call_per_instant():
    class Counting:
        policy_version = 0

        def __init__(self):
            self.calls, self.sizes = 0, []

        def act(self, observations):
            self.calls += 1
            self.sizes.append(len(observations))
            return [0] * len(observations)

    for tempo in ("tick", "event"):
        brain = Counting()
        build(scenario_for(robots=3, tempo=tempo, max_steps=50), 0, brain=brain).sim.run(50.0)
        assert brain.calls == 50 and set(brain.sizes) == {3}  # zero delay: all three decide together


def test_vector_env_batches_and_resets():
    v = VectorWarehouseEnv(3, seed=0, size="tiny", robots=2, max_steps=20)
    obs, state, acting = v.reset()
    assert obs.shape == (3, 2, 59) and state.shape == (3, 118) and acting.all()
    for t in range(45):
        obs, state, rew, done, acting = v.step(np.ones((3, 2), dtype=np.int64))
        assert rew.shape == (3, 2) and done.shape == (3,)
        if t == 19:
            assert done.all()
    assert len(v.finished_returns) == 6


def test_shaping_changes_what_learners_see_not_the_returns():
    def roll(shaping):
        v = VectorWarehouseEnv(2, seed=5, size="tiny", robots=2, max_steps=50, shaping=shaping)
        v.reset()
        rng = np.random.default_rng(0)
        seen = 0.0
        for _ in range(100):
            _o, _s, r, _d, _a = v.step(rng.integers(0, 5, (2, 2)))
            seen += float(np.abs(r).sum())
        return seen, v.finished_returns
    plain, plain_returns = roll(0.0)
    shaped, shaped_returns = roll(0.5)
    assert shaped_returns == plain_returns  # the same trajectories, the same (unshaped) returns
    assert shaped > plain  # the learner gets a signal before the first delivery
    env = parallel_env(max_steps=30, shaping=0.5, shaping_potential="carrying")
    env.reset(seed=0)
    _o, rew, _t, _tr, infos = env.step({a: 4 for a in env.agents})
    assert all("raw_reward" in infos[a] for a in env.agents)
    with pytest.raises(ValueError, match="shaping_potential"):
        parallel_env(shaping=0.5, shaping_potential="nope")


# --- PettingZoo's conventions: render_mode, render(), the AEC factory -------------------------------------------------

def _loaded_floor(env, rng, steps=400):
    """Random actions until some robot carries a shelf (so the frame has a loaded robot)."""
    for _ in range(steps):
        env.step({a: int(rng.integers(5)) for a in env.agents})
        if (env.model.floor.carrying >= 0).any() and env.agents:
            return
    raise AssertionError("no robot lifted a shelf")


@pytest.mark.parametrize("tempo", ["tick", "event"])
def test_render_draws_the_live_floor(tempo):
    env = parallel_env(tempo=tempo, size="small", robots=4, zones=2, max_steps=500, render_mode="rgb_array")
    assert env.render_mode == "rgb_array" and "rgb_array" in env.metadata["render_modes"]
    env.reset(seed=2)
    _loaded_floor(env, np.random.default_rng(0))
    img = env.render()
    f, c = env.model.floor, CELL_PX
    H, W = f.height, f.width
    assert img.dtype == np.uint8 and img.shape == (H * c + 1, W * c + 1, 3)
    col = {k: np.array(v) for k, v in COLORS.items()}

    def px(x, y, dy, dx):
        return img[y * c + dy, x * c + dx]

    goals = {(int(x), int(y)) for x, y in env.model.layout.goals}
    highway = env.model.layout.highway
    for y in range(H):  # the ground, in each cell's top-left corner (inside the grid, outside any shelf)
        for x in range(W):
            want = "goal" if (x, y) in goals else "highway" if highway[y, x] else "storage"
            assert (px(x, y, 1, 1) == col[want]).all(), (x, y, want)
            assert (px(x, y, 0, 5) == col["grid"]).all()
    requested = set(int(s) for s in f.request_queue if s >= 0)
    m = max(2, c // 10)
    for s, (x, y) in enumerate(f.shelf_positions):  # every shelf, requested ones teal
        assert (px(x, y, m + 1, m + 1) == col["requested" if s in requested else "shelf"]).all(), s
    step = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}  # Direction -> (dy, dx)
    for (x, y), d, load in zip(f.positions, f.directions, f.carrying):
        dy, dx = step[int(d)]
        r = int(0.34 * c) - 2
        assert (px(x, y, c // 2 + dy * r, c // 2 + dx * r) == col["heading"]).all()  # the bar points where it faces
        back = px(x, y, c // 2 - dy * r, c // 2 - dx * r)  # the disc behind the bar: orange, red when loaded
        assert (back == col["loaded" if load >= 0 else "robot"]).all()
    assert (f.carrying >= 0).any()
    before = img.copy()
    for _ in range(5):
        env.step({a: 1 for a in env.agents})
    assert not np.array_equal(env.render(), before)  # the frame follows the floor


def test_render_modes_follow_pettingzoo():
    # render_test makes one env with render_mode="human" only to read metadata["render_modes"], then one per
    # listed mode; the env offers no "human" mode (no display, no new dependency), so that first one gets None
    render_test(lambda render_mode: env(render_mode=None if render_mode == "human" else render_mode, max_steps=30))
    parallel_api_test(parallel_env(render_mode="rgb_array", max_steps=40), num_cycles=60)
    quiet = parallel_env()
    assert quiet.render_mode is None
    quiet.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert quiet.render() is None
    with pytest.raises(ValueError, match="render_mode"):
        parallel_env(render_mode="human")
    with pytest.raises(RuntimeError, match="reset"):
        parallel_env(render_mode="rgb_array").render()


def test_copies_leave_the_episode_behind_and_play_their_own():
    """SuperSuit's vector envs copy a reset env with cloudpickle: SimPy's generators cannot be copied."""
    original = parallel_env(tempo="event", max_steps=40)
    original.reset(seed=7)
    original.step({a: 1 for a in original.agents})
    copies = [pickle.loads(pickle.dumps(original)) for _ in range(2)] + [copy.deepcopy(original)]
    assert original.steps == 1 and original.agents  # copying leaves the original as it was
    for c in copies:
        assert c.model is None and c.agents == [] and c.possible_agents == original.possible_agents
        with pytest.raises(RuntimeError, match="reset"):
            c.step({})
    starts = []
    for c in copies:
        c.reset()
        starts.append(c.state())
    assert all(not np.array_equal(starts[i], starts[j]) for i, j in ((0, 1), (0, 2), (1, 2)))  # own episodes
    again = parallel_env(tempo="event", max_steps=40)  # the same seed, the same copies
    again.reset(seed=7)
    again.step({a: 1 for a in again.agents})
    first = pickle.loads(pickle.dumps(again))
    first.reset()
    assert np.array_equal(first.state(), starts[0])
    parallel_api_test(copies[0], num_cycles=50)  # a copy is a whole env
