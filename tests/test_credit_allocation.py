"""Reward allocation (``[train] credit``): difference rewards on batched floors are exact counterfactuals.

The difference reward of robot i is the team reward of the step minus the team
reward of the same step, from the same state, with robot i's action replaced
by NOOP. The reference here is independent of the batched code: a numpy
``Floor(tie_break="index")`` loaded with the batched floor's state, stepped
with the replaced action, whose request refill is the batched floor's
documented draw (the counter hash of (seed, floor, goal, episode, step), the
pick-th shelf not requested) computed by hand. A scripted episode on a small
map pins the numbers (a delivery: +1; a blocked delivery: -1 to the blocker;
a step where nothing a robot does matters: 0), crowded random floors check
every robot of every step, and ``desim train --envs`` trains on them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_cli import QUICK, desim, one_line_error
from test_warehouse_rware_diff import DENSE, random_state

from desim.models.warehouse import Floor, Layout
from desim.models.warehouse.batched import _REFILL, BatchedFloor
from desim.models.warehouse.counterfactual import Counterfactual
from desim.models.warehouse.vector_env import BatchedWarehouseEnv
from desim.store import Store

torch.set_num_threads(1)
NOOP, FWD, LEFT, RIGHT, TOGGLE = 0, 1, 2, 3, 4
UP, DOWN, WEST, EAST = 0, 1, 2, 3  # headings
# four shelves on top, one goal at (2, 2)
MINI = """
xxxx
....
..g.
"""
MINI_LAYOUT = Layout.from_ascii(MINI, "mini")
HOME = {"shelf_x": [0, 1, 2, 3], "shelf_y": [0, 0, 0, 0]}


def state(robots, shelves: dict[int, tuple[int, int]], queue) -> dict:
    """A MINI state: robots as (x, y, heading, carried shelf or -1); shelves moved from home."""
    sx, sy = list(HOME["shelf_x"]), list(HOME["shelf_y"])
    for s, (x, y) in shelves.items():
        sx[s], sy[s] = x, y
    return {"agent_x": [r[0] for r in robots], "agent_y": [r[1] for r in robots],
            "agent_dir": [r[2] for r in robots], "carrying": [r[3] for r in robots],
            "shelf_x": sx, "shelf_y": sy, "request_queue": list(queue), "steps": 3}


# robot 1 carries requested shelf 1 down to the goal; robot 0 drives into the goal from the left
BLOCK = state([(1, 2, EAST, -1), (2, 1, DOWN, 1), (0, 1, UP, -1)], {1: (2, 1)}, [1])
# robot 0 carries requested shelf 0 onto the goal
DELIVER = state([(2, 1, DOWN, 0), (0, 2, UP, -1), (3, 1, WEST, -1)], {0: (2, 1)}, [0])


def numpy_team_reward(bf: BatchedFloor, f: int, actions) -> tuple[float, np.ndarray]:
    """Floor ``f``'s team reward under ``actions`` from its current state, by a numpy Floor whose refill is
    the batched floor's draw computed here; also the request queue after the step."""
    fl = Floor(bf.layout, bf.n_agents, bf.request_queue_size, bf.reward_type, rng=0, tie_break="index")
    fl.reset()
    fl.load_state(bf.state_dict(f))
    key = (torch.tensor([int(bf.episode[f])]), torch.tensor([int(bf.steps[f])]))
    goals = [int(g) for g in fl.goal_cells]

    def refill(shelf: int, robot: int) -> int:
        k = goals.index(int(fl.shelf_cells[shelf]))  # the goal the shelf stands on
        free = ~np.asarray(fl.requested, dtype=bool)
        free[shelf] = False  # the delivered shelf still counts as requested
        u = int(bf._draw(_REFILL + 8 * k, bf.stream_ids[f:f + 1], key, 1)[0, 0])
        return int(np.flatnonzero(free)[(u * int(free.sum())) >> 32])

    fl.request_source = refill
    rewards, _info = fl.step(np.asarray(actions, dtype=np.int64))
    return float(np.sum(rewards)), fl.requests.copy()


def numpy_counterfactuals(bf: BatchedFloor, f: int, actions) -> list[float]:
    out = []
    for i in range(bf.n_agents):
        a = np.array(actions, dtype=np.int64)
        a[i] = NOOP
        out.append(numpy_team_reward(bf, f, a)[0])
    return out


def mini_env(credit: str, n_envs: int = 2) -> BatchedWarehouseEnv:
    return BatchedWarehouseEnv(layout=MINI_LAYOUT, robots=3, request_queue=1, max_steps=100, n_envs=n_envs,
                               obs="rware", seed=5, credit=credit)


def test_difference_rewards_on_a_scripted_episode_equal_the_hand_computed_counterfactuals():
    env = mini_env("difference")
    env.reset()
    env.floor.load_state(0, BLOCK)
    env.floor.load_state(1, DELIVER)
    script = [
        # floor 0: robot 0 takes the goal cell (equal queues: the lower index moves), blocking robot 1's delivery;
        # floor 1: robot 0 delivers, the others turn or wait
        ([[FWD, FWD, FWD], [FWD, NOOP, LEFT]], [[-1, 0, 0], [1, 0, 0]], [0, 1]),
        # floor 0: robot 0 leaves the goal, robot 2 turns: nothing anyone does pays or costs
        ([[FWD, NOOP, RIGHT], [NOOP, FWD, RIGHT]], [[0, 0, 0], [0, 0, 0]], [0, 0]),
        # floor 0: robot 1 delivers now; robot 0 turning does not matter
        ([[LEFT, FWD, NOOP], [NOOP, NOOP, NOOP]], [[0, 1, 0], [0, 0, 0]], [1, 0]),
    ]
    blocked = []
    for actions, want_diff, want_team in script:
        f = env.floor
        hand = [numpy_counterfactuals(f, e, actions[e]) for e in range(2)]
        real = [numpy_team_reward(f, e, actions[e]) for e in range(2)]
        _o, _s, r, done, _a = env.step(torch.tensor(actions))
        assert not bool(done.any())
        assert env.last_counterfactual.tolist() == hand
        assert r.tolist() == want_diff
        assert [t for t, _q in real] == want_team == f.delivered.tolist()
        # the real step's refill is the one the reference drew, too
        assert [q.tolist() for _t, q in real] == f.queue.tolist()
        blocked.append(f.blocked[0].tolist())
    # the block happened as scripted: robot 1's FORWARD on floor 0 did not move at the first step, and did at the third
    assert blocked == [[False, True, False], [False, False, False], [False, False, False]]


