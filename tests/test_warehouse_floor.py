"""Unit tests for the warehouse Layout and Floor (rware rules, tick tempo)."""
from __future__ import annotations

import numpy as np
import pytest
from rware_bridge import diff_states, from_rware, make_env, strip_obs, to_rware

from desim.models.warehouse import Action, Direction, Floor, Layout, rware_task

N, F, L, R, T = (int(a) for a in Action)
UP, DOWN, LEFT, RIGHT = (int(d) for d in Direction)

# shelves (row-major): 0=(1,1) 1=(2,1) 2=(4,1) 3=(5,1); goal (3,3)
MAP = """
.......
.xx.xx.
.......
...g...
"""


def floor_with(robots, queue=(0,), reward="individual", text=MAP, shelves=None, **kw) -> Floor:
    """robots: list of (x, y, dir, carried shelf id or -1)."""
    layout = Layout.from_ascii(text)
    fl = Floor(layout, len(robots), len(queue), reward, rng=np.random.default_rng(0), **kw)
    sx = [x for x, _ in layout.shelf_cells]
    sy = [y for _, y in layout.shelf_cells]
    for s, (x, y) in (shelves or {}).items():
        sx[s], sy[s] = x, y
    for x, y, _, c in robots:
        if c >= 0:
            sx[c], sy[c] = x, y
    fl.load_state(
        {
            "agent_x": [r[0] for r in robots],
            "agent_y": [r[1] for r in robots],
            "agent_dir": [r[2] for r in robots],
            "carrying": [r[3] for r in robots],
            "shelf_x": sx,
            "shelf_y": sy,
            "request_queue": list(queue),
        }
    )
    return fl


def check_against_rware(fl: Floor, actions) -> None:
    """Step the Floor and an rware copy once; states and rewards must agree."""
    env = strip_obs(make_env(fl.layout, fl.n_agents, fl.request_queue_size, fl.reward_type))
    env.reset(seed=0)
    to_rware(fl, env)
    fl.rng.bit_generator.state = env.np_random.bit_generator.state
    _, r_env, _, _, _ = env.step(list(actions))
    r, _ = fl.step(np.array(actions))
    assert diff_states(from_rware(env), fl.state_dict()) == []
    assert np.array_equal(np.asarray(r_env, dtype=np.float32), r)