def test_global_gives_every_robot_the_team_reward_and_individual_is_the_floors_own():
    envs = {c: mini_env(c) for c in ("individual", "global", "difference")}
    gen = torch.Generator().manual_seed(3)
    for env in envs.values():
        env.reset()
        env.floor.load_state(0, BLOCK)
        env.floor.load_state(1, DELIVER)
    paid = 0.0
    for t in range(30):
        a = torch.tensor([[FWD, FWD, FWD], [FWD, NOOP, LEFT]]) if t == 0 else torch.randint(0, 5, (2, 3), generator=gen)
        out = {c: env.step(a) for c, env in envs.items()}
        ind, glo = out["individual"][2], out["global"][2]
        assert torch.equal(glo, ind.sum(1, keepdim=True).expand(-1, 3))
        paid += float(ind.sum())
        for c in ("global", "difference"):  # the allocation changes the rewards, never the floors
            assert torch.equal(out[c][0], out["individual"][0])
    assert paid >= 1  # the scripted delivery at least
    assert envs["global"].finished_returns == envs["individual"].finished_returns == envs["difference"].finished_returns


def test_difference_rewards_match_numpy_counterfactuals_on_crowded_floors_and_leave_the_real_floors_alone():
    lay, n, Q, E, T = Layout.from_ascii(DENSE, "dense"), 8, 6, 6, 30
    bf = BatchedFloor(lay, n, Q, E, "individual", seed=11)
    bf.reset()
    rng = np.random.default_rng(2)
    probe = Floor(lay, n, Q, "individual", rng=0, tie_break="index")
    probe.reset()
    for e in range(E):
        bf.load_state(e, random_state(probe, rng))
    cf = Counterfactual(bf)
    mattered = 0
    for _ in range(T):
        a = torch.as_tensor(rng.choice(5, size=(E, n), p=(0.1, 0.5, 0.12, 0.12, 0.16)))
        before = {k: getattr(bf, k).clone() for k in BatchedFloor._STATE}
        got = cf.team_rewards(a)
        for k, v in before.items():  # computing counterfactuals does not touch the real floors
            assert torch.equal(getattr(bf, k), v), k
        want = [numpy_counterfactuals(bf, e, a[e].tolist()) for e in range(E)]
        assert got.tolist() == want
        r, done = bf.step(a)
        diff = r.sum(1, keepdim=True) - got
        mattered += int((diff != 0).sum())
        assert not bool(done.any())
    assert mattered >= 3  # deliveries made or blocked by one robot: the test bites


def test_a_robot_on_noop_has_difference_zero_and_load_repeated_copies_streams():
    bf = BatchedFloor(Layout.from_size("tiny"), 4, 4, 6, "individual", seed=2)
    bf.reset()
    cf = Counterfactual(bf)
    a = torch.zeros(6, 4, dtype=torch.long)
    assert torch.equal(cf.team_rewards(a), torch.zeros(6, 4))
    assert cf.scratch.stream_ids.tolist() == [f for f in range(6) for _ in range(4)]
    with pytest.raises(ValueError, match="shape"):
        cf.team_rewards(torch.zeros(6, 3, dtype=torch.long))


def test_desim_train_with_difference_rewards_on_batched_floors_records_its_curves(tmp_path):
    sc = tmp_path / "credit.toml"
    sc.write_text(QUICK.replace("shaping = 0.5", 'credit = "difference"'))
    store = tmp_path / "runs.duckdb"
    p = desim("train", sc, "--algo", "mappo", "--steps", 1600, "--envs", 8, "--seed", 1, "--out", tmp_path / "ck",
              "--store", store, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["steps"] == 1600
    run = Store(store).get_run(r["run_id"])
    assert run["status"] == "complete" and run["config"]["train"]["credit"] == "difference"
    metrics = {c["metric"] for c in Store(store).table("train_curves", r["run_id"], as_dicts=True)}
    assert {"return", "loss", "entropy", "eval_return"} <= metrics and any(m.startswith("credit/") for m in metrics)


def _with(line: str) -> str:
    return QUICK.replace("shaping = 0.5", line)


@pytest.mark.parametrize("text, args, needles", [
    (_with('credit = "bogus"'), ("--envs", "8"), ("train.credit",)),
    (_with('credit = "difference"'), (), ("train.credit", "batched floors")),
    (_with('credit = "global"'), (), ("train.credit", "batched floors")),
    (_with('credit = "shaped"'), ("--envs", "8"), ("train.credit", "shaping")),
])
def test_bad_credit_is_one_line_naming_train_credit_and_nothing_is_recorded(text, args, needles, tmp_path):
    sc = tmp_path / "s.toml"
    sc.write_text(text)
    store = tmp_path / "s.duckdb"
    one_line_error(desim("train", sc, "--algo", "mappo", "--steps", "1600", "--store", store, *args), *needles)
    assert not store.exists() or Store(store).list_runs() == []