def pos(fl):
    return [tuple(p) for p in fl.positions.tolist()]


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize(
    "size,shape,shelves,params",
    [
        ("tiny", (11, 10), 32, (3, 1, 8)),
        ("small", (20, 10), 80, (3, 2, 8)),
        ("medium", (20, 16), 144, (5, 2, 8)),
        ("large", (29, 16), 224, (5, 3, 8)),
    ],
)
def test_layout_sizes_match_rware(size, shape, shelves, params):
    lay = Layout.from_size(size)
    assert lay.shape == shape
    H, W = shape
    assert lay.goals == ((W // 2 - 1, H - 1), (W // 2, H - 1))
    make_env(lay, 2, 2, params=params)  # asserts grid, highways and goals equal rware's
    assert lay.n_shelves == shelves == int((~lay.highway).sum())
    env = make_env(lay, 2, 2, params=params)
    env.reset(seed=0)
    assert [(s.x, s.y) for s in env.shelfs] == list(lay.shelf_cells)
    assert Layout.from_ascii(lay.to_ascii()) == lay


def test_rware_task_ids():
    lay, kw = rware_task("tiny-2ag")
    assert lay == Layout.from_size("tiny") and kw["n_agents"] == 2 and kw["request_queue_size"] == 2
    assert rware_task("rware-small-4ag-easy-v2")[1]["request_queue_size"] == 8
    assert rware_task("large-3ag-hard")[1]["request_queue_size"] == 1
    with pytest.raises(ValueError):
        rware_task("huge-2ag")


def test_ascii_map_parsing(tmp_path):
    lay = Layout.from_ascii("\n  X x . g \n . . . G\n")
    assert lay.shape == (2, 4)
    assert lay.goals == ((3, 0), (3, 1))
    assert lay.shelf_cells == ((0, 0), (1, 0))
    assert lay.highway.tolist() == [[False, False, True, True], [True, True, True, True]]
    assert not lay.highway.flags.writeable
    p = tmp_path / "floor.txt"
    p.write_text(MAP)
    f = Layout.from_file(p)
    assert f == Layout.from_ascii(MAP) and f.name == "floor"
    assert f.n_shelves == 4 and f.goals == ((3, 3),)
    make_env(f, 2, 1)  # rware accepts the same map and agrees


@pytest.mark.parametrize(
    "text,needle",
    [
        ("x.g\nx#.", "invalid layout character '#'"),
        ("x..\nx..", "no goal"),
        ("x.g\nx.", "rectangular"),
        ("   \n", "empty"),
    ],
)
def test_bad_maps_raise_one_line_value_error(text, needle):
    with pytest.raises(ValueError) as e:
        Layout.from_ascii(text)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_params_and_floor_args():
    with pytest.raises(ValueError, match="odd"):
        Layout.from_params(4, 1, 8)
    with pytest.raises(ValueError, match="unknown size"):
        Layout.from_size("huge")
    lay = Layout.from_ascii(MAP)
    with pytest.raises(ValueError, match="request_queue_size"):
        Floor(lay, 2, 4)
    with pytest.raises(ValueError, match="n_agents"):
        Floor(lay, 29, 1)
    with pytest.raises(ValueError, match="reward_type"):
        Floor(lay, 2, 1, "team")


# -------------------------------------------------------------- collisions
def test_head_on_swap_blocks_both_and_counts_cells():
    fl = floor_with([(2, 0, RIGHT, -1), (3, 0, LEFT, -1)])
    check_against_rware(fl, [F, F])
    assert pos(fl) == [(2, 0), (3, 0)]
    assert fl.blocked_moves[0, 2] == 1 and fl.blocked_moves[0, 3] == 1 and fl.blocked_moves.sum() == 2


def test_head_on_into_same_cell_one_wins():
    # both want (3, 0); equal queues -> rware's tie-break (here: robot 0)
    fl = floor_with([(2, 0, RIGHT, -1), (4, 0, LEFT, -1)])
    check_against_rware(fl, [F, F])
    assert pos(fl) == [(3, 0), (4, 0)]
    assert fl.blocked_moves[0, 4] == 1


def test_longer_queue_wins_the_cell():
    # robot 0 alone from the left; robots 1, 2 queued from the right: the queue wins
    fl = floor_with([(2, 0, RIGHT, -1), (4, 0, LEFT, -1), (5, 0, LEFT, -1)])
    check_against_rware(fl, [F, F, F])
    assert pos(fl) == [(2, 0), (3, 0), (4, 0)]


def test_follow_the_leader_chain():
    fl = floor_with([(0, 0, RIGHT, -1), (1, 0, RIGHT, -1), (2, 0, RIGHT, -1)])
    check_against_rware(fl, [F, F, F])
    assert pos(fl) == [(1, 0), (2, 0), (3, 0)]
    # leader at the wall: the whole chain stays, each FORWARD counted
    fl = floor_with([(4, 0, RIGHT, -1), (5, 0, RIGHT, -1), (6, 0, RIGHT, -1)])
    check_against_rware(fl, [F, F, F])
    assert pos(fl) == [(4, 0), (5, 0), (6, 0)]
    assert fl.blocked_moves[0, 4:7].tolist() == [1, 1, 1]
    # leader turns instead of moving: followers blocked, leader turns
    fl = floor_with([(0, 2, RIGHT, -1), (1, 2, RIGHT, -1), (2, 2, RIGHT, -1)])
    check_against_rware(fl, [F, F, L])
    assert pos(fl) == [(0, 2), (1, 2), (2, 2)] and fl.directions[2] == UP


def test_cycle_of_four_rotates():
    # 2x2 block of robots, each facing the next one clockwise
    robots = [(0, 2, RIGHT, -1), (1, 2, DOWN, -1), (1, 3, LEFT, -1), (0, 3, UP, -1)]
    fl = floor_with(robots)
    check_against_rware(fl, [F, F, F, F])
    assert pos(fl) == [(1, 2), (1, 3), (0, 3), (0, 2)]
    assert fl.blocked_moves.sum() == 0
    # a robot queued into the cycle is blocked, the cycle still rotates
    fl = floor_with(robots + [(2, 2, LEFT, -1)])
    check_against_rware(fl, [F, F, F, F, F])
    assert pos(fl) == [(1, 2), (1, 3), (0, 3), (0, 2), (2, 2)]


def test_loaded_robot_cannot_enter_standing_shelf_but_unloaded_can():
    # loaded robot at (3,1) facing the standing shelf at (2,1)
    fl = floor_with([(3, 1, LEFT, 3)], queue=(1,))
    check_against_rware(fl, [F])
    assert pos(fl) == [(3, 1)] and fl.blocked_moves[1, 3] == 1
    fl = floor_with([(3, 1, LEFT, -1)])
    check_against_rware(fl, [F])
    assert pos(fl) == [(2, 1)]
    # loaded robot may follow a loaded robot that leaves
    fl = floor_with([(3, 0, LEFT, 0), (2, 0, LEFT, 1)], queue=(2,))
    check_against_rware(fl, [F, F])
    assert pos(fl) == [(2, 0), (1, 0)]
    assert fl.shelf_positions[0].tolist() == [2, 0] and fl.shelf_positions[1].tolist() == [1, 0]


# ------------------------------------------------------------ toggle, reward
def test_toggle_load_rules():
    fl = floor_with([(1, 1, UP, -1), (3, 0, UP, -1)])
    check_against_rware(fl, [T, T])  # under shelf 0: loads; on a bare highway: nothing
    assert fl.carrying.tolist() == [0, -1]
    check_against_rware(fl, [N, N])
    fl = floor_with([(3, 0, UP, 0)])  # carrying on a highway cell: cannot unload
    check_against_rware(fl, [T])
    assert fl.carrying.tolist() == [0]
    fl = floor_with([(1, 1, UP, 1)], shelves={0: (0, 0)})  # storage cell free: unloads
    check_against_rware(fl, [T])
    assert fl.carrying.tolist() == [-1] and fl.shelf_positions[1].tolist() == [1, 1]


@pytest.mark.parametrize("reward", ["individual", "global", "two_stage"])
def test_delivery_reward(reward):
    robots = [(3, 2, DOWN, 0), (6, 0, UP, -1)]
    fl = floor_with(robots, queue=(0, 2), reward=reward)
    check_against_rware(fl, [F, N])
    assert pos(fl)[0] == (3, 3)
    r, info = fl.step(np.array([N, N]))  # already delivered: no second reward
    assert r.tolist() == [0.0, 0.0] and info["delivered"] == 0
    fl = floor_with(robots, queue=(0, 2), reward=reward)
    r, info = fl.step(np.array([F, N]))
    assert info["delivered"] == 1 and fl.deliveries == 1
    expect = {"individual": [1.0, 0.0], "global": [1.0, 1.0], "two_stage": [0.5, 0.0]}[reward]
    assert r.tolist() == expect
    q = fl.request_queue
    assert 0 not in q and 2 in q and len(set(q.tolist())) == 2
    if reward == "two_stage":  # second half when the shelf is put back down
        for a in ([R, N], [R, N], [F, N], [L, N], [F, N], [F, N], [R, N], [F, N]):
            fl.step(np.array(a))
        assert pos(fl)[0] == (1, 1)
        r, _ = fl.step(np.array([T, N]))
        assert r.tolist() == [0.5, 0.0] and fl.carrying[0] == -1


# --------------------------------------------------------------- lifecycle
def test_reset_state_roundtrip_and_validation():
    lay = Layout.from_size("small")
    a = Floor(lay, 6, 6, rng=np.random.default_rng(7))
    b = Floor(lay, 6, 6, rng=np.random.default_rng(7))
    a.reset()
    b.reset()
    assert diff_states(a.state_dict(), b.state_dict()) == []
    acts = np.random.default_rng(1).integers(0, 5, size=(50, 6))
    for x in acts[:25]:
        a.step(x)
    c = Floor(lay, 6, 6, rng=np.random.default_rng(9))
    c.load_state(a.state_dict())
    for x in acts[25:]:
        ra, _ = a.step(x)
        rc, _ = c.step(x)
        assert np.array_equal(ra, rc)
    assert diff_states(a.state_dict(), c.state_dict()) == []
    bad = a.state_dict()
    bad["agent_x"][1], bad["agent_y"][1] = bad["agent_x"][0], bad["agent_y"][0]
    with pytest.raises(ValueError, match="share a cell"):
        c.load_state(bad)
    with pytest.raises(RuntimeError):
        Floor(lay, 2, 2).step(np.zeros(2, int))
    with pytest.raises(ValueError, match="shape"):
        a.step(np.zeros(5, int))


def test_done_after_max_steps_and_inactivity():
    fl = Floor(Layout.from_size("tiny"), 2, 2, rng=np.random.default_rng(0), max_steps=5)
    fl.reset()
    dones = [fl.step(np.zeros(2, int))[1]["done"] for _ in range(5)]
    assert dones == [False] * 4 + [True]
    fl = Floor(Layout.from_size("tiny"), 2, 2, rng=np.random.default_rng(0), max_inactivity_steps=3)
    fl.reset()
    assert [fl.step(np.zeros(2, int))[1]["done"] for _ in range(3)] == [False, False, True]


def test_64_robots_keep_invariants():
    lay = Layout.from_size("large")
    fl = Floor(lay, 64, 64, rng=np.random.default_rng(0))
    fl.reset()
    rng = np.random.default_rng(0)
    W = lay.width
    for _ in range(300):
        fl.step(rng.choice(5, size=64, p=(0.1, 0.5, 0.12, 0.12, 0.16)))
        cells = fl.positions[:, 1] * W + fl.positions[:, 0]
        assert np.unique(cells).size == 64
        shelves = fl.shelf_positions
        assert np.unique(shelves[:, 1] * W + shelves[:, 0]).size == lay.n_shelves
        c = fl.carrying
        assert (shelves[c[c >= 0]] == fl.positions[c >= 0]).all()
    assert fl.blocked_moves.sum() > 0
